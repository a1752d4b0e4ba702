"""One request budget per namespace, in Redis, on Redis's clock (the SharedBudget protocol).

A GCRA bucket (the "theoretical arrival time" of the next request, as
go-redis/redis_rate and redis-cell keep it): one key, O(1) per request. The
scripts read the time with ``TIME`` inside Redis and answer with durations,
so hosts whose wall clocks disagree still share one correct rate; clients
sleep those durations on their own monotonic clocks. A hold (after a 429 or
``Remaining: 0``) and an adapted rate (after bare 429s) live beside it, so
one process learning that the server wants a pause pauses them all. Members
(processes drawing lately) are counted in a sorted set refreshed at most once
a second per process, for the fair share each takes when Redis is gone.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any, Final

from ._redis_codec import milliseconds, pack
from ._redis_scripts import _lua
from ._shared import SharedTierError

if TYPE_CHECKING:
    from .redis import RedisTier

#: Seconds between two refreshes of this process's membership; one is gone after
#: MEMBER_EXPIRY without one.
MEMBER_HEARTBEAT: Final = 1.0
MEMBER_EXPIRY: Final = 10.0

# KEYS: tat, hold, adapted rate, members. ARGV: rate (requests/s; 0: no bucket), burst,
# member id ('' when not due), member expiry ms. Reply: {wait ms as a string, members}.
TAKE = _lua("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[4], now, ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
local members = redis.call('ZCARD', KEYS[4])
local hold = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if hold > now then return {tostring(hold - now), members} end
local rate = tonumber(ARGV[1])
local adapted = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if adapted > 0 and (rate <= 0 or adapted < rate) then rate = adapted end
if rate <= 0 then return {'0', members} end
local interval = 1000 / rate
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local later = tat + interval
local over = later - now - burst * interval
if over > 0 then return {tostring(over), members} end
redis.call('SET', KEYS[1], tostring(later), 'PX', math.ceil(later - now) + 1000)
return {'0', members}
""")

# KEYS: hold. ARGV: ms. Holds until now + ms on Redis's clock, never shortening a hold.
HOLD = _lua("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ms = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if now + ms > cur then
  redis.call('SET', KEYS[1], tostring(now + ms), 'PX', math.ceil(ms) + 1000)
end
return 1
""")


class RedisBudget:
    """The SharedBudget of one namespace (``base``: its key prefix)."""

    __slots__ = ("_adapted", "_beat_due", "_hold", "_keys", "_member", "_tier", "members")

    def __init__(self, tier: RedisTier, base: bytes) -> None:
        self._tier = tier
        tat, hold, adapted, members = (base + b"b:" + name for name in (b"t", b"h", b"r", b"m"))
        self._keys = (tat, hold, adapted, members)
        self._hold = (hold,)
        self._adapted = adapted
        self._member = secrets.token_hex(8).encode()
        self._beat_due = 0.0
        self.members: int | None = None

    async def take(self, rate: float, burst: int) -> float:
        now = time.monotonic()
        member = b""
        if now >= self._beat_due:
            member = self._member
            self._beat_due = now + MEMBER_HEARTBEAT
        args = (
            repr(float(rate)).encode(),
            b"%d" % max(int(burst), 1),
            member,
            b"%d" % milliseconds(MEMBER_EXPIRY),
        )
        reply: Any = await self._tier._eval(TAKE, self._keys, args, always=False)
        try:
            wait_ms, members = reply
            self.members = max(int(members), 1)
            return max(float(wait_ms), 0.0) / 1000
        except (TypeError, ValueError):
            raise SharedTierError(f"unexpected reply to a take: {reply!r}") from None

    async def hold(self, seconds: float) -> None:
        ms = milliseconds(seconds)
        if ms > 0:
            await self._tier._eval(HOLD, self._hold, (b"%d" % ms,), always=False)

    async def adapt(self, rate: float, seconds: float) -> None:
        ms = milliseconds(seconds)
        if ms > 0 and rate > 0:
            command = pack(b"SET", self._adapted, repr(float(rate)).encode(), b"PX", b"%d" % ms)
            await self._tier._run(command)
