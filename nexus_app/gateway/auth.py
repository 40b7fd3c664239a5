"""Authentication: API keys (hashed at rest), wallet sign-in challenges and session tokens.

API keys are `nex_live_` + 32 random bytes; only their SHA-256 is stored and compared in
constant time. A wallet signs a one-time nonce (ed25519) to get a short-lived session token
(`nex_sess_…`, also stored hashed) that may manage the account's keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.types import Scope

from nexus_app.chain.wallet import is_valid_address, verify
from nexus_app.gateway.errors import BadRequest, RateLimited, Unauthorized
from nexus_app.gateway.middleware import client_address, request_context
from nexus_app.gateway.ratelimit import RateLimiter
from nexus_app.gateway.store import ApiKeyRecord, Store

KEY_PREFIX = "nex_live_"
SESSION_PREFIX = "nex_sess_"
CHALLENGE_TTL_S = 300
MAX_PENDING_CHALLENGES = 10_000
KEY_CACHE_TTL_S = 30.0


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a key that may be shown in listings."""
    return secret[: len(KEY_PREFIX) + 6]


def login_message(wallet: str, nonce: str) -> bytes:
    """The bytes a wallet signs to sign in."""
    return f"NEXUS sign-in\nwallet: {wallet}\nnonce: {nonce}".encode()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: an account, through an API key or a sign-in session."""

    account: str
    key_id: str | None = None

    @property
    def limiter_id(self) -> str:
        return f"key:{self.key_id}" if self.key_id else f"acct:{self.account}"


@dataclass(frozen=True, slots=True)
class Challenge:
    wallet: str
    nonce: str
    expires_at: float

    @property
    def message(self) -> str:
        return login_message(self.wallet, self.nonce).decode()


class Authenticator:
    """Checks bearer credentials and applies per-key rate limits."""

    def __init__(
        self,
        store: Store,
        limiter: RateLimiter,
        *,
        rpm: int,
        tpm: int,
        ip_rpm: int,
        session_ttl_s: int,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.rpm, self.tpm, self.ip_rpm = rpm, tpm, ip_rpm
        self.session_ttl_s = session_ttl_s
        self._keys: dict[str, tuple[ApiKeyRecord, float]] = {}
        self._last_used: dict[str, float] = {}
        self._challenges: dict[str, Challenge] = {}

    # bearer credentials ------------------------------------------------------------------------

    async def api_key(self, scope: Scope, authorization: str | None) -> Caller:
        """The caller of an inference request: a valid, unrevoked key within its limits."""
        secret = self._bearer(authorization)
        record = await self._key(secret) if secret.startswith(KEY_PREFIX) else None
        if record is None or record.revoked_at is not None:
            self._failed(scope)
            raise Unauthorized("Invalid or revoked API key.")
        caller = Caller(record.account, record.id)
        self._limit(scope, caller, record.rpm or self.rpm, record.tpm or self.tpm)
        self._last_used[record.id] = time.time()
        return caller

    async def session(self, scope: Scope, authorization: str | None) -> Caller:
        """The caller of an account-management request: a live wallet sign-in session."""
        secret = self._bearer(authorization)
        account = None
        if secret.startswith(SESSION_PREFIX):
            account = await self.store.session_account(hash_secret(secret), time.time())
        if account is None:
            self._failed(scope)
            raise Unauthorized(
                "This route needs a wallet sign-in session (POST /v1/auth/challenge, then "
                "/v1/auth/login).",
                code="invalid_session",
            )
        caller = Caller(account)
        self._limit(scope, caller, self.rpm, None)
        return caller

    async def key_or_session(self, scope: Scope, authorization: str | None) -> Caller:
        if self._bearer(authorization).startswith(SESSION_PREFIX):
            return await self.session(scope, authorization)
        return await self.api_key(scope, authorization)

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
        if cached is not None and now - cached[1] < KEY_CACHE_TTL_S:
            record = cached[0]
        else:
            found = await self.store.key_by_hash(digest)
            if found is None:
                return None
            record = found
            self._keys[digest] = (record, now)
        return record if hmac.compare_digest(record.secret_hash, digest) else None

    def _failed(self, scope: Scope) -> None:
        """Count a failed credential against the client address (slows key guessing)."""
        verdict = self.limiter.hit("authfail:" + client_address(scope), self.ip_rpm)
        request_context(scope)["quota"] = verdict.quota
        if not verdict.allowed:
            raise RateLimited(
                "Too many failed authentications from this address.",
                retry_after=verdict.retry_after,
            )

    def _limit(self, scope: Scope, caller: Caller, rpm: int, tpm: int | None) -> None:
        verdict = self.limiter.hit(caller.limiter_id, rpm, tpm)
        request_context(scope)["quota"] = verdict.quota
        if not verdict.allowed:
            raise RateLimited(
                "Rate limit reached for this key; retry later.", retry_after=verdict.retry_after
            )

    def forget_key(self, secret_hash: str) -> None:
        """Drop a key from the cache so that a revocation applies at once."""
        self._keys.pop(secret_hash, None)

    async def flush_last_used(self) -> None:
        pending, self._last_used = self._last_used, {}
        await self.store.touch_keys(pending)

    # wallet sign-in ----------------------------------------------------------------------------

    def challenge(self, wallet: str) -> Challenge:
        if not is_valid_address(wallet):
            raise BadRequest("'wallet' is not a Solana address.", param="wallet")
        now = time.time()
        if len(self._challenges) >= MAX_PENDING_CHALLENGES:
            self._challenges = {n: c for n, c in self._challenges.items() if c.expires_at > now}
            if len(self._challenges) >= MAX_PENDING_CHALLENGES:
                raise RateLimited("Too many pending sign-in challenges.", retry_after=30)
        challenge = Challenge(wallet, secrets.token_urlsafe(24), now + CHALLENGE_TTL_S)
        self._challenges[challenge.nonce] = challenge
        return challenge

    async def login(self, wallet: str, nonce: str, signature: str) -> tuple[str, float]:
        """Check a signed challenge; returns a new session token and its expiry."""
        challenge = self._challenges.pop(nonce, None)
        if challenge is None or challenge.wallet != wallet or challenge.expires_at < time.time():
            raise Unauthorized("Unknown or expired sign-in challenge.", code="invalid_challenge")
        if not verify(wallet, login_message(wallet, nonce), signature):
            raise Unauthorized("The signature does not match the wallet.", code="invalid_signature")
        token = new_secret(SESSION_PREFIX)
        expires_at = time.time() + self.session_ttl_s
        await self.store.add_session(hash_secret(token), wallet, expires_at)
        return token, expires_at
