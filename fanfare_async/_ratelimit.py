"""Client-wide rate limiting: a token bucket plus pauses learned from the server."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._config import RateLimit
from ._exceptions import RateLimitError

# A reset header below this is taken as seconds-from-now rather than a Unix time.
_DELTA_RESET_BELOW = 1_000_000_000.0


@dataclass(frozen=True)
class RateLimitState:
    """The server's rate-limit headers as last seen (None until a response carried them).

    ``reset`` is a Unix timestamp in seconds; ``paused_until`` is the Unix time
    until which the client holds new requests (None when it is not holding).
    """

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    paused_until: float | None = None


def _int_header(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if math.isfinite(number) else None


def _reset_header(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return now + number if number < _DELTA_RESET_BELOW else number


class RateLimiter:
    """Decides when the next request of a client may go out.

    A token bucket (when a :class:`RateLimit` is set) paces requests; a
    ``X-RateLimit-Remaining: 0`` or a 429 pauses every new request of the
    client until the server's reset, so tasks do not back off one by one.
    """

    def __init__(
        self,
        limit: RateLimit | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._limit = limit
        self._monotonic = monotonic
        self._wall = wall
        self._tokens = float(limit.capacity) if limit else 0.0
        self._updated = monotonic()
        self._paused_until = 0.0  # on the monotonic clock
        self._turn = asyncio.Lock()  # waiters queue up in FIFO order
        self._state = RateLimitState()
        self.waited_seconds = 0.0

    @property
    def state(self) -> RateLimitState:
        """What the server said last, and whether the client is holding requests."""
        paused = None
        remaining = self._paused_until - self._monotonic()
        if remaining > 0:
            paused = self._wall() + remaining
        if paused == self._state.paused_until:
            return self._state
        return RateLimitState(self._state.limit, self._state.remaining, self._state.reset, paused)

    def _try_take(self, now: float) -> float:
        """Take a token if one is free and return 0, else the seconds until one is."""
        if now < self._paused_until:
            return self._paused_until - now
        limit = self._limit
        if limit is None:
            return 0.0
        tokens = min(float(limit.capacity), self._tokens + (now - self._updated) * limit.rate)
        self._updated = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / limit.rate

    def delay_if_acquired_now(self) -> float:
        """Seconds a new request would wait now (0 when it could go at once)."""
        now = self._monotonic()
        if now < self._paused_until:
            return self._paused_until - now
        if self._limit is None:
            return 0.0
        tokens = self._tokens + (now - self._updated) * self._limit.rate
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._limit.rate

    async def acquire(self, max_pause: float = math.inf) -> None:
        """Wait until a request may be sent, and count it against the budget.

        Raises RateLimitError at once when the server's pause would last longer
        than ``max_pause`` seconds.
        """
        if not self._turn.locked() and self._try_take(self._monotonic()) == 0.0:
            return
        async with self._turn:
            while True:
                now = self._monotonic()
                pause = self._paused_until - now
                if pause > max_pause:
                    raise RateLimitError(
                        f"the server's rate limit holds requests for {pause:.1f}s, "
                        f"longer than max_retry_wait={max_pause:g}s",
                        retry_after=pause,
                        status_code=429,
                    )
                wait = self._try_take(now)
                if wait <= 0.0:
                    return
                self.waited_seconds += wait
                await asyncio.sleep(wait)

    def observe(self, status: int, headers: Mapping[str, str], retry_after: float | None) -> None:
        """Learn from a response's rate-limit headers; pause the client when told to."""
        limit = headers.get("X-RateLimit-Limit")
        remaining = headers.get("X-RateLimit-Remaining")
        reset = headers.get("X-RateLimit-Reset")
        wall_now = self._wall()
        if limit is not None or remaining is not None or reset is not None:
            self._state = RateLimitState(
                _int_header(limit),
                _int_header(remaining),
                _reset_header(reset, wall_now),
                None,
            )
        hold: float | None = None
        if status == 429:
            hold = retry_after
            if hold is None and self._state.reset is not None:
                hold = self._state.reset - wall_now
        elif self._state.remaining == 0 and self._state.reset is not None and remaining:
            hold = self._state.reset - wall_now
        if hold is not None and hold > 0:
            self.pause(hold)

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` (never shortens an existing pause)."""
        until = self._monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
