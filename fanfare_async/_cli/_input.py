"""The input of ``bulk``: ids read lazily from a file or stdin, one per line.

Reads happen in a thread, lines are split with a length limit, blank and comment
lines are skipped, and invalid lines are reported with their number.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .._exceptions import InvalidGroupIdError
from .._ids import canonical_group_id

_CHUNK = 64 * 1024
_MAX_LINE = 64 * 1024  # far above the 256-character id limit
_COUNT_INLINE_BYTES = 4 * 1024 * 1024  # smaller files are counted before starting
_SHOWN_BYTES = 300  # of an invalid line, in its error record

OnInvalid = Callable[[str, InvalidGroupIdError, int], None]
"""Called with an invalid line's text, its error and its line number."""


@dataclass
class Source:
    """An opened input: its descriptor, its path (None for stdin), and the id count
    when known (a file's is counted, in a thread when large)."""

    fd: int
    path: str | None = None
    total: int | None = None

    def close(self) -> None:
        """Close the descriptor of a file (stdin stays open)."""
        if self.path is not None:
            os.close(self.fd)


def open_source(spec: str) -> Source:
    """Open FILE, or stdin for ``-``; OSError when it cannot be read."""
    if spec == "-":
        if sys.stdin is None:
            raise OSError("stdin is closed")
        return Source(sys.stdin.fileno())
    fd = os.open(spec, os.O_RDONLY)
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise IsADirectoryError(f"{spec} is a directory")
    source = Source(fd, path=spec)
    if not stat.S_ISREG(info.st_mode):
        return source  # a pipe or device can be read only once: no total
    if info.st_size <= _COUNT_INLINE_BYTES:
        source.total = _count_ids(spec)
    else:
        _count_in_background(source, spec)
    return source


def _count_ids(path: str) -> int:
    """Lines that carry an id (not blank, not a comment), for done/total."""
    count = 0
    with open(path, "rb") as lines:
        for line in lines:
            text = line.strip()
            if text and not text.startswith(b"#"):
                count += 1
    return count


def _count_in_background(source: Source, path: str) -> None:
    """Count a large file's ids in a daemon thread; the display picks the total up."""

    def count() -> None:
        with contextlib.suppress(OSError):
            source.total = _count_ids(path)

    threading.Thread(target=count, name="fanfare-count", daemon=True).start()


async def read_ids(source: Source, on_invalid: OnInvalid) -> AsyncIterator[str]:
    """The valid ids of the input, lazily; each invalid line goes to ``on_invalid``."""
    reader = _ChunkReader(source.fd)
    lines = _LineSplitter()
    while True:
        chunk = await reader.read()
        for lineno, line in lines.feed(chunk):
            parsed = _parse_line(line)
            if isinstance(parsed, InvalidGroupIdError):
                shown = (line or b"")[:_SHOWN_BYTES].strip().decode("utf-8", "replace")
                on_invalid(shown, parsed, lineno)
            elif parsed is not None:
                yield parsed
        if not chunk:
            return


class _ChunkReader:
    """Reads a file descriptor in a daemon thread, one chunk per request.

    A slow pipe or a terminal never blocks the event loop, and Ctrl-C is never stuck
    behind a read. ``os.read`` holds no Python-level lock, so a read still pending at
    exit cannot hang the interpreter's shutdown.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._requests: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[bytes]]]
        self._requests = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def read(self) -> bytes:
        """The next chunk; b"" at end of input."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="fanfare-input", daemon=True)
            self._thread.start()
        self._requests.put((loop, future))
        return await future

    def _serve(self) -> None:
        while True:
            loop, future = self._requests.get()
            try:
                result: bytes | OSError = os.read(self._fd, _CHUNK)
            except OSError as exc:
                result = exc
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # the loop is gone
                return
            if result == b"" or isinstance(result, OSError):
                return


def _settle(future: asyncio.Future[bytes], result: bytes | OSError) -> None:
    if future.done():
        return
    if isinstance(result, OSError):
        future.set_exception(result)
    else:
        future.set_result(result)


class _LineSplitter:
    """Turns chunks into numbered lines; a line over the limit is cut off and flagged."""

    def __init__(self) -> None:
        self._lineno = 0
        self._pending = b""
        self._overlong = False

    def feed(self, chunk: bytes) -> list[tuple[int, bytes | None]]:
        """Complete lines as (number, bytes), bytes None for an overlong line; b"" flushes."""
        if not chunk:
            rest, self._pending = self._pending, b""
            return [self._number(rest)] if rest or self._overlong else []
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        numbered = [self._number(line) for line in lines]
        if len(self._pending) > _MAX_LINE:
            self._pending, self._overlong = b"", True
        return numbered

    def _number(self, line: bytes) -> tuple[int, bytes | None]:
        self._lineno += 1
        if self._overlong:
            self._overlong = False
            return self._lineno, None
        if self._lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # UTF-8 byte order mark
        return self._lineno, line


def _parse_line(line: bytes | None) -> str | InvalidGroupIdError | None:
    """The id on a line, None for a blank or comment line, or why it is invalid."""
    if line is None:
        return InvalidGroupIdError(f"line is longer than {_MAX_LINE} bytes")
    text = line.strip()
    if not text or text.startswith(b"#"):
        return None
    try:
        group_id = text.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidGroupIdError("line is not valid UTF-8")
    try:
        canonical_group_id(group_id)
    except InvalidGroupIdError as exc:
        return exc
    return group_id
