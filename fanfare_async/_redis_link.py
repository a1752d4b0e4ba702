"""The two connections of a Redis tier: commands (multiplexed) and pub/sub.

Both are redis-py connections borrowed from a pool (redis-py connects them, so
AUTH, TLS, SELECT, RESP2 or 3 are its business) and read by one task each.

:class:`Link` carries every command of the tier. A caller writes its packed
command and awaits a future; the reader task reads the replies in order and
resolves the futures (Redis answers one connection's commands in order). So
concurrent lookups pipeline on one socket, a lookup costs no pool checkout, and
a caller that is cancelled costs nothing: its reply is read and dropped, the
connection stays in step. One timer enforces the per-operation timeout: a
command unanswered after ``timeout`` seconds fails with :class:`SharedTierError`;
when Redis has answered nothing for that long the connection counts as stuck,
is closed, and every command on it fails; the next command reconnects in the
background, waiting for it within its own timeout.

:class:`Subscriber` holds the tier's one pub/sub connection, reconnects with
backoff when it breaks (a PING each ``HEARTBEAT`` seconds of silence detects a
dead one), and resubscribes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Final

import anyio
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ResponseError

from ._redis_codec import pack
from ._shared import SharedTierError

logger = logging.getLogger("fanfare_async")

#: Seconds of silence on the pub/sub connection before a PING; no answer for as
#: long again and the connection counts as broken.
HEARTBEAT: Final = 1.0
#: Reconnection backoff of the pub/sub connection (seconds, doubling, with jitter).
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 1.0

_PING: Final = pack(b"PING")


async def _borrow(
    pool: ConnectionPool, conn: AbstractConnection | None, limit: float
) -> AbstractConnection:
    """A connected connection within ``limit`` seconds: ``conn`` reconnected, or a new
    one from the pool."""
    with anyio.fail_after(limit):
        if conn is None:
            borrowed: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
            return borrowed
        await conn.connect()  # type: ignore[no-untyped-call]
        return conn


def _writer_of(conn: AbstractConnection) -> asyncio.StreamWriter:
    # redis-py keeps the stream writer of a connected connection here; writing to it
    # directly is what lets a command be sent without awaiting (so without a point
    # where a cancellation would tear the connection down).
    writer = conn._writer
    if writer is None:
        raise ConnectionError("the connection closed while connecting")
    return writer


async def _release(pool: ConnectionPool, conn: AbstractConnection) -> None:
    with suppress(Exception):
        await conn.disconnect(nowait=True)
    with suppress(Exception):
        await pool.release(conn)


class Link:
    """The tier's command connection: write now, read the reply from one reader task."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        timeout: float,
        connect_timeout: float,
        on_start: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._on_start = on_start  # called once, in the loop of the first command
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: AbstractConnection | None = None
        #: Set while connected: the hot path checks only this.
        self._writer: asyncio.StreamWriter | None = None
        # Sent commands awaiting their replies, in order: (future, deadline).
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        # Commands waiting for the connection: (future, deadline, packed command).
        self._backlog: deque[tuple[asyncio.Future[Any], float, bytes]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._timer: asyncio.Handle | None = None
        self._last_reply = 0.0  # loop time of the last reply read
        self._closed = False
        #: Connections made, for tests and repr.
        self.connects = 0

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Send one packed command; the future gets its reply (a ResponseError is a
        value, not raised) or SharedTierError. Raises SharedTierError once closed."""
        writer = self._writer
        if writer is None:
            return self._send_later(packed)
        loop: asyncio.AbstractEventLoop = self._loop  # type: ignore[assignment]
        future = loop.create_future()
        self._pending.append((future, loop.time() + self._timeout))
        writer.write(packed)
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self._timeout, self._expire)
        return future

    def _send_later(self, packed: bytes) -> asyncio.Future[Any]:
        if self._closed:
            raise SharedTierError("the Redis tier is closed")
        loop = self.connect_soon()
        future = loop.create_future()
        deadline = loop.time() + self._timeout
        self._backlog.append((future, deadline, packed))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        return future

    def connect_soon(self) -> asyncio.AbstractEventLoop:
        """Start connecting in the background unless connected or connecting; the loop."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._on_start()
        if self._writer is None and self._connecting is None and not self._closed:
            self._connecting = loop.create_task(self._connect())
        return loop

    async def connected(self, within: float) -> bool:
        """Whether the connection is up, waiting at most ``within`` seconds for it."""
        self.connect_soon()
        if self._connecting is not None:
            await asyncio.wait([self._connecting], timeout=within)
        return self._writer is not None

    async def _connect(self) -> None:
        try:
            old_reader = self._reader
            if old_reader is not None:
                # Its disconnect must finish before the connection is reused.
                await asyncio.wait([old_reader])
            try:
                conn = self._conn = await _borrow(self._pool, self._conn, self._connect_timeout)
                writer = _writer_of(conn)
            except Exception as exc:
                if self._conn is not None:
                    with suppress(Exception):
                        await self._conn.disconnect(nowait=True)
                logger.debug("Redis tier: cannot connect: %r", exc)
                self._drop(f"cannot connect to Redis: {exc!r}")
                return
            self.connects += 1
            self._reader = asyncio.get_running_loop().create_task(self._read(conn))
            self._writer = writer
            backlog, self._backlog = self._backlog, deque()
            for future, deadline, packed in backlog:
                if not future.done():  # its caller gave up: do not send it at all
                    self._pending.append((future, deadline))
                    writer.write(packed)
        finally:
            self._connecting = None

    async def _read(self, conn: AbstractConnection) -> None:
        pending = self._pending
        read = conn.read_response
        loop = asyncio.get_running_loop()
        self._last_reply = loop.time()
        while True:
            try:
                reply = await read(disable_decoding=True, timeout=math.inf)
            except ResponseError as error:
                reply = error
            except Exception as exc:  # redis-py has closed the connection already
                logger.debug("Redis tier: lost the connection: %r", exc)
                if self._reader is asyncio.current_task():
                    self._drop(f"lost the connection to Redis: {exc!r}", from_reader=True)
                return
            try:
                future = pending.popleft()[0]
            except IndexError:
                with suppress(Exception):
                    await conn.disconnect(nowait=True)
                self._drop("Redis sent a reply nobody asked for", from_reader=True)
                return
            self._last_reply = loop.time()
            if not future.done():
                future.set_result(reply)

    def _expire(self, confirm: bool = False) -> None:
        """The timer: fail the commands past their deadline; drop a stuck connection.

        A loop that was busy past a deadline runs this timer in the same pass as the
        read event of the late replies, before the reader task has read them; so a
        deadline that has passed is judged one pass later (``confirm``), once the
        reader has had its turn. A command past its deadline fails alone (its reply
        is read and dropped later); the connection is dropped only when Redis has
        answered nothing for ``timeout`` seconds while commands wait.
        """
        self._timer = None
        loop: asyncio.AbstractEventLoop = self._loop  # type: ignore[assignment]
        now = loop.time()
        entries = [(f, d) for f, d in self._pending if not f.done()]
        entries.extend((f, d) for f, d, _ in self._backlog if not f.done())
        pending = self._pending
        due = min((deadline for _, deadline in entries), default=math.inf)
        if pending:
            due = min(due, self._stuck_at())
        if due > now:
            if due < math.inf:
                self._timer = loop.call_at(due, self._expire)
            return
        if not confirm:
            self._timer = loop.call_soon(self._expire, True)
            return
        for future, deadline in entries:
            if deadline <= now:
                future.set_exception(
                    SharedTierError(f"Redis did not answer within {self._timeout} s")
                )
        if pending and self._stuck_at() <= now:
            logger.debug("Redis tier: no answer for %s s, closing the connection", self._timeout)
            self._drop(f"Redis did not answer within {self._timeout} s")
            return
        self._expire()  # arm for the next deadline

    def _stuck_at(self) -> float:
        """When the connection counts as stuck: ``timeout`` after the later of the last
        reply and the sending of the oldest command still unanswered."""
        return max(self._last_reply + self._timeout, self._pending[0][1])

    def _drop(self, reason: str, *, from_reader: bool = False) -> None:
        """Fail every command in flight or waiting, and close the connection."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()  # no flushing to a server that does not read
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        futures = [future for future, _ in self._pending]
        futures.extend(future for future, _, _ in self._backlog)
        self._pending.clear()
        self._backlog.clear()
        for future in futures:
            if not future.done():
                future.set_exception(SharedTierError(reason))
        if not from_reader and self._reader is not None:
            self._reader.cancel()

    async def aclose(self) -> None:
        """Fail what is in flight, stop the tasks, give the connection back."""
        self._closed = True
        self._drop("the Redis tier is closed")
        tasks = [task for task in (self._connecting, self._reader) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._reader = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await _release(self._pool, conn)

    def __repr__(self) -> str:
        state = "connected" if self._writer is not None else "not connected"
        return f"{state}, {len(self._pending)} in flight"


class Subscriber:
    """The tier's one pub/sub connection, kept subscribed to every wanted channel."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        connect_timeout: float,
        on_message: Callable[[bytes, bytes], None],
        on_resubscribed: Callable[[bytes], None],
    ) -> None:
        self._pool = pool
        self._connect_timeout = connect_timeout
        self._on_message = on_message
        self._on_resubscribed = on_resubscribed
        self._conn: AbstractConnection | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._wanted: set[bytes] = set()
        self._live: set[bytes] = set()  # confirmed on the current connection
        self._heard: set[bytes] = set()  # confirmed on some connection: a gap may follow
        self._ready: dict[bytes, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        #: Connections made, for tests and repr.
        self.connects = 0

    def add(self, channel: bytes) -> None:
        if channel not in self._wanted:
            self._wanted.add(channel)
            if self._writer is not None:
                self._writer.write(pack(b"SUBSCRIBE", channel))

    def remove(self, channel: bytes) -> None:
        if channel in self._wanted:
            self._wanted.discard(channel)
            self._live.discard(channel)
            self._heard.discard(channel)
            if self._writer is not None:
                self._writer.write(pack(b"UNSUBSCRIBE", channel))

    def start(self) -> None:
        """Start the listener in the running loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def is_live(self, channel: bytes) -> bool:
        return channel in self._live

    async def ready(self, channel: bytes, within: float) -> bool:
        """Whether ``channel`` is subscribed, waiting at most ``within`` seconds for it."""
        if channel in self._live:
            return True
        future = self._ready.get(channel)
        if future is None:
            future = self._ready[channel] = asyncio.get_running_loop().create_future()
        await asyncio.wait([future], timeout=within)
        return channel in self._live

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                conn = self._conn = await _borrow(self._pool, self._conn, self._connect_timeout)
                writer = _writer_of(conn)
                self.connects += 1
                if self._wanted:
                    writer.write(pack(b"SUBSCRIBE", *sorted(self._wanted)))
                self._writer = writer
                await self._listen(conn)
            except Exception as exc:
                logger.debug("Redis tier: pub/sub connection failed: %r", exc)
            finally:
                if self._live:
                    delay = BACKOFF_MIN  # it worked for a while: reconnect soon
                self._writer = None
                self._live.clear()
            if self._conn is not None:
                with suppress(Exception):
                    await self._conn.disconnect(nowait=True)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _listen(self, conn: AbstractConnection) -> None:
        read = conn.read_response
        pinged = False
        while True:
            try:
                reply = await read(disable_decoding=True, timeout=HEARTBEAT, push_request=True)
            except ResponseError as error:
                logger.debug("Redis tier: pub/sub error reply: %s", error)
                continue
            if reply is None:  # HEARTBEAT seconds of silence
                if pinged:
                    raise ConnectionError("no answer to PING on the pub/sub connection")
                _writer_of(conn).write(_PING)
                pinged = True
                continue
            pinged = False
            if isinstance(reply, list) and len(reply) == 3:
                kind, channel, data = reply
                if kind == b"message":
                    self._on_message(channel, data)
                elif kind == b"subscribe":
                    self._confirm(channel)

    def _confirm(self, channel: bytes) -> None:
        if channel not in self._wanted or channel in self._live:
            return
        self._live.add(channel)
        if channel in self._heard:
            self._on_resubscribed(channel)
        self._heard.add(channel)
        future = self._ready.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        self._writer = None
        self._live.clear()
        for future in self._ready.values():
            future.cancel()
        self._ready.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            await _release(self._pool, conn)

    def __repr__(self) -> str:
        return f"{len(self._live)}/{len(self._wanted)} channels live"
