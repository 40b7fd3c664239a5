"""What a client checks before it signs a gateway's sign-in message.

A gateway could hand over any text to sign: a hostile one relays the real gateway's
challenge and would get a session on the victim's account. So the client signs only a
Sign-In-With-Solana message that names the gateway it is talking to (domain and URI: same
scheme, host and port as the URL it connected to), its own wallet and the challenge's nonce,
with times that make sense.
"""

from __future__ import annotations

import time

from nexus_app.client.http import ClientError
from nexus_app.siws import VERSION, SignInMessage, authority, origin, parse, parse_iso

CLOCK_SKEW_S = 300  # clocks of client and gateway may differ this much
LONGEST_MESSAGE_S = 3600  # a sign-in message that stays valid longer is refused


class SignInRefused(ClientError):
    """The client would not sign the gateway's sign-in message; `message` says why."""


def check_sign_in(text: str, *, gateway_url: str, wallet: str, nonce: str,
                  now: float | None = None) -> SignInMessage:
    """The message to sign, when it is safe to sign; raises SignInRefused otherwise."""
    message = parse(text)
    if message is None:
        raise SignInRefused("the gateway's sign-in message is not a Sign-In-With-Solana "
                            "message; not signing it")
    _check_gateway(message, gateway_url)
    if message.address != wallet:
        raise SignInRefused(f"the sign-in message is for the wallet {_shown(message.address)}, "
                            f"not this one ({wallet}); not signing it")
    if message.nonce != nonce or message.version != VERSION:
        raise SignInRefused("the sign-in message does not match the gateway's challenge "
                            "(nonce or version); not signing it")
    _check_times(message, time.time() if now is None else now)
    return message


def _check_gateway(message: SignInMessage, gateway_url: str) -> None:
    here = origin(gateway_url)
    if here is None:
        raise SignInRefused(f"cannot sign in at '{gateway_url}': not an http(s) URL")
    scheme, host, port = here
    if authority(message.domain, scheme) != (host, port):
        raise SignInRefused(
            f"the sign-in message is for '{_shown(message.domain)}', but this client is "
            f"talking to {gateway_url}: refusing to sign (a gateway that passes on another "
            "gateway's sign-in would get a session on your account)"
        )
    if origin(message.uri) != here:
        raise SignInRefused(
            f"the sign-in message's URI '{_shown(message.uri)}' is not {gateway_url}: "
            "refusing to sign"
        )


def _check_times(message: SignInMessage, now: float) -> None:
    issued = parse_iso(message.issued_at)
    expires = parse_iso(message.expiration_time or "")
    if issued is None or expires is None:
        raise SignInRefused("the sign-in message has no valid Issued At and Expiration Time; "
                            "not signing it")
    if not (issued - CLOCK_SKEW_S <= now < expires + CLOCK_SKEW_S):
        raise SignInRefused("the sign-in message is not valid now (issued "
                            f"{message.issued_at}, expires {message.expiration_time}); check "
                            "this computer's clock")
    if not 0 < expires - issued <= LONGEST_MESSAGE_S:
        raise SignInRefused("the sign-in message would stay valid for too long; not signing it")
    not_before = parse_iso(message.not_before) if message.not_before else None
    if message.not_before and (not_before is None or not_before > now + CLOCK_SKEW_S):
        raise SignInRefused("the sign-in message is not valid yet; not signing it")


def _shown(value: str) -> str:
    """A peer's string, safe to show: printable and short."""
    return "".join(c for c in value[:100] if c.isprintable())
