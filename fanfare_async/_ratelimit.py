"""Client-wide rate limiting: a token bucket plus pauses learned from the server."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._config import RateLimit
from ._exceptions import RateLimitError

# Float slack so that 0.9999999 refilled tokens count as one.
_ONE = 1.0 - 1e-9
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

    Three rules, all client-wide so that tasks never back off one by one:

    - a token bucket (when a :class:`RateLimit` is set) paces requests;
    - the server's window: after a response says ``X-RateLimit-Remaining: r``
      until ``X-RateLimit-Reset``, at most ``r`` minus the requests still in
      flight go out before that reset (``r = 0`` holds everything until it);
    - a 429 holds every new request for its ``Retry-After`` (or until the reset).
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
        self._paused_until = 0.0  # monotonic; a 429's hold
        self._budget: int | None = None  # requests the server's window still allows
        self._budget_until = 0.0  # monotonic time the server's window resets
        self._in_flight = 0
        self._turn = asyncio.Lock()  # waiters queue up in FIFO order
        self._state = RateLimitState()
        self.waited_seconds = 0.0

    @property
    def state(self) -> RateLimitState:
        """What the server said last, and until when the client holds requests."""
        now = self._monotonic()
        hold = self._hold(now)
        paused = self._wall() + (hold - now) if hold > now else None
        if paused == self._state.paused_until:
            return self._state
        return RateLimitState(self._state.limit, self._state.remaining, self._state.reset, paused)

    def _hold(self, now: float) -> float:
        """Monotonic time until which no request may go out (<= now: none)."""
        hold = self._paused_until
        if self._budget is not None:
            if now >= self._budget_until:
                self._budget = None  # the server's window is over
            elif self._budget <= 0 and self._budget_until > hold:
                hold = self._budget_until
        return hold

    def _try_take(self, now: float) -> float:
        """Take a slot if one is free and return 0, else the seconds to wait for one."""
        hold = self._hold(now)
        if now < hold:
            return hold - now
        limit = self._limit
        if limit is not None:
            tokens = min(float(limit.capacity), self._tokens + (now - self._updated) * limit.rate)
            self._updated = now
            if tokens < _ONE:
                self._tokens = tokens
                return (1.0 - tokens) / limit.rate
            self._tokens = tokens - 1.0
        if self._budget is not None:
            self._budget -= 1
        self._in_flight += 1
        return 0.0

    def try_acquire(self) -> bool:
        """Count a request that may go out now, without waiting; False: call :meth:`acquire`."""
        return not self._turn.locked() and self._try_take(self._monotonic()) == 0.0

    async def acquire(self, max_pause: float = math.inf) -> None:
        """Wait until a request may be sent, and count it; pair with :meth:`release`.

        Raises RateLimitError at once when the server holds the client for
        longer than ``max_pause`` seconds.
        """
        if not self._turn.locked() and self._try_take(self._monotonic()) == 0.0:
            return
        async with self._turn:
            while True:
                now = self._monotonic()
                held = self._hold(now) - now
                if held > max_pause:
                    raise RateLimitError(
                        f"the server's rate limit holds requests for {held:.1f}s, "
                        f"longer than max_retry_wait={max_pause:g}s",
                        retry_after=held,
                        status_code=429,
                    )
                wait = self._try_take(now)
                if wait <= 0.0:
                    return
                self.waited_seconds += wait
                await asyncio.sleep(wait)

    def release(self) -> None:
        """A request sent after :meth:`acquire` has its answer (or failed)."""
        self._in_flight -= 1

    def observe(self, status: int, headers: Mapping[str, str], retry_after: float | None) -> None:
        """Learn from a response's headers (call before :meth:`release`)."""
        limit = headers.get("X-RateLimit-Limit")
        remaining = headers.get("X-RateLimit-Remaining")
        reset = headers.get("X-RateLimit-Reset")
        if limit is None and remaining is None and reset is None and status != 429:
            return
        wall_now = self._wall()
        now = self._monotonic()
        state = RateLimitState(
            _int_header(limit), _int_header(remaining), _reset_header(reset, wall_now), None
        )
        if limit is not None or remaining is not None or reset is not None:
            self._state = state
        if state.remaining is not None and state.reset is not None and state.reset > wall_now:
            until = now + (state.reset - wall_now)
            # Requests still in flight (other than this one) may not be counted yet.
            allowance = state.remaining - max(self._in_flight - 1, 0)
            same_window = self._budget is not None and abs(until - self._budget_until) < 0.5
            if same_window and self._budget is not None:
                allowance = min(allowance, self._budget)
            if same_window or until > self._budget_until:
                self._budget, self._budget_until = allowance, until
        if status == 429:
            hold = retry_after
            if hold is None and state.reset is not None:
                hold = state.reset - wall_now
            if hold is not None and hold > 0:
                self.pause(hold)

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` (never shortens an existing pause)."""
        until = self._monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
