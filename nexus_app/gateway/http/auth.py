"""Authentication: API keys (hashed at rest), wallet sign-in challenges and session tokens.

API keys are `nex_live_` + 32 random bytes; only their SHA-256 is stored and compared in
constant time. A wallet signs a one-time Sign-In-With-Solana message naming this gateway
(ed25519) to get a short-lived session token (`nex_sess_…`, also stored hashed) that may
manage the account's keys. A key's own limits can only lower the operator's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from starlette.types import Scope

from nexus_app.addresses import is_valid_address
from nexus_app.chain.wallet import verify
from nexus_app.gateway.conversations.crypto import ConversationKey
from nexus_app.gateway.errors import BadRequest, RateLimited, Unauthorized
from nexus_app.gateway.http.challenges import ChallengeBook, SignInChallenge
from nexus_app.gateway.http.middleware import limit_address, request_context
from nexus_app.gateway.http.public_origin import chain_id_of, sign_in_issuer
from nexus_app.gateway.ledger.records import ApiKeyRecord
from nexus_app.gateway.ledger.store import KeyStore
from nexus_app.gateway.ratelimit import Limiter
from nexus_app.siws import parse

if TYPE_CHECKING:
    from nexus_app.config import Settings

KEY_PREFIX = "nex_live_"
SESSION_PREFIX = "nex_sess_"
KEY_CACHE_TTL_S = 30.0  # one replica: a revocation also drops the key from the cache at once
SHARED_KEY_CACHE_TTL_S = 2.0  # several: the backstop when a revocation broadcast is missed


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a key that may be shown in listings."""
    return secret[: len(KEY_PREFIX) + 6]


