"""Rate limits counted on Redis, so that N replicas enforce a key's limit once, not N times.

One Lua script checks and counts a request atomically in the caller's one-minute window
(Redis's own clock picks the window, so replicas whose clocks differ still share it). When
Redis does not answer, the replica counts in its own memory until it does (see `link`).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from nexus_app.gateway.cluster.link import FAILURES, RedisHealth
from nexus_app.gateway.ratelimit import WINDOW_S, Quota, RateLimiter, Verdict

# KEYS[1]: the caller's key (without its window); ARGV: rpm, tpm (-1: none), window seconds.
# Returns {allowed, requests counted, seconds to the window's end}.
HIT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local span = tonumber(ARGV[3])
local window = math.floor(t / span)
local key = KEYS[1] .. ':' .. window
local reset = math.max(1, math.ceil((window + 1) * span - t))
local counts = redis.call('HMGET', key, 'r', 't')
local requests = tonumber(counts[1] or '0')
local tokens = tonumber(counts[2] or '0')
local tpm = tonumber(ARGV[2])
if requests >= tonumber(ARGV[1]) or (tpm >= 0 and tokens >= tpm) then
  return {0, requests, reset}
end
requests = redis.call('HINCRBY', key, 'r', 1)
if requests == 1 then redis.call('EXPIRE', key, 2 * span) end
return {1, requests, reset}
"""
TOKENS = """
local now = redis.call('TIME')
local span = tonumber(ARGV[2])
local key = KEYS[1] .. ':' .. math.floor(tonumber(now[1]) / span)
redis.call('HINCRBY', key, 't', ARGV[1])
redis.call('EXPIRE', key, 2 * span)
return 1
"""


class SharedLimiter:
    """The `Limiter` of replicas that share a Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str, health: RedisHealth) -> None:
        self._prefix = prefix + "rl:"
        self._hit = client.register_script(HIT)
        self._tokens = client.register_script(TOKENS)
        self._health = health
        self.fallback = RateLimiter()  # while Redis is down

    async def hit(self, caller: str, rpm: int, tpm: int | None = None) -> Verdict:
        if self._health.usable():
            try:
                allowed, counted, reset = await self._hit(
                    keys=[self._prefix + caller], args=[rpm, -1 if tpm is None else tpm,
                                                        int(WINDOW_S)])
            except FAILURES as exc:
                self._health.failed("counting a request", exc)
            else:
                self._health.ok()
                if not allowed:
                    return Verdict(False, Quota(rpm, 0, reset), retry_after=reset)
                return Verdict(True, Quota(rpm, max(0, rpm - counted), reset))
        return self.fallback.hit_now(caller, rpm, tpm)

    async def add_tokens(self, caller: str, tokens: int) -> None:
        if self._health.usable():
            try:
                await self._tokens(keys=[self._prefix + caller], args=[tokens, int(WINDOW_S)])
            except FAILURES as exc:
                self._health.failed("counting tokens", exc)
            else:
                self._health.ok()
                return
        await self.fallback.add_tokens(caller, tokens)

    def sweep(self) -> None:
        self.fallback.sweep()  # Redis forgets old windows by itself (EXPIRE)
