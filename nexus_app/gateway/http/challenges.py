"""Pending wallet sign-in challenges: the SIWS message issued for each nonce, bounded per
client address and in all.

One address holds at most `per_address` pending challenges (its oldest is dropped for a new
one), and when the book is full the oldest challenge of all is dropped: a flood fills the
book only with its own challenges, which a new sign-in pushes out, so nobody is locked out.
A real sign-in needs its challenge only for the second it takes to sign it.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass

from nexus_app.siws import SignInMessage, iso

CHALLENGE_TTL_S = 300


@dataclass(frozen=True, slots=True)
class SignInChallenge:
    wallet: str
    nonce: str
    expires_at: float
    message: str  # the exact SIWS text the wallet must sign
    address: str  # the client address (bucket) that asked for it


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who the messages name: the gateway's domain and URI, and the chain."""

    domain: str
    uri: str
    chain_id: str


class ChallengeBook:
    def __init__(self, *, per_address: int, max_pending: int,
                 ttl_s: float = CHALLENGE_TTL_S) -> None:
        self.per_address, self.max_pending, self.ttl_s = per_address, max_pending, ttl_s
        self._pending: dict[str, SignInChallenge] = {}  # by nonce, oldest first
        self._by_address: dict[str, deque[str]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self, wallet: str, address: str, issuer: Issuer) -> SignInChallenge:
        """A new challenge for `wallet`, asked for from `address`."""
        now = time.time()
        nonce = secrets.token_hex(16)  # SIWS nonces are alphanumeric
        message = SignInMessage(
            domain=issuer.domain, address=wallet, uri=issuer.uri, chain_id=issuer.chain_id,
            nonce=nonce, issued_at=iso(now), expiration_time=iso(now + self.ttl_s),
        )
        challenge = SignInChallenge(wallet, nonce, int(now + self.ttl_s), message.text(), address)
        mine = self._by_address.setdefault(address, deque())
        while len(mine) >= self.per_address:
            self._drop(mine[0])
        if len(self._pending) >= self.max_pending:
            self.sweep(now)
        while len(self._pending) >= self.max_pending:
            self._drop(next(iter(self._pending)))
        self._pending[nonce] = challenge
        self._by_address.setdefault(address, deque()).append(nonce)
        return challenge

    def take(self, nonce: str) -> SignInChallenge | None:
        """The live challenge of `nonce`, removed: each is good for one login attempt."""
        challenge = self._pending.get(nonce)
        if challenge is None:
            return None
        self._drop(nonce)
        return challenge if challenge.expires_at >= time.time() else None

    def sweep(self, now: float | None = None) -> None:
        """Forget expired challenges."""
        moment = time.time() if now is None else now
        for nonce in [n for n, c in self._pending.items() if c.expires_at < moment]:
            self._drop(nonce)

    def _drop(self, nonce: str) -> None:
        challenge = self._pending.pop(nonce)
        mine = self._by_address[challenge.address]
        mine.remove(nonce)
        if not mine:
            del self._by_address[challenge.address]
