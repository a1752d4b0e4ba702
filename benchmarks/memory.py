"""Benchmark 3b: memory and gc cost of many cached groups, Structs against plain dicts.

Each variant fills a fresh process (``python -m benchmarks.memory VARIANT N``) with
``N`` groups of 8 audiences decoded from a pool of distinct bodies, keyed by group id:
``structs`` stores them in the client's own cache (``GroupCache.store``, bookkeeping
included), ``dicts`` holds the ``json.loads`` results in a dict. It reports the RSS
growth per group, the gc-tracked objects per group and the time of a full
``gc.collect()``.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from typing import Any

from ._common import Section, Sizes, rotated, run_json

STRUCTS = "fanfare_async cache (GroupCache.store)"
DICTS = "json.loads dicts"
VARIANTS = {STRUCTS: "structs", DICTS: "dicts"}
RSS = "KB RSS/group"
TRACKED = "gc-tracked objects/group"
GC = "ms per gc.collect()"
GC_EMPTY = "ms per gc.collect() before filling"


def _worker(variant: str, count: int) -> dict[str, Any]:
    import psutil

    from fanfare_async._cache import Entry, GroupCache
    from fanfare_async._config import CacheConfig
    from fanfare_async._fake_data import group_ids
    from fanfare_async._models import decode_audience_tuple

    from ._payloads import body_pool, pick

    pool = body_pool(64)
    ids = group_ids(1, count)

    cache = GroupCache(CacheConfig(maxsize=count))
    held: dict[str, Any] = {}
    process = psutil.Process()
    gc.collect()
    rss0, objs0 = process.memory_info().rss, len(gc.get_objects())
    empty = _gc_seconds()
    for gid in ids:
        body = bytes(bytearray(pick(pool, gid)))  # a fresh bytes object, as each response is
        if variant == "structs":
            cache.store(gid, Entry(decode_audience_tuple(body), time.monotonic() + 86_400))
        else:
            held[gid] = json.loads(body)
    gc.collect()
    rss1, objs1 = process.memory_info().rss, len(gc.get_objects())
    full = _gc_seconds()
    assert max(cache.stats().size, len(held)) == count
    return {
        "rss_per_group": (rss1 - rss0) / count,
        "tracked_per_group": (objs1 - objs0) / count,
        "gc_seconds": full,
        "gc_seconds_empty": empty,
    }


def _gc_seconds() -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(sizes: Sizes) -> Section:
    section = Section("memory")
    n = sizes.memory_groups
    case = f"{n} cached groups of 8 audiences"
    for round_no in range(sizes.memory_rounds):
        for name in rotated(list(VARIANTS), round_no):
            report = run_json(["-m", "benchmarks.memory", VARIANTS[name], str(n)], timeout=900)
            section.row(case, name, RSS, reference=DICTS).samples.append(
                report["rss_per_group"] / 1024
            )
            section.row(case, name, TRACKED, reference=DICTS).samples.append(
                report["tracked_per_group"]
            )
            section.row(case, name, GC, reference=DICTS).samples.append(report["gc_seconds"] * 1e3)
            section.row(case, name, GC_EMPTY).samples.append(report["gc_seconds_empty"] * 1e3)
    section.pair_ratios()
    section.notes.append(
        "memory: each variant in a fresh process; bodies copied from a pool of 64 distinct "
        "typical groups into a fresh bytes object per group (as responses arrive), decoded and "
        "stored through the client's GroupCache (its cachetools store, dict and heaps "
        "counted); RSS from psutil after gc.collect()."
    )
    return section


if __name__ == "__main__":
    sys.stdout.write(json.dumps(_worker(sys.argv[1], int(sys.argv[2]))) + "\n")
