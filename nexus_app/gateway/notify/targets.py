"""Where a webhook may be delivered, checked at registration and again before every delivery.

A webhook URL is chosen by whoever holds an account, so without checks the gateway would make
requests into its own network for them (SSRF). The URL's host is resolved and every address it
resolves to must be a public unicast one: private, loopback, link-local, multicast, reserved,
shared and unspecified addresses are refused, IPv4 and IPv6 alike, including IPv4 addresses
embedded in IPv6 ones (mapped, 6to4, NAT64). Loopback is allowed only when the operator says so
(`webhook_allow_loopback`, for receivers on the gateway's own machine). The delivery then
connects to the address that was checked, not to whatever the name resolves to a moment later
(DNS rebinding), and sends the URL's host in the Host header and, for https, as the TLS server
name, so the receiver and its certificate are checked as usual.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
_HTTP_LOOPBACK_ONLY = "plain http:// is allowed only to a loopback address"


class UnsafeTarget(Exception):
    """The URL may not be delivered to; the message says why, in the gateway's words."""


class Unresolved(Exception):
    """The URL's host name does not resolve (now)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked delivery target: connect to `url` (its host is the checked address), send
    `host` as the Host header, and `server_name` as the TLS server name (https to a name)."""

    url: str
    host: str
    server_name: str | None


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as the system resolver answers now."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolved(host) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_refusal(ip: IPAddress, allow_loopback: bool) -> str | None:
    """Why a webhook may not reach `ip` (None when it may)."""
    for address in _with_embedded(ip):
        if address.is_loopback:
            if allow_loopback:
                continue
            return "a loopback address"
        if address.is_unspecified:
            return "the unspecified address"
        if address.is_multicast:
            return "a multicast address"
        if address.is_link_local:
            return "a link-local address"
        if address.is_reserved:
            return "a reserved address"
        if address.is_private or not address.is_global or address in _SHARED:
            return "a private address"
    return None


def _with_embedded(ip: IPAddress) -> list[IPAddress]:
    """`ip` and any IPv4 address it carries (an IPv6 mapped, 6to4 or NAT64 address reaches
    the IPv4 one)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]  # the IPv4 address itself, by another name
    found: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip in _NAT64:
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def parse_url(url: str, allow_loopback: bool) -> SplitResult:
    """The URL's parts, if its form is one a webhook may have: https, or http to loopback when
    the operator allows loopback; raises UnsafeTarget otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises for a port that is not a number in range
    except ValueError:
        raise UnsafeTarget("the URL is not valid") from None
    if not parts.hostname or any(c.isspace() for c in url):
        raise UnsafeTarget("the URL is not valid (no host, or spaces in it)")
    if parts.scheme == "https":
        return parts
    if parts.scheme == "http" and allow_loopback:
        return parts  # checked for loopback once resolved
    if allow_loopback:
        raise UnsafeTarget("a webhook URL must be https://, or http:// to a loopback address")
    raise UnsafeTarget("a webhook URL must be https://")


async def resolve_target(url: str, *, allow_loopback: bool,
                         resolver: Resolver = system_resolve) -> Target:
    """The checked target of `url`; raises UnsafeTarget when any address its host resolves
    to may not be reached, Unresolved when it resolves to none."""
    parts = parse_url(url, allow_loopback)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    try:
        names = [host] if literal is not None else await resolver(host, port)
    except Unresolved:
        if parts.scheme == "http":  # it cannot be shown to be loopback
            raise UnsafeTarget(_HTTP_LOOPBACK_ONLY) from None
        raise
    addresses = [_parse_ip(name) for name in names]
    if not addresses:
        raise Unresolved(host)
    for address in addresses:
        reason = address_refusal(address, allow_loopback)
        if reason is not None:
            raise UnsafeTarget(f"the URL's host is or resolves to {reason}")
    if parts.scheme == "http" and not all(a.is_loopback for a in addresses):
        raise UnsafeTarget(_HTTP_LOOPBACK_ONLY)
    return _target(parts, addresses[0], literal is None)


def _parse_ip(text: str) -> IPAddress:
    """An address as getaddrinfo gives it (an IPv6 one may carry a `%scope`)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def _target(parts: SplitResult, address: IPAddress, by_name: bool) -> Target:
    netloc = f"[{address}]" if address.version == 6 else str(address)
    if parts.port is not None:
        netloc += f":{parts.port}"
    if parts.username is not None or parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    host_header = parts.netloc.rsplit("@", 1)[-1]
    server_name = parts.hostname if by_name and parts.scheme == "https" else None
    return Target(parts._replace(netloc=netloc).geturl(), host_header, server_name)
