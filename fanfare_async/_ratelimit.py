"""Client-wide rate limiting: a token bucket, holds the server asks for, and AIMD.

Every rule here is client-wide, so tasks never back off one by one:

- a token bucket paces requests at the rate in force: the configured
  :class:`RateLimit`, or a lower rate learned from bare 429s (below);
- the server's window: a response saying ``X-RateLimit-Remaining: r`` lets at
  most ``r`` more requests go out before ``X-RateLimit-Reset``, less the other
  requests still in flight. The latest response is the truth: only requests
  sent since it (and those still out) count against it, so a server (or a
  gateway) that keeps answering ``Remaining: 999`` never holds the client
  back, however many requests were sent;
- a 429 holds every new request for its ``Retry-After`` (or until a usable
  reset);
- a 429 or 503 that names no wait (as proxies send them) holds the client for a
  backoff that grows with consecutive such answers, and halves the sending
  rate; successes then raise it again additively (AIMD, as TCP does).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from ._config import RateLimit
from ._exceptions import RateLimitError
from ._retry import parse_http_date
from ._shared import SharedBudget, SharedTierError

# Float slack so that 0.9999999 refilled tokens count as one.
_ONE = 1.0 - 1e-9
# A reset header below this is taken as seconds-from-now rather than a Unix time.
_DELTA_RESET_BELOW = 1_000_000_000.0
#: A reset further away than this is not a rate-limit window (Fanfare's is a
#: minute): it holds nothing, whatever the other headers say.
MAX_RESET_AHEAD = 3600.0

#: The hold after the first bare 429/503; it doubles per consecutive one, up to the cap.
BARE_HOLD_FIRST = 0.25
BARE_HOLD_MAX = 8.0
#: The sending rate is multiplied by this after a bare 429/503 ...
DECREASE_FACTOR = 0.5
#: ... and then climbs back by this fraction of the decreased rate per second of success.
INCREASE_PER_SECOND = 0.25
#: The adapted rate never drops below this (requests/second), nor above the configured one.
MIN_ADAPTED_RATE = 1.0
#: While adapted, the bucket holds this many seconds' worth of requests (at least one).
ADAPTED_BURST_SECONDS = 0.1
#: Without a configured rate, the first adapted rate is half the measured sending rate,
#: taken as at least this (requests/second): a rejection after a few requests says
#: little about a rate the client never reached.
MIN_MEASURED_RATE = 10.0
#: The climb back is at least this many requests/second per second.
MIN_INCREASE_PER_SECOND = 2.0
#: Without a configured rate, the adapted one is dropped once it exceeds this many times
#: the sending rate measured when the limiter first pushed back.
_UNLIMITED_AFTER = 2.0
#: A host clock further than this from the server's ``Date`` is not used to read
#: ``X-RateLimit-Reset`` timestamps (seconds).
CLOCK_SKEW_TOLERANCE = 2.0
#: Without the tier, a process that never learned how many share the budget takes
#: this fraction of it: 1/DEFAULT_FALLBACK_PROCESSES.
DEFAULT_FALLBACK_PROCESSES = 4
# An adapted rate is shared for at most this many seconds (it climbs back meanwhile).
_SHARED_ADAPT_MAX = 60.0
# How many recent sends the measured sending rate is taken over.
_RECENT_SENDS = 64


#: True in a task whose requests are background work (refresh-ahead): they wait at the
#: limiter until no foreground request is waiting.
BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fanfare_async_background", default=False
)


@dataclass(frozen=True)
class RateLimitState:
    """The server's rate-limit headers as last seen, and what the client does about them.

    ``limit``, ``remaining`` and ``reset`` (a Unix timestamp in seconds) are the
    last values seen, each read on its own (None until a response carried a
    parsable one). ``paused_until`` is the Unix time until which the client holds
    new requests (None when it is not holding); ``rate`` is the sending rate in
    force, in requests per second (None while nothing limits the client).
    """

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    paused_until: float | None = None
    rate: float | None = None


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
    """Decides when the next request of a client may go out (see the module docstring).

    A request is counted by :meth:`try_acquire` or :meth:`acquire`, which return
    its send number; :meth:`observe` learns from its response, and
    :meth:`release` marks it answered.
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
        now = monotonic()
        # The bucket: rate and size in force (None: no bucket), tokens at _updated.
        self._rate: float | None = limit.rate if limit else None
        self._capacity = float(limit.capacity) if limit else 0.0
        self._tokens = self._capacity
        self._updated = now
        self._paused_until = 0.0  # monotonic; a 429's hold
        # The server's latest window: `remaining` as of send number `_window_seq`.
        self._window_remaining: int | None = None
        self._window_seq = 0
        self._window_until = 0.0  # monotonic time the server's window resets
        # AIMD after bare 429/503s.
        self._bare_streak = 0  # consecutive bare rejections (one per decrease)
        self._decreased_seq = -1  # sends numbered below this predate the last decrease
        self._ceiling = limit.rate if limit else math.inf
        self._increase = 0.0  # requests/second gained per second of success
        self._increased = now
        self._recent: deque[float] = deque(maxlen=_RECENT_SENDS)
        self._sent = 0
        self._in_flight = 0
        self._turn = asyncio.Lock()  # waiters queue up in FIFO order
        self._state = RateLimitState(rate=self._rate)
        self.waited_seconds = 0.0
        # A budget shared by every process of a tier's namespace (see share()).
        self._budget: SharedBudget | None = None
        self._budget_ok: Callable[[], bool] = _never
        self._share = 1.0  # the fraction of the rate this process takes while on its own
        self._publishing: set[asyncio.Task[None]] = set()
        # Foreground requests waiting in acquire(): background ones let them go first.
        self._foreground_waiting = 0
        self._foreground_idle = asyncio.Event()
        self._foreground_idle.set()
        self._date_header: str | None = None
        self._date_time: float | None = None
        self.held = 0  # requests that waited in acquire for a sleep (theirs or one ahead)
        self._slept = 0  # sleeps of acquire() over so far

    @property
    def state(self) -> RateLimitState:
        """What the server said last, until when the client holds requests, and the rate."""
        now = self._monotonic()
        hold = self._hold(now)
        paused = self._wall() + (hold - now) if hold > now else None
        state = self._state
        if paused == state.paused_until and self._rate == state.rate:
            return state
        return RateLimitState(state.limit, state.remaining, state.reset, paused, self._rate)

    @property
    def in_flight(self) -> int:
        """Requests counted and not yet released."""
        return self._in_flight

    def _hold(self, now: float) -> float:
        """Monotonic time until which no request may go out (<= now: none)."""
        hold = self._paused_until
        remaining = self._window_remaining
        if remaining is not None:
            if now >= self._window_until:
                self._window_remaining = None  # the server's window is over
            elif remaining - (self._sent - self._window_seq) <= 0 and self._window_until > hold:
                hold = self._window_until
        return hold

    def _try_take(self, now: float) -> float:
        """Take a slot if one is free and return 0, else the seconds to wait for one."""
        hold = self._hold(now)
        if now < hold:
            return hold - now
        rate = self._rate
        if rate is not None:
            share = self._share
            capacity = self._capacity if share == 1.0 else max(1.0, self._capacity * share)
            rate *= share
            tokens = min(capacity, self._tokens + (now - self._updated) * rate)
            self._updated = now
            if tokens < _ONE:
                self._tokens = tokens
                return (1.0 - tokens) / rate
            self._tokens = tokens - 1.0
        self._count_send(now)
        return 0.0

    def _count_send(self, now: float) -> None:
        self._sent += 1
        self._in_flight += 1
        self._recent.append(now)

    def share(self, budget: SharedBudget, available: Callable[[], bool]) -> None:
        """Draw from ``budget``, shared by every process of a tier's namespace, while
        ``available()``; otherwise from a local bucket at a fair share of the rate."""
        self._budget = budget
        self._budget_ok = available

    def try_acquire(self) -> int | None:
        """Count a request that may go out now and return its send number; None: it
        may not, call :meth:`acquire`."""
        if self._budget is not None or BACKGROUND.get():
            return None  # the shared budget answers only in acquire(); refreshes wait there
        if not self._turn.locked() and self._try_take(self._monotonic()) == 0.0:
            return self._sent
        return None

    async def acquire(self, max_pause: float = math.inf) -> int:
        """Wait until a request may be sent, count it and return its send number; pair
        with :meth:`release`.

        Raises RateLimitError at once when the client is held for longer than
        ``max_pause`` seconds.
        """
        budget = self._budget
        background = BACKGROUND.get()
        if background:
            # A background request (a refresh-ahead) goes after every foreground one
            # already waiting: it delays foreground lookups by its own slot at most.
            while self._foreground_waiting:
                await self._foreground_idle.wait()
        elif (
            budget is None and not self._turn.locked() and self._try_take(self._monotonic()) == 0.0
        ):
            return self._sent
        else:
            self._foreground_waiting += 1
            self._foreground_idle.clear()
        try:
            return await self._acquire_in_turn(budget, max_pause)
        finally:
            if not background:
                self._foreground_waiting -= 1
                if not self._foreground_waiting:
                    self._foreground_idle.set()

    async def _acquire_in_turn(self, budget: SharedBudget | None, max_pause: float) -> int:
        slept = self._slept
        async with self._turn:
            while True:
                now = self._monotonic()
                held = self._hold(now) - now
                if held > max_pause:
                    raise _held_too_long("the server's rate limit", held, max_pause)
                if budget is not None and self._budget_ok():
                    wait = await self._take_shared(budget)
                    if wait is None:
                        continue  # the tier failed: on our own from now on
                    if wait > max_pause:
                        raise _held_too_long("the shared rate limit", wait, max_pause)
                else:
                    self._share_alone()
                    wait = self._try_take(now)
                if wait <= 0.0:
                    if self._slept != slept:  # it slept, or queued behind one who did
                        self.held += 1
                    return self._sent
                self.waited_seconds += wait
                try:
                    await asyncio.sleep(wait)
                finally:
                    self._slept += 1

    async def _take_shared(self, budget: SharedBudget) -> float | None:
        """Draw from the shared budget: 0.0 (counted), the seconds to wait, or None when
        the tier failed."""
        self._share = 1.0
        rate = self._rate
        burst = int(self._capacity) if rate is not None else 1
        try:
            wait = await budget.take(rate or 0.0, burst)
        except SharedTierError:
            self._share_alone()
            return None
        if wait <= 0.0:
            self._count_send(self._monotonic())
        return wait

    def _share_alone(self) -> None:
        """Without the tier, take a fair share of the rate: the processes it last
        counted, or DEFAULT_FALLBACK_PROCESSES when it never answered."""
        budget = self._budget
        if budget is None:
            return
        members = budget.members
        self._share = 1.0 / (members if members is not None else DEFAULT_FALLBACK_PROCESSES)

    def _publish(self, update: Coroutine[Any, Any, None]) -> None:
        """Tell the other processes (a hold, an adapted rate) in the background."""
        try:
            task = asyncio.get_running_loop().create_task(update)
        except RuntimeError:  # no loop (a pure test): nobody to tell
            update.close()
            return
        self._publishing.add(task)
        task.add_done_callback(_published)
        task.add_done_callback(self._publishing.discard)

    def release(self) -> None:
        """A request sent after :meth:`acquire` has its answer (or failed)."""
        self._in_flight -= 1

    def observe(
        self,
        sent: int,
        status: int,
        headers: Mapping[str, str],
        retry_after: float | None,
    ) -> None:
        """Learn from the response to request number ``sent`` (before :meth:`release`).

        ``retry_after`` is the parsed ``Retry-After`` (None when absent).
        """
        limit = headers.get("X-RateLimit-Limit")
        remaining = headers.get("X-RateLimit-Remaining")
        reset = headers.get("X-RateLimit-Reset")
        rejected = status == 429 or status == 503
        if limit is None and remaining is None and reset is None:
            if rejected:
                self._rejected(sent, status, retry_after, None)
            elif self._bare_streak or self._increase:
                self._succeeded(sent)
            return
        wall_now = self._server_wall(headers.get("Date"))
        state = RateLimitState(
            _int_header(limit), _int_header(remaining), _reset_header(reset, wall_now)
        )
        old = self._state
        self._state = RateLimitState(
            old.limit if state.limit is None else state.limit,
            old.remaining if state.remaining is None else state.remaining,
            old.reset if state.reset is None else state.reset,
        )
        usable_reset = state.reset
        if usable_reset is not None and not 0.0 < usable_reset - wall_now <= MAX_RESET_AHEAD:
            usable_reset = None
        if state.remaining is not None:
            if usable_reset is None:
                self._window_remaining = None
            else:
                # The latest response is the truth; what counts against it is what is
                # sent from now on, and the other requests still out (the server may
                # not have counted them yet).
                self._window_remaining = state.remaining - max(self._in_flight - 1, 0)
                self._window_seq = self._sent
                self._window_until = self._monotonic() + (usable_reset - wall_now)
                if state.remaining <= 0 and self._budget is not None and self._budget_ok():
                    self._publish(self._budget.hold(usable_reset - wall_now))
        if rejected:
            until_reset = None if usable_reset is None else usable_reset - wall_now
            self._rejected(sent, status, retry_after, until_reset)
        elif self._bare_streak or self._increase:
            self._succeeded(sent)

    def _server_wall(self, date: str | None) -> float:
        """The wall clock to read an ``X-RateLimit-Reset`` timestamp against: this host's,
        unless it disagrees with the response's ``Date`` by more than
        :data:`CLOCK_SKEW_TOLERANCE` (a host whose clock is off); then the server's."""
        wall = self._wall()
        if date is None:
            return wall
        if date != self._date_header:  # it changes once a second: parse it once
            self._date_header = date
            self._date_time = parse_http_date(date)
        server = self._date_time
        if server is None:
            return wall
        server += 0.5  # Date has whole seconds: the middle of that second
        return wall if abs(server - wall) <= CLOCK_SKEW_TOLERANCE else server

    def _rejected(
        self, sent: int, status: int, retry_after: float | None, until_reset: float | None
    ) -> None:
        """A 429/503: hold for the wait it names, or, naming none, back off and slow down."""
        if retry_after is not None:
            if status == 429 and retry_after > 0:
                self.pause(retry_after)
            return  # a 503's Retry-After is its own request's wait
        if status == 429 and until_reset is not None:
            self.pause(until_reset)
            return
        if sent < self._decreased_seq:
            return  # sent before the client slowed down: already accounted for
        self._bare_streak += 1
        self.pause(min(BARE_HOLD_FIRST * 2 ** (self._bare_streak - 1), BARE_HOLD_MAX))
        self._decrease()

    def _decrease(self) -> None:
        now = self._monotonic()
        rate = self._rate
        if rate is None or rate == math.inf:
            rate = self._measured_rate(now)
            self._ceiling = rate * _UNLIMITED_AFTER
        floor = min(MIN_ADAPTED_RATE, self._limit.rate if self._limit else MIN_ADAPTED_RATE)
        rate = max(floor, rate * DECREASE_FACTOR)
        self._set_rate(rate, now)
        self._increase = max(rate * INCREASE_PER_SECOND, MIN_INCREASE_PER_SECOND)
        self._increased = now
        self._decreased_seq = self._sent + 1
        if self._budget is not None and self._budget_ok():
            recovery = min((self._ceiling - rate) / self._increase, _SHARED_ADAPT_MAX)
            self._publish(self._budget.adapt(rate, recovery))

    def _succeeded(self, sent: int) -> None:
        """An answer that was not a rejection: the streak ends, and the rate climbs back."""
        if sent < self._decreased_seq:
            return
        self._bare_streak = 0
        rate = self._rate
        if rate is None:
            return
        now = self._monotonic()
        rate += self._increase * (now - self._increased)
        self._increased = now
        if rate < self._ceiling:
            self._set_rate(rate, now)
            return
        self._increase = 0.0  # fully recovered
        if self._limit is not None:
            self._set_rate(self._limit.rate, now, float(self._limit.capacity))
        else:
            self._rate = None

    def _set_rate(self, rate: float, now: float, capacity: float | None = None) -> None:
        if self._rate is not None:  # bank the tokens earned at the old rate
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        else:
            self._tokens = 0.0
        self._updated = now
        self._rate = rate
        if capacity is None:
            capacity = max(1.0, rate * ADAPTED_BURST_SECONDS)
        self._capacity = capacity
        self._tokens = min(self._tokens, capacity)

    def _measured_rate(self, now: float) -> float:
        """Requests per second over the recent sends (the rate the client was sending at)."""
        recent = self._recent
        if len(recent) < 2:
            return MIN_MEASURED_RATE
        span = max(now - recent[0], 1e-3)
        return max((len(recent) - 1) / span, MIN_MEASURED_RATE)

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` (never shortens an existing pause)."""
        until = self._monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            if self._budget is not None and self._budget_ok():
                self._publish(self._budget.hold(seconds))


def _never() -> bool:
    return False


def _published(task: asyncio.Task[None]) -> None:
    """A background update is over; a failure of the tier only costs the others' view."""
    if not task.cancelled():
        task.exception()


def _held_too_long(what: str, held: float, max_pause: float) -> RateLimitError:
    return RateLimitError(
        f"{what} holds requests for {held:.1f}s, longer than max_retry_wait={max_pause:g}s",
        retry_after=held,
        status_code=429,
    )
