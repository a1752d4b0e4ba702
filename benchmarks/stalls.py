"""Benchmark 3c: the longest event-loop callbacks while a bulk run fills and overflows the cache.

Each variant runs in a fresh process (``python -m benchmarks.stalls VARIANT N URL KEY``,
the asyncio loop) pinned to one core, against the throughput server on the other: ``N``
distinct typical groups through ``iter_group_audiences`` at concurrency 64 with the
default cache (a run of more than 10,000 ids fills it, then every store evicts), with
``cache_maxsize=0``, and the hand-written aiohttp + msgspec loop that keeps nothing. Every
callback the loop runs is timed (``asyncio.Handle._run`` wrapped), and every collection
of the cyclic garbage collector (``gc.callbacks``), which runs inside some callback.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from fanfare_async._config import DEFAULT_CACHE_MAXSIZE

from ._common import SEED, Section, Sizes, Target, pin, rotated, run_json, split_cores
from ._procs import ServerProcess

CACHED = "fanfare_async iter_group_audiences (default cache)"
UNCACHED = "fanfare_async iter_group_audiences, cache_maxsize=0"
FLOOR = "aiohttp + msgspec loop, keeps nothing (floor)"
VARIANTS = {CACHED: "cached", UNCACHED: "uncached", FLOOR: "floor"}
LONGEST = "longest callback ms"
OVER = "callbacks over 3 ms"
P999 = "p99.9 callback µs"
GC_LONGEST = "longest collection ms"
GC_COUNT = "collections (gen 0/1/2)"
CONCURRENCY = 64


class _CallbackTimer:
    """Durations of every loop callback, and of every garbage collection."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.gc_longest = 0.0
        self.gc_longest_by_generation = [0.0, 0.0, 0.0]
        self.gc_counts = [0, 0, 0]
        self.gc_in_callback = 0.0  # collection time inside the callback now running
        self.longest_without_gc = 0.0
        self._gc_started = 0.0
        self.on = False
        timer = self
        run = asyncio.events.Handle._run

        def timed_run(handle: asyncio.events.Handle) -> None:
            if not timer.on:
                run(handle)
                return
            timer.gc_in_callback = 0.0
            start = time.perf_counter()
            run(handle)
            took = time.perf_counter() - start
            timer.durations.append(took)
            if not timer.gc_in_callback and took > timer.longest_without_gc:
                timer.longest_without_gc = took

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            took = time.perf_counter() - self._gc_started
            generation = info["generation"]
            self.gc_in_callback += took
            self.gc_longest = max(self.gc_longest, took)
            by_generation = self.gc_longest_by_generation
            by_generation[generation] = max(by_generation[generation], took)
            self.gc_counts[generation] += 1


async def _bulk(variant: str, ids: list[str], url: str, key: str) -> None:
    if variant == "floor":
        await _floor(ids, url, key)
        return
    from fanfare_async import FanfareClient

    maxsize = DEFAULT_CACHE_MAXSIZE if variant == "cached" else 0
    async with FanfareClient(key, base_url=url, rate_limit=None, cache_maxsize=maxsize) as client:
        async for _gid, result in client.iter_group_audiences(ids, concurrency=CONCURRENCY):
            if isinstance(result, Exception):
                raise result


async def _floor(ids: list[str], url: str, key: str) -> None:
    import aiohttp
    import msgspec

    from fanfare_async import Audience

    decode: Callable[[bytes], Any] = msgspec.json.Decoder(list[Audience]).decode
    headers = {"Authorization": f"Bearer {key}"}
    feed: Iterator[str] = iter(ids)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for gid in feed:
                async with session.get(f"{url}/audiences/groups/{gid}", headers=headers) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                decode(body)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _measure(variant: str, count: int, url: str, key: str) -> dict[str, Any]:
    from fanfare_async._fake_data import group_ids

    timer = _CallbackTimer()
    every = group_ids(SEED + 7, 256 + count)
    await _bulk(variant, every[:256], url, key)  # imports and first allocations, untimed
    gc.collect()
    timer.on = True
    await _bulk(variant, every[256:], url, key)
    timer.on = False
    durations = sorted(timer.durations)
    return {
        "callbacks": len(durations),
        "longest": durations[-1],
        "over_3ms": sum(1 for d in durations if d > 0.003),
        "p999": durations[int(len(durations) * 0.999)],
        "gc_longest": timer.gc_longest,
        "gc_longest_by_generation": timer.gc_longest_by_generation,
        "longest_without_gc": timer.longest_without_gc,
        "gc_counts": timer.gc_counts,
        "objects": len(gc.get_objects()),
    }


def run(sizes: Sizes) -> Section:
    section = Section("stalls")
    n = sizes.e2e_requests
    case = f"asyncio, {n} ids, concurrency {CONCURRENCY} (the default cache holds 10,000)"
    client_cpu, server_cpu = split_cores()
    with ServerProcess("minimal", cpu=server_cpu) as server:
        for round_no in range(sizes.memory_rounds):
            for name in rotated(list(VARIANTS), round_no):
                argv = ["-m", "benchmarks.stalls", VARIANTS[name], str(n), server.url]
                argv += [server.secret_key, str(client_cpu if client_cpu is not None else -1)]
                report = run_json(argv, timeout=900)
                section.row(case, name, LONGEST, reference=FLOOR).samples.append(
                    report["longest"] * 1e3
                )
                section.row(case, name, OVER).samples.append(report["over_3ms"])
                section.row(case, name, P999).samples.append(report["p999"] * 1e6)
                section.row(case, name, GC_LONGEST).samples.append(report["gc_longest"] * 1e3)
                gen0, gen1, gen2 = report["gc_counts"]
                row = section.row(case, name, GC_COUNT)
                row.samples.append(gen0)
                row.note = f"last round {gen0}/{gen1}/{gen2}"
    section.pair_ratios()
    worst = max(section.find(case, CACHED, LONGEST).samples)
    section.targets.append(
        Target(
            "stalls: no loop callback over 3 ms while the default cache fills and overflows "
            "(worst round)",
            f"{worst:.2f} ms",
            worst <= 3.0,
        )
    )
    section.notes.append(
        "stalls: each variant in a fresh process pinned to one core (asyncio loop), the "
        "throughput server on the other; 256 untimed warm-up lookups, then every callback "
        "timed by wrapping asyncio.Handle._run (about 0.3 µs each); a garbage collection "
        "runs inside a callback, so its time is in that callback's. Rows: the longest "
        "callback of a round, the count over 3 ms, the 99.9th percentile, the longest "
        "collection, gen-0 collections (the note: the last round's per generation)."
    )
    return section


if __name__ == "__main__":
    _variant, _count, _url, _key, _cpu = sys.argv[1:6]
    pin(None if _cpu == "-1" else int(_cpu))
    sys.stdout.write(json.dumps(asyncio.run(_measure(_variant, int(_count), _url, _key))) + "\n")
