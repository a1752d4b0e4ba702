"""Timing every callback of an asyncio loop, and every collection of the cyclic GC."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any


class CallbackTimer:
    """While ``on``, the duration of every loop callback (``asyncio.Handle._run``
    wrapped, about 0.3 µs each) and of every garbage collection, which runs inside
    some callback. Installed once per process."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.gc_longest = 0.0
        self.gc_counts = [0, 0, 0]
        self._gc_started = 0.0
        self.on = False
        timer = self
        run = asyncio.events.Handle._run

        def timed_run(handle: asyncio.events.Handle) -> None:
            if not timer.on:
                run(handle)
                return
            start = time.perf_counter()
            run(handle)
            timer.durations.append(time.perf_counter() - start)

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_longest = max(self.gc_longest, time.perf_counter() - self._gc_started)
            self.gc_counts[info["generation"]] += 1

    def report(self) -> dict[str, Any]:
        durations = sorted(self.durations)
        return {
            "callbacks": len(durations),
            "longest": durations[-1] if durations else 0.0,
            "over_3ms": sum(1 for d in durations if d > 0.003),
            "p999": durations[int(len(durations) * 0.999)] if durations else 0.0,
            "gc_longest": self.gc_longest,
            "gc_counts": self.gc_counts,
        }
