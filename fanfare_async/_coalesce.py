"""Coalescing: one flight per missing key, however many callers want it.

A flight is one run of the load below (shared tier, transport, decode). The
callers of a key await their own futures on it, so cancelling one caller
never cancels the load for the others; when the last one leaves, the load is
cancelled too. Three ways to run a load, chosen by who may join it:

- :meth:`Coalescer.join` starts a flight in its own task (or joins the one
  in flight) and waits for it;
- :meth:`Coalescer.in_caller` runs it in the caller's own task, saving the
  hand-off (a bulk worker's miss); others may still join, and if the caller
  goes first a task takes over for them;
- :meth:`Coalescer.alone` runs a load nobody may join (``use_cache=False``).

Knows nothing of HTTP, caches or Redis: it coalesces any ``load(key, epoch)``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from ._cancellation import cancelling
from ._exceptions import FanfareClientClosedError

T = TypeVar("T")

#: Task.uncancel() (3.11+) lets close() interrupt a caller's own load cleanly.
CAN_UNCANCEL = sys.version_info >= (3, 11)


def _closed_error() -> FanfareClientClosedError:
    return FanfareClientClosedError("the client was closed while the request was in flight")


class _Flight(Generic[T]):
    """One load in flight and the futures of the callers waiting for it."""

    __slots__ = ("key", "task", "waiting")

    def __init__(self, key: str) -> None:
        self.key = key
        self.task: asyncio.Task[None] | None = None  # None: runs in a caller's task
        self.waiting: list[asyncio.Future[T]] = []


class Coalescer(Generic[T]):
    """Single-flight over ``load(key, epoch)``; :meth:`close` ends every flight."""

    def __init__(self, load: Callable[[str, int], Awaitable[T]]) -> None:
        self._load = load
        self._flights: dict[str, _Flight[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Callers running a load nobody may join -> whether close() cancelled them.
        self._alone: dict[asyncio.Task[Any], bool] = {}
        self.closed = False

    def in_flight(self, key: str) -> bool:
        """Whether a load of ``key`` is running that a new caller would join."""
        return key in self._flights

    def forget(self, key: str) -> None:
        """New callers of ``key`` start a new load (the running one still ends for its own)."""
        self._flights.pop(key, None)

    def forget_all(self) -> None:
        """:meth:`forget` every key."""
        self._flights.clear()

    async def join(self, key: str, epoch: int) -> T:
        """The result of the load of ``key`` in flight, started in its own task if none is."""
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight(key)
            flight.task = self._spawn(self._fly(flight, lambda: self._load(key, epoch)))
        return await self._wait(flight)

    def start(self, key: str, load: Callable[[], Awaitable[T]]) -> asyncio.Task[None]:
        """Start ``load()`` of ``key`` (not in flight) in its own task, with nobody waiting
        yet; callers who want ``key`` meanwhile join it (a background refresh)."""
        flight: _Flight[T] = _Flight(key)
        self._flights[key] = flight
        task = flight.task = self._spawn(self._fly(flight, load))
        return task

    async def _wait(self, flight: _Flight[T]) -> T:
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        flight.waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if self.closed and not cancelling():  # the load was cancelled by close()
                raise _closed_error() from None
            raise
        finally:
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # mark retrieved, in case this caller left meanwhile
            else:  # this caller was cancelled (its future with it)
                self._leave(flight, waiter)

    async def in_caller(self, key: str, epoch: int) -> T:
        """Run the load of ``key`` (not in flight) in this task; callers who want ``key``
        meanwhile join it, and a task takes over for them if this caller is cancelled."""
        flight: _Flight[T] = _Flight(key)
        self._flights[key] = flight
        try:
            result = await self._load(key, epoch)
        except asyncio.CancelledError:
            if flight.waiting and not self.closed:  # the others still get their answer
                flight.task = self._spawn(self._fly(flight, lambda: self._load(key, epoch)))
            else:
                self._landed(flight, cancelled=True)
            raise
        except BaseException as exc:
            self._landed(flight, error=exc)
            raise
        self._landed(flight, result)
        return result

    async def alone(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        """Run ``load()``, which nobody may join, in this task; close() ends it as
        FanfareClientClosedError (on 3.10, where a task cannot be uncancelled, in
        its own task)."""
        if not CAN_UNCANCEL:
            flight: _Flight[T] = _Flight(key)
            flight.task = self._spawn(self._fly(flight, load))
            return await self._wait(flight)
        task = asyncio.current_task()
        assert task is not None
        callers = self._alone
        callers[task] = False
        try:
            return await load()
        except asyncio.CancelledError:
            if callers.get(task) and sys.version_info >= (3, 11):  # cancelled by close()
                task.uncancel()
                if not task.cancelling():
                    raise _closed_error() from None
            raise
        finally:
            callers.pop(task, None)

    async def close(self) -> None:
        """Cancel every load: their callers end with FanfareClientClosedError."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for caller in self._alone:  # callers' own tasks: not awaited here
            self._alone[caller] = True
            caller.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _leave(self, flight: _Flight[T], waiter: asyncio.Future[T]) -> None:
        """A cancelled caller stops waiting; the last one to leave cancels the load."""
        if waiter in flight.waiting:
            flight.waiting.remove(waiter)
        task = flight.task  # None: a caller's own load, which goes on for it
        if task is not None and not flight.waiting and not task.done():
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
            task.cancel()

    def _spawn(self, load: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(load)
        self._tasks.add(task)
        return task

    async def _fly(self, flight: _Flight[T], load: Callable[[], Awaitable[T]]) -> None:
        """A flight's task: load, then hand the outcome to every caller still waiting,
        directly from here (no done-callback round through the event loop)."""
        try:
            result = await load()  # made here: a task cancelled before it starts leaves none
        except asyncio.CancelledError:
            self._landed(flight, cancelled=True)
            raise
        except BaseException as exc:
            self._landed(flight, error=exc)
            if not isinstance(exc, Exception):
                raise
            # Not re-raised: each waiter has it, and nobody awaits this task.
        else:
            self._landed(flight, result)

    def _landed(
        self,
        flight: _Flight[T],
        result: T | None = None,
        error: BaseException | None = None,
        *,
        cancelled: bool = False,
    ) -> None:
        """The load is over: no longer in flight for new callers; its result, its error
        or its cancellation goes to every caller still waiting."""
        if flight.task is not None:
            self._tasks.discard(flight.task)
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        for waiter in flight.waiting:
            if waiter.done():
                continue
            if cancelled:
                waiter.cancel()
            elif error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(result)  # type: ignore[arg-type]
