"""The counters of one ``bulk`` run, its progress snapshot, summary line and exit code."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .._client import FanfareClient
from .._exceptions import FanfareError
from .._fanout import BulkProgress
from ._exit_codes import EXIT_FAILED, EXIT_OK
from ._input import Source
from ._progress import Snapshot


@dataclass
class BulkRun:
    """The counters of one bulk run; they outlive the event loop, so Ctrl-C can report."""

    source: Source
    started: float = field(default_factory=time.monotonic)
    ok: int = 0
    failed: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    progress: BulkProgress | None = None
    client: FanfareClient | None = None
    stopped: str = ""
    """Why the run stopped early, if it did."""

    def count_error(self, exc: FanfareError) -> None:
        self.failed += 1
        name = type(exc).__name__
        self.error_types[name] = self.error_types.get(name, 0) + 1

    def snapshot(self) -> Snapshot:
        duplicates = self.progress.duplicates if self.progress else 0
        return Snapshot(
            done=self.ok + self.failed + duplicates,
            total=self.source.total,
            ok=self.ok,
            failed=self.failed,
            cache_hits=self.progress.cache_hits if self.progress else 0,
            wait=self.client.rate_limit_wait_seconds if self.client else 0.0,
            elapsed=time.monotonic() - self.started,
        )

    def summary(self, *, interrupted: bool = False) -> str:
        snap = self.snapshot()
        records = snap.ok + snap.failed
        rate = records / snap.elapsed if snap.elapsed > 0 else 0.0
        kinds = ", ".join(f"{n} {name}" for name, n in sorted(self.error_types.items()))
        text = (
            f"{snap.ok} ok, {snap.failed} failed{f' ({kinds})' if kinds else ''} of {records} "
            f"in {snap.elapsed:.2f}s ({rate:.0f}/s); cache hits {snap.cache_hits}; "
            f"rate-limit wait {snap.wait:.1f}s"
        )
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        if interrupted:
            text += "; interrupted"
        return text

    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed or self.stopped else EXIT_OK
