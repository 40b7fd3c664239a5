"""The Sign-In-With-Solana message (SIWS, derived from EIP-4361), shared by the gateway that
issues it and the clients that check it before signing.

The message names the gateway (`domain`, `URI`) so that a signature made for one gateway is
worthless to another: a hostile gateway that relays the real one's challenge gets a message
naming the real gateway, which a client refuses to sign. Format (fields in this order):

    {domain} wants you to sign in with your Solana account:
    {address}

    {statement}

    URI: {uri}
    Version: 1
    Chain ID: {chain_id}
    Nonce: {nonce}
    Issued At: {issued_at}
    Expiration Time: {expiration_time}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

VERSION = "1"
STATEMENT = "Sign in to this NEXUS gateway to manage the API keys, credit and earnings " \
            "of this wallet."
_HEAD = " wants you to sign in with your Solana account:\n"
_MESSAGE = re.compile(
    r"(?P<domain>[^\n]+?) wants you to sign in with your Solana account:\n"
    r"(?P<address>[^\n]+)"
    r"(?:\n\n(?P<statement>[^\n]+))?"
    r"\n\nURI: (?P<uri>[^\n]+)"
    r"\nVersion: (?P<version>[^\n]+)"
    r"\nChain ID: (?P<chain_id>[^\n]+)"
    r"\nNonce: (?P<nonce>[^\n]+)"
    r"\nIssued At: (?P<issued_at>[^\n]+)"
    r"(?:\nExpiration Time: (?P<expiration_time>[^\n]+))?"
    r"(?:\nNot Before: (?P<not_before>[^\n]+))?"
    r"(?:\nRequest ID: (?P<request_id>[^\n]+))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class SignInMessage:
    """One SIWS message; `text()` is the exact string a wallet signs."""

    domain: str
    address: str
    uri: str
    chain_id: str
    nonce: str
    issued_at: str
    expiration_time: str | None = None
    statement: str | None = STATEMENT
    version: str = VERSION
    not_before: str | None = None
    request_id: str | None = None

    def text(self) -> str:
        message = f"{self.domain}{_HEAD}{self.address}"
        if self.statement:
            message += f"\n\n{self.statement}"
        fields = [f"URI: {self.uri}", f"Version: {self.version}", f"Chain ID: {self.chain_id}",
                  f"Nonce: {self.nonce}", f"Issued At: {self.issued_at}"]
        optional = (("Expiration Time", self.expiration_time), ("Not Before", self.not_before),
                    ("Request ID", self.request_id))
        fields += [f"{name}: {value}" for name, value in optional if value]
        return message + "\n\n" + "\n".join(fields)


def parse(text: str) -> SignInMessage | None:
    """The message `text` holds, or None when it is not a SIWS message in canonical form
    (anything a wallet would sign must read back to exactly the same bytes)."""
    match = _MESSAGE.fullmatch(text)
    if match is None:
        return None
    message = SignInMessage(**match.groupdict())
    return message if message.text() == text else None


def iso(timestamp: float) -> str:
    """An RFC 3339 UTC time to the second, as SIWS writes times: 2026-11-30T12:00:00Z."""
    moment = datetime.fromtimestamp(int(timestamp), UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float | None:
    """The POSIX time of an RFC 3339 time with an offset, or None when it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def authority(host: str, scheme: str) -> tuple[str, int] | None:
    """(host, port) of a `host[:port]` authority, the port defaulting by `scheme`; None when
    it is not a plain authority (a user, a path or a bad port)."""
    if not host or any(c in host for c in "@/?#\\ \t\r\n"):
        return None
    try:
        parts = urlsplit("//" + host)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    default = _DEFAULT_PORTS.get(scheme.lower())
    if port is None and default is None:
        return None
    return parts.hostname.lower(), port if port is not None else int(default or 0)


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, or None when it has none."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    where = authority(parts.netloc, scheme)
    return (scheme, *where) if where else None
