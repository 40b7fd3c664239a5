"""The replicas' Redis connection, and how its outages are told: loudly, once each."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

TIMEOUT_S = 0.5  # a command Redis does not answer in this is an outage, not a slow request
RETRY_S = 1.0  # after a failure Redis is left alone this long (requests use the fallback)
FAILURES = (RedisError, OSError, TimeoutError)  # what an unreachable Redis raises


def connect(url: str, *, retries: int = 1) -> aioredis.Redis:
    """A pooled client for `url`; nothing is sent before the first command. A command is
    tried `retries` more times on a new connection (a restarted Redis leaves every pooled
    one dead) before it fails as an outage its caller handles. Subscribers take
    `retries=0`: a subscription renewed behind its reader's back would hide that what was
    published meanwhile is lost."""
    return aioredis.Redis.from_url(  # type: ignore[no-any-return]
        url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
        health_check_interval=10, decode_responses=False, retry=Retry(NoBackoff(), retries))


class RedisHealth:
    """Whether Redis is answering, as its users last found it. The first failure of an
    outage is logged at ERROR with what the gateway does meanwhile; its end at WARNING."""

    def __init__(self) -> None:
        self._down_since: float | None = None
        self._retry_at = 0.0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def usable(self) -> bool:
        """False for RETRY_S after a failure, so that an outage does not cost every request
        a timeout."""
        return self._down_since is None or time.monotonic() >= self._retry_at

    def failed(self, what: str, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("REDIS UNREACHABLE (%s: %s, while %s): rate limits now count per "
                      "replica, revocations reach other replicas only through the key "
                      "cache's expiry, jobs go to this replica's own workers only; money is "
                      "unaffected (it is in the ledger)", type(exc).__name__,
                      str(exc)[:200], what)

    def ok(self) -> None:
        if self._down_since is not None:
            log.warning("Redis answers again after %.1f s: shared limits, revocations and "
                        "the worker registry are back", time.monotonic() - self._down_since)
            self._down_since = None
