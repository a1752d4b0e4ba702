"""The live progress display of ``bulk`` on stderr: rich when installed, else plain lines.

rich is imported here only, and only when a display is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import IO, NoReturn, Protocol

from ._messages import PROG
from ._output import RecordWriter


def _format_duration(seconds: float | None) -> str:
    """H:MM:SS, or ? when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


@dataclass
class Snapshot:
    """What a progress display shows."""

    done: int
    total: int | None
    ok: int
    failed: int
    cache_hits: int
    wait: float
    elapsed: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate

    def status(self) -> str:
        total = "?" if self.total is None else str(self.total)
        return (
            f"{self.done}/{total} done, {self.rate:.0f}/s, ETA {_format_duration(self.eta)}, "
            f"cache hits {self.cache_hits}, errors {self.failed}, "
            f"rate-limit wait {self.wait:.1f}s"
        )


@contextlib.asynccontextmanager
async def live_progress(
    snapshot: Callable[[], Snapshot], out: RecordWriter, *, enabled: bool
) -> AsyncIterator[None]:
    """Show the display while the body runs, if ``enabled`` and stderr is a terminal.

    When stdout is the same terminal, ``out``'s records are printed above the display.
    """
    display = _open_display(out) if enabled and sys.stderr.isatty() else None
    if display is None:
        yield
        return
    refresher = asyncio.ensure_future(_refresh(display, snapshot))
    try:
        yield
    finally:
        refresher.cancel()
        display.update(snapshot())
        display.close()
        out.echo = None


class _Display(Protocol):
    interval: float

    def update(self, snap: Snapshot) -> None: ...

    def close(self) -> None: ...


def _open_display(out: RecordWriter) -> _Display:
    try:
        display = _RichDisplay(sys.stderr)
    except ImportError:
        return _PlainDisplay(sys.stderr)
    if _same_terminal():
        out.echo = display.echo
    return display


def _same_terminal() -> bool:
    try:
        return sys.stdout.isatty() and os.path.samestat(os.fstat(1), os.fstat(2))
    except (OSError, ValueError):
        return False


async def _refresh(display: _Display, snapshot: Callable[[], Snapshot]) -> NoReturn:
    while True:
        display.update(snapshot())
        await asyncio.sleep(display.interval)


class _PlainDisplay:
    """Without rich: a status line on stderr every few seconds (no escape codes)."""

    interval = 2.0

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def update(self, snap: Snapshot) -> None:
        self._stream.write(f"{PROG}: {snap.status()}\n")
        self._stream.flush()

    def close(self) -> None:
        """Nothing to tear down."""


class _RichDisplay:
    """A rich progress bar on stderr: done/total, rate, ETA, cache hits, errors, wait."""

    interval = 0.1

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self._progress = Progress(
            SpinnerColumn(),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]}/s"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("cache hits {task.fields[hits]}"),
            TextColumn("errors {task.fields[errors]}"),
            TextColumn("rate-limit wait {task.fields[wait]}"),
            console=Console(file=stream),
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(
            "bulk", total=None, counts="0/?", rate="0", eta="?", hits=0, errors=0, wait="0.0s"
        )
        self._progress.start()

    def update(self, snap: Snapshot) -> None:
        self._progress.update(
            self._task,
            completed=snap.done,
            total=snap.total,
            counts=f"{snap.done}/{'?' if snap.total is None else snap.total}",
            rate=f"{snap.rate:.0f}",
            eta=_format_duration(snap.eta),
            hits=snap.cache_hits,
            errors=snap.failed,
            wait=f"{snap.wait:.1f}s",
        )
        self._progress.refresh()

    def echo(self, text: str) -> None:
        """Print a result line above the display (stdout is this same terminal)."""
        self._progress.console.print(
            text, markup=False, highlight=False, emoji=False, soft_wrap=True
        )

    def close(self) -> None:
        self._progress.stop()