class SharedChallenges(Protocol):
    """Sign-in challenges every replica can take (a login may reach another replica than
    its challenge did); each is taken once, wherever."""

    async def put(self, challenge: SignInChallenge) -> None: ...
    async def take(self, nonce: str) -> SignInChallenge | None: ...

    @property
    def down(self) -> bool:
        """Redis is unreachable: only this replica's own challenges can be taken."""
        ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: an account, through an API key or a sign-in session."""

    account: str
    key_id: str | None = None
    # what this request's stored conversations are sealed with, derived from the raw API key
    # (which is not kept); None for a sign-in session
    conversation_key: ConversationKey | None = field(default=None, repr=False, compare=False)

    @property
    def limiter_id(self) -> str:
        return f"key:{self.key_id}" if self.key_id else f"acct:{self.account}"


class Authenticator:
    """Checks bearer credentials and applies per-key rate limits."""

    def __init__(
        self,
        store: KeyStore,
        limiter: Limiter,
        *,
        rpm: int,
        tpm: int,
        ip_rpm: int,
        session_ttl_s: int,
        challenges: ChallengeBook | None = None,
        public_url: str | None = None,
        chain_id: str = "localnet",
        key_cache_ttl_s: float = KEY_CACHE_TTL_S,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.rpm, self.tpm, self.ip_rpm = rpm, tpm, ip_rpm
        self.session_ttl_s = session_ttl_s
        if challenges is None:
            challenges = ChallengeBook(per_address=5, max_pending=10_000)
        self.challenges = challenges
        self.public_url, self.chain_id = public_url, chain_id
        self._keys: dict[str, tuple[ApiKeyRecord, float]] = {}
        self.key_cache_ttl_s = key_cache_ttl_s
        # bumped by every revocation: a key read that began before one is not cached
        self._epoch = 0
        # tells the other replicas of a revocation (set when there are several)
        self.broadcast: Callable[[str], Awaitable[None]] | None = None
        self.shared_challenges: SharedChallenges | None = None  # set when there are several
        self._last_used: dict[str, float] = {}

    @classmethod
    def from_settings(cls, store: KeyStore, limiter: Limiter,
                      settings: Settings) -> Authenticator:
        return cls(
            store, limiter,
            rpm=settings.rate_limit_rpm, tpm=settings.rate_limit_tpm,
            ip_rpm=settings.ip_rate_limit_rpm, session_ttl_s=settings.session_ttl_s,
            challenges=ChallengeBook(per_address=settings.signin_challenges_per_address,
                                     max_pending=settings.signin_challenges_max),
            public_url=settings.public_url,
            chain_id=chain_id_of(settings.chain, settings.rpc_url),
            key_cache_ttl_s=SHARED_KEY_CACHE_TTL_S if settings.redis_url else KEY_CACHE_TTL_S,
        )

    # bearer credentials ------------------------------------------------------------------------

    async def api_key(self, scope: Scope, authorization: str | None) -> Caller:
        """The caller of an inference request: a valid, unrevoked key within its limits."""
        secret = self._bearer(authorization)
        record = await self._key(secret) if secret.startswith(KEY_PREFIX) else None
        if record is None or record.revoked_at is not None:
            await self._failed(scope)
            raise Unauthorized("Invalid or revoked API key.")
        caller = Caller(record.account, record.id, ConversationKey.of_api_key(secret))
        await self._limit(scope, caller, *self.key_limits(record))
        self._last_used[record.id] = time.time()
        return caller

    def key_limits(self, record: ApiKeyRecord) -> tuple[int, int]:
        """(rpm, tpm) a key gets: its own limits may only lower the operator's, also for
        keys stored before that rule."""
        rpm = min(record.rpm, self.rpm) if record.rpm else self.rpm
        tpm = min(record.tpm, self.tpm) if record.tpm else self.tpm
        return rpm, tpm

    async def session(self, scope: Scope, authorization: str | None) -> Caller:
        """The caller of an account-management request: a live wallet sign-in session."""
        secret = self._bearer(authorization)
        account = None
        if secret.startswith(SESSION_PREFIX):
            account = await self.store.session_account(hash_secret(secret), time.time())
        if account is None:
            await self._failed(scope)
            raise Unauthorized(
                "This route needs a wallet sign-in session (POST /v1/auth/challenge, then "
                "/v1/auth/login).",
                code="invalid_session",
            )
        caller = Caller(account)
        await self._limit(scope, caller, self.rpm, None)
        return caller

    async def key_or_session(self, scope: Scope, authorization: str | None) -> Caller:
        if self._bearer(authorization).startswith(SESSION_PREFIX):
            return await self.session(scope, authorization)
        return await self.api_key(scope, authorization)

    async def recognises(self, authorization: str) -> bool:
        """Whether `authorization` holds a live key or session. Anything else (none, a bogus
        or revoked token) is anonymous and counts against its client address."""
        try:
            secret = self._bearer(authorization)
        except Unauthorized:
            return False
        if secret.startswith(KEY_PREFIX):
            record = await self._key(secret)
            return record is not None and record.revoked_at is None
        if secret.startswith(SESSION_PREFIX):
            digest = hash_secret(secret)
            return await self.store.session_account(digest, time.time()) is not None
        return False

    async def anonymous(self, scope: Scope) -> None:
        """Count a request of a route that takes no credential (sign-in) against its client
        address, whatever Authorization header it carries; the middleware counted it already
        when the header was not a live credential."""
        context = request_context(scope)
        if context.get("address_counted"):
            return
        context["address_counted"] = True
        verdict = await self.limiter.hit("ip:" + limit_address(scope), self.ip_rpm)
        context["quota"] = verdict.quota
        if not verdict.allowed:
            raise RateLimited("Too many requests from this address.",
                              retry_after=verdict.retry_after)

    @staticmethod
    def _bearer(authorization: str | None) -> str:
        if not authorization:
            raise Unauthorized(
                "Missing API key: send 'Authorization: Bearer nex_live_…'.", code="missing_api_key"
            )
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <key>'.")
        return secret.strip()

    async def _key(self, secret: str) -> ApiKeyRecord | None:
        digest = hash_secret(secret)
        cached = self._keys.get(digest)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self.key_cache_ttl_s:
            record = cached[0]
        else:
            epoch = self._epoch
            found = await self.store.key_by_hash(digest)
            if found is None:
                return None
            record = found
            if epoch == self._epoch:  # no revocation while it was read: it may be cached
                self._keys[digest] = (record, now)
        return record if hmac.compare_digest(record.secret_hash, digest) else None

    async def _failed(self, scope: Scope) -> None:
        """Count a failed credential against the client address (slows key guessing)."""
        verdict = await self.limiter.hit("authfail:" + limit_address(scope), self.ip_rpm)
        request_context(scope)["quota"] = verdict.quota
        if not verdict.allowed:
            raise RateLimited(
                "Too many failed authentications from this address.",
                retry_after=verdict.retry_after,
            )

    async def _limit(self, scope: Scope, caller: Caller, rpm: int, tpm: int | None) -> None:
        verdict = await self.limiter.hit(caller.limiter_id, rpm, tpm)
        request_context(scope)["quota"] = verdict.quota
        if not verdict.allowed:
            raise RateLimited(
                "Rate limit reached for this key; retry later.", retry_after=verdict.retry_after
            )

    def forget_key(self, secret_hash: str) -> None:
        """Drop a key from the cache so that a revocation applies at once."""
        self._epoch += 1
        self._keys.pop(secret_hash, None)

    def forget_all_keys(self) -> None:
        """Drop every cached key (revocations may have been missed)."""
        self._epoch += 1
        self._keys.clear()

    async def revoked(self, secret_hash: str) -> None:
        """A key was revoked here: forget it, and tell the other replicas to."""
        self.forget_key(secret_hash)
        if self.broadcast is not None:
            await self.broadcast(secret_hash)

    async def flush_last_used(self) -> None:
        pending, self._last_used = self._last_used, {}
        await self.store.touch_keys(pending)

    # wallet sign-in ----------------------------------------------------------------------------

    async def challenge(self, scope: Scope, wallet: str) -> SignInChallenge:
        """A SIWS message for `wallet` naming this gateway, to be signed within its expiry."""
        await self.anonymous(scope)
        if not is_valid_address(wallet):
            raise BadRequest("'wallet' is not a Solana address.", param="wallet")
        issuer = sign_in_issuer(scope, self.public_url, self.chain_id)
        challenge = self.challenges.issue(wallet, limit_address(scope), issuer)
        if self.shared_challenges is not None:
            await self.shared_challenges.put(challenge)
        return challenge

    async def login(self, scope: Scope, wallet: str, nonce: str, signature: str,
                    message: str | None = None) -> tuple[str, float]:
        """Check a signed challenge; returns a new session token and its expiry. The
        signature must be over exactly the message issued for the nonce."""
        await self.anonymous(scope)
        challenge = self.challenges.take(nonce)
        if self.shared_challenges is not None:  # the authority: taken once on any replica
            challenge = await self.shared_challenges.take(nonce) or (
                challenge if self.shared_challenges.down else None)
        if challenge is None or challenge.wallet != wallet:
            raise Unauthorized("Unknown or expired sign-in challenge.", code="invalid_challenge")
        if message is not None and message != challenge.message:
            raise Unauthorized(_not_issued(message, challenge.message), code="invalid_message")
        if not verify(wallet, challenge.message.encode(), signature):
            raise Unauthorized("The signature does not match the wallet.", code="invalid_signature")
        token = new_secret(SESSION_PREFIX)
        expires_at = time.time() + self.session_ttl_s
        await self.store.add_session(hash_secret(token), wallet, expires_at)
        return token, expires_at


def _not_issued(signed: str, issued: str) -> str:
    """Why a signed message is refused: it is not the one this gateway issued."""
    theirs, ours = parse(signed), parse(issued)
    if theirs is not None and ours is not None and theirs.domain != ours.domain:
        shown = "".join(c for c in theirs.domain[:100] if c.isprintable())
        return f"The signed message is for another gateway ('{shown}'), not '{ours.domain}'."
    return "The signed message is not the one this gateway issued for this nonce."
