"""Bulk fan-out: many group ids through a fixed number of workers, in completion order.

The workers live in an anyio task group hosted by one runner task, so the
task group is entered and left in the same task whatever the consumer does.
Memory is bounded by ``concurrency``: ids are pulled from the input only when
a worker is free, and finished results wait in a buffer of ``concurrency``
slots. Dropping the iterator (``break``), closing it, or cancelling the
consumer cancels the runner, and with it every worker.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

import anyio

from ._cancellation import cancelling
from ._exceptions import FanfareClientClosedError, FanfareError
from ._models import Audience

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

GroupIds: TypeAlias = Iterable[str | uuid.UUID] | AsyncIterable[str | uuid.UUID]
Result: TypeAlias = list[Audience] | FanfareError
#: Looks one id up: its result, and whether the cache answered it.
Lookup = Callable[[Any], Awaitable[tuple[Result, bool]]]


@dataclass
class BulkProgress:
    """Live counters of one bulk run (read them while iterating)."""

    total: int | None = None
    """Number of ids in the input when it has a length, else None."""
    started: int = 0
    done: int = 0
    cache_hits: int = 0
    errors: int = 0
    duplicates: int = 0
    error_types: dict[str, int] = field(default_factory=dict)


_END = object()  # the input is exhausted


def _key_of(group_id: object) -> object:
    """The result key: the id as given (a UUID object as its string)."""
    return str(group_id) if isinstance(group_id, uuid.UUID) else group_id


class _Run:
    """The work of one bulk run, driven by the runner task.

    Workers take ids straight from the input, one at a time, so at most
    ``concurrency`` ids are out of the input ahead of their answers. It holds
    no reference to the :class:`BulkIterator` handle, so dropping the handle
    (``break``) lets it be collected and cancel the runner.
    """

    def __init__(
        self,
        lookup: Lookup,
        source: GroupIds,
        concurrency: int,
        on_seen: Callable[[Any], None] | None,
        progress: BulkProgress,
        results: _Results,
    ) -> None:
        self.lookup = lookup
        self.source = source
        self.concurrency = concurrency
        self.on_seen = on_seen
        self.progress = progress
        self.results = results
        self.seen: set[Any] = set()

    async def run(self) -> None:
        """Run the workers until the input is exhausted and every id is answered."""
        try:
            take = self._taker(self.source)
            workers = self.concurrency
            if self.progress.total is not None:
                workers = max(1, min(workers, self.progress.total))
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(self.work, take, isinstance(self.source, AsyncIterable))
        except BaseExceptionGroup as group:
            raise _single(group) from None
        finally:
            self.results.finish()

    def _taker(self, source: GroupIds) -> Callable[[], Any]:
        """The key (:func:`_key_of`) of the next new id of the input (duplicates skipped),
        or ``_END``: a plain function for an iterable, a coroutine function for an async
        iterable."""
        if isinstance(source, (str, bytes)):
            raise TypeError("group_ids must be an iterable of ids, not a single str")
        if isinstance(source, AsyncIterable):
            items = source.__aiter__()
            turn = asyncio.Lock()  # an async iterator must not be entered twice at once

            async def take_async() -> Any:
                async with turn:
                    while True:
                        try:
                            key = _key_of(await items.__anext__())
                        except StopAsyncIteration:
                            return _END
                        if self._admit(key):
                            return key

            return take_async
        iterator = iter(source)

        def take() -> Any:
            for group_id in iterator:
                key = _key_of(group_id)
                if self._admit(key):
                    return key
            return _END

        return take

    def _admit(self, key: Any) -> bool:
        """Record a first sighting (order, progress); False for a duplicate."""
        if key in self.seen:
            self.progress.duplicates += 1
            return False
        self.seen.add(key)
        if self.on_seen is not None:
            self.on_seen(key)
        self.progress.started += 1
        return True

    async def work(self, take: Callable[[], Any], take_awaits: bool) -> None:
        """One worker: answer ids until the input ends (cached ones without waiting)."""
        lookup = self.lookup
        progress = self.progress
        results = self.results
        while True:
            key = await take() if take_awaits else take()
            if key is _END:
                return
            result, hit = await lookup(key)  # no suspension on a cache hit
            if hit:
                progress.cache_hits += 1
            item = (key, result)
            # Keep no reference past the hand-off: the consumer frees each result
            # while it is still warm in the CPU cache, not this worker a request later.
            del result
            if not results.offer(item):
                await results.put(item)
            del item


class _Results:
    """Finished results on their way to the consumer: at most ``capacity`` unread.

    A put with room and a get with an item ready are plain calls that never go
    through the scheduler; only a full buffer or an empty one waits, on a future.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: collections.deque[Any] = collections.deque()
        self.finished = False
        self._reader: asyncio.Future[None] | None = None  # the consumer, waiting
        self._writers: collections.deque[asyncio.Future[None]] = collections.deque()

    def offer(self, item: Any) -> bool:
        """Queue ``item`` if there is room (and say so)."""
        if len(self.items) >= self.capacity:
            return False
        self.items.append(item)
        self._wake_reader()
        return True

    async def put(self, item: Any) -> None:
        """Queue ``item``, waiting for room."""
        while not self.offer(item):
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._writers.append(room)
            try:
                await room
            except BaseException:
                if room.done() and not room.cancelled():
                    self._wake_writer()  # the room it was given goes to the next writer
                raise
            finally:
                if room in self._writers:
                    self._writers.remove(room)

    def finish(self) -> None:
        """No more results will come (the runner is over)."""
        self.finished = True
        self._wake_reader()

    async def get(self) -> Any:
        """The next result, or ``_END`` once finished and drained."""
        items = self.items
        while not items:
            if self.finished:
                return _END
            reader = self._reader = asyncio.get_running_loop().create_future()
            try:
                await reader
            finally:
                self._reader = None
        item = items.popleft()
        if self._writers:
            self._wake_writer()
        return item

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _wake_writer(self) -> None:
        while self._writers:
            room = self._writers.popleft()
            if not room.done():
                room.set_result(None)
                return


