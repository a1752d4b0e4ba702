"""The Lua scripts of the Redis tier: each one round trip, each key in KEYS.

Run with EVALSHA; on NOSCRIPT (a restart, a failover, ``SCRIPT FLUSH``) the
caller sends the same call once as EVAL, which runs it and caches it again.
Nothing is retried after a timeout: the first call may have run.

A lease key holds the holder's random token while a fetch runs, or ``=`` for a
short while after a fill (so a process that missed the value just before the
fill is told to read it instead of fetching again).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True)
class Script:
    """A script's source and SHA1 (lowercase hex), as Redis names it."""

    source: bytes
    sha: bytes = field(init=False)

    def __post_init__(self) -> None:
        sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest().encode()
        object.__setattr__(self, "sha", sha)


def _lua(text: str) -> Script:
    return Script(text.strip().encode())


#: The marker a fill leaves in the lease key, and how long at most (ms).
FILLED: Final = b"="
FILLED_MS: Final = 1000

# KEYS[1] value. Reply: "<pttl_ms>:<envelope>" (one bulk string parses cheaper than an
# array of two), or nil. A key of another type is a miss.
GET = _lua("""
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' then return false end
return redis.call('PTTL', KEYS[1]) .. ':' .. v
""")

# KEYS[1] lease, KEYS[2] value; ARGV[1] token, ARGV[2] lease ms.
# Reply: -1 the lease is ours; else the ms until the holder's lease runs out,
# 0 when the group was just filled (read it).
CLAIM = _lua("""
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return -1 end
if cur == '=' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
  cur = false
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return -1
end
local t = redis.call('PTTL', KEYS[1])
if t < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(ARGV[2])
end
return t
""")

# KEYS[1] lease; ARGV[1] token, ARGV[2] lease ms. Reply: 1 extended, 0 lost.
EXTEND = _lua("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")

# KEYS[1] value, KEYS[2] lease; ARGV[1] token, ARGV[2] envelope, ARGV[3] value ms,
# ARGV[4] marker ms, ARGV[5] channel, ARGV[6] wake-up message.
# Stores only while the lease is ours (an invalidate or clear during the fetch
# revoked it), then wakes the waiters in every case.
# Reply: 1 stored, 0 lease no longer ours, 2 Redis refused the value (e.g. OOM).
FILL = _lua("""
local outcome = 0
if redis.call('GET', KEYS[2]) == ARGV[1] then
  outcome = 1
  local ttl = tonumber(ARGV[3])
  if ttl > 0 then
    local ok = redis.pcall('SET', KEYS[1], ARGV[2], 'PX', ttl)
    if type(ok) == 'table' and ok.err then outcome = 2 end
  end
  local marker = tonumber(ARGV[4])
  if outcome == 1 and marker > 0 then
    redis.call('SET', KEYS[2], '=', 'PX', marker)
  else
    redis.call('DEL', KEYS[2])
  end
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return outcome
""")

# KEYS[1] lease; ARGV[1] token, ARGV[2] channel, ARGV[3] wake-up message. Reply: 1 released.
ABANDON = _lua("""
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  released = 1
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return released
""")

# KEYS[1] value, KEYS[2] lease; ARGV[1] channel, ARGV[2] invalidation message.
# The lease goes too: a fetch in flight must not store what it read before.
INVALIDATE = _lua("""
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
""")
