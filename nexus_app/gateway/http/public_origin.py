"""Which gateway a sign-in message names: the operator's `public_url`, or else the request's
`Host` when it names the very address the connection arrived at.

A `Host` header is the client's word. A relay that forwards a victim's `Host: evil.example`
to this gateway must not get a message naming evil.example (the victim, connected to
evil.example, would sign it), so without `public_url` only a `Host` that is the socket's own
address (an IP literal, or a loopback name on a loopback socket) with its port is trusted.
Behind a proxy or under a DNS name, the operator sets `public_url`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.types import Scope

from nexus_app.gateway.errors import BadRequest
from nexus_app.gateway.http.challenges import Issuer
from nexus_app.siws import authority

_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def chain_id_of(chain: str, rpc_url: str | None) -> str:
    """The SIWS chain id of the gateway's chain (informative: the domain is what binds)."""
    url = (rpc_url or "").lower()
    host = urlsplit(url).hostname or ""
    if chain == "local" or host in _LOOPBACK_NAMES or host.startswith("127."):
        return "localnet"
    return next((name for name in ("devnet", "testnet") if name in url), "mainnet")


def sign_in_issuer(scope: Scope, public_url: str | None, chain_id: str) -> Issuer:
    """The domain and URI a sign-in message asked for by this request names."""
    if public_url:
        url = public_url.rstrip("/")
        return Issuer(urlsplit(url).netloc, url, chain_id)
    scheme = str(scope.get("scheme", "http"))
    host = _header(scope, b"host")
    if host is None or not _is_this_socket(host, scheme, scope.get("server")):
        shown = (host or "")[:100].encode("ascii", "replace").decode()
        raise BadRequest(
            f"This gateway does not issue sign-in messages for the host '{shown}': it signs in "
            "clients that connect to its own address. Its operator can set public_url to the "
            "URL clients use.", code="untrusted_host",
        )
    return Issuer(host, f"{scheme}://{host}", chain_id)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            try:
                return bytes(value).decode("ascii")
            except UnicodeDecodeError:
                return None
    return None


def _is_this_socket(host: str, scheme: str, server: object) -> bool:
    """Whether `host` names the local address and port the connection arrived at."""
    where = authority(host, scheme)
    if where is None or not isinstance(server, tuple | list) or len(server) < 2:
        return False
    name, port = where
    if port != server[1]:
        return False
    try:
        local = ipaddress.ip_address(str(server[0]).split("%")[0])
    except ValueError:
        return False
    if isinstance(local, ipaddress.IPv6Address) and local.ipv4_mapped:
        local = local.ipv4_mapped
    if name in _LOOPBACK_NAMES:
        return local.is_loopback
    try:
        named = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    if isinstance(named, ipaddress.IPv6Address) and named.ipv4_mapped:
        named = named.ipv4_mapped
    return named == local