class BulkIterator:
    """Async iterator of ``(group_id, audiences or error)`` in completion order.

    ``progress`` holds live counters. Use ``aclose()`` (or ``async with``) to
    stop early explicitly; leaving an ``async for`` early also stops all work.
    """

    def __init__(
        self,
        lookup: Lookup,
        group_ids: GroupIds,
        *,
        concurrency: int,
        on_seen: Callable[[Any], None] | None = None,
        register: Callable[[asyncio.Task[None]], None] | None = None,
    ) -> None:
        self._results = _Results(concurrency)
        self._register = register
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self.progress = BulkProgress(total=_length(group_ids))
        self._run: _Run | None = _Run(
            lookup, group_ids, concurrency, on_seen, self.progress, self._results
        )

    def __aiter__(self) -> BulkIterator:
        return self

    async def __anext__(self) -> tuple[Any, Result]:
        if self._closed:
            raise StopAsyncIteration
        if self._run is not None:
            self._runner = asyncio.get_running_loop().create_task(self._run.run())
            self._runner.add_done_callback(_retrieve)
            self._run = None
            if self._register is not None:
                self._register(self._runner)
        try:
            item = await self._results.get()
        except BaseException:
            self._cancel()
            raise
        if item is _END:
            await self._finish()
            raise StopAsyncIteration
        pair: tuple[Any, Result] = item
        result = pair[1]
        progress = self.progress
        progress.done += 1
        if isinstance(result, FanfareError):
            progress.errors += 1
            name = type(result).__name__
            progress.error_types[name] = progress.error_types.get(name, 0) + 1
        return pair

    async def _finish(self) -> None:
        """No more results: surface the runner's own failure, if any."""
        self._closed = True
        runner = self._runner
        if runner is None:
            return
        try:
            await runner
        except asyncio.CancelledError:
            if not cancelling():  # cancelled from outside: the client was closed
                raise FanfareClientClosedError(
                    "the client was closed during the bulk lookup"
                ) from None
            raise

    def _cancel(self) -> None:
        self._closed = True
        self._run = None  # never started: nothing to stop
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()

    async def aclose(self) -> None:
        """Stop every worker and wait until they are gone."""
        self._cancel()
        runner = self._runner
        if runner is not None and not runner.done():
            await asyncio.wait([runner])

    async def __aenter__(self) -> BulkIterator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Leaving `async for` early drops the handle: stop the workers now.
        self._cancel()


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a runner's failure as seen: the consumer may have stopped reading."""
    if not task.cancelled():
        task.exception()


def _length(group_ids: GroupIds) -> int | None:
    try:
        return len(group_ids)  # type: ignore[arg-type]
    except TypeError:
        return None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real failure inside an exception group (a closed client, a bad input iterable)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, FanfareClientClosedError):
            return exc
    for exc in leaves:
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return leaves[0] if leaves else group
