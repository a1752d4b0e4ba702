"""Benchmark 3b: what a full default cache holds, through the public API.

Each variant runs in a fresh process (``python -m benchmarks.memory VARIANT N URL KEY``)
against the throughput server: a client in its default configuration looks up ``N``
distinct typical groups (8 audiences, ~23 KB of JSON; each id's body its own) with
``iter_group_audiences``, dropping each result, as a bulk job or a web app's first
requests do. ``fetched`` stops there; ``read`` then looks every group up once more (each
a hit), as a web app reading its groups again does; ``hot`` reads each group again as
soon as it arrives, as a web app's hot groups are (the body a first hit frees is reused
by the next one, where in ``read`` 10,000 bodies freed late leave holes in the C heap
that RSS still counts). ``dicts`` is the hand-written reference: ``json.loads`` results
kept in a dict. It reports RSS growth per group, gc-tracked objects per group, and the
time of a full ``gc.collect()`` with the cache full against the same process before it
filled.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

from fanfare_async._config import DEFAULT_CACHE_MAXSIZE

from ._common import Section, Sizes, Target, rotated, run_json
from ._procs import ServerProcess

FETCHED = "fanfare_async default cache, each group fetched once"
READ = "fanfare_async default cache, each group fetched and read again"
HOT = "fanfare_async default cache, each group read again as it arrives"
DICTS = "json.loads dicts in a dict (hand-written)"
VARIANTS = {FETCHED: "fetched", READ: "read", HOT: "hot", DICTS: "dicts"}
RSS = "KiB RSS/group"
TRACKED = "gc-tracked objects/group"
GC = "ms per gc.collect(), cache full"
GC_EMPTY = "ms per gc.collect(), before filling"
GC_RATIO = "gc.collect() full / empty"
WARMUP = 256


async def _fill(variant: str, count: int, url: str, key: str) -> dict[str, Any]:
    import aiohttp
    import psutil

    from fanfare_async import FanfareClient
    from fanfare_async._fake_data import group_ids

    ids = group_ids(7, WARMUP + count)
    warm, ids = ids[:WARMUP], ids[WARMUP:]
    process = psutil.Process()
    held: dict[str, Any] = {}
    async with (
        FanfareClient(key, base_url=url, rate_limit=None) as client,
        aiohttp.ClientSession() as session,
    ):
        headers = {"Authorization": f"Bearer {key}"}

        async def fetch_dict(gid: str) -> None:
            async with session.get(f"{url}/audiences/groups/{gid}", headers=headers) as resp:
                held[gid] = json.loads(await resp.read())

        async def fill(batch: list[str]) -> None:
            if variant == "dicts":
                for start in range(0, len(batch), 64):
                    await asyncio.gather(*(fetch_dict(g) for g in batch[start : start + 64]))
                return
            async for gid, result in client.iter_group_audiences(batch, concurrency=64):
                if isinstance(result, Exception):
                    raise result
                if variant == "hot":
                    await client.get_group_audiences(gid)
            if variant == "read":
                for gid in batch:
                    await client.get_group_audiences(gid)

        await fill(warm)  # connections, buffers and the cache's own structures grown once
        await client.clear_cache()
        held.clear()
        gc.collect()
        rss0, objs0 = process.memory_info().rss, len(gc.get_objects())
        empty = _gc_seconds()
        await fill(ids)
        gc.collect()
        rss1, objs1 = process.memory_info().rss, len(gc.get_objects())
        full = _gc_seconds()
        size = len(held) if variant == "dicts" else client.cache_stats.size
    if size != count:
        raise RuntimeError(f"{variant}: {size} groups kept, expected {count}")
    return {
        "rss_per_group": (rss1 - rss0) / count,
        "tracked_per_group": (objs1 - objs0) / count,
        "gc_seconds": full,
        "gc_seconds_empty": empty,
    }


def _gc_seconds() -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(sizes: Sizes) -> Section:
    section = Section("memory")
    n = min(sizes.memory_groups, DEFAULT_CACHE_MAXSIZE)
    case = f"{n} cached typical groups (8 audiences, ~23 KB of JSON each)"
    with ServerProcess("minimal", "--per-id") as server:
        for round_no in range(sizes.memory_rounds):
            for name in rotated(list(VARIANTS), round_no):
                argv = ["-m", "benchmarks.memory", VARIANTS[name], str(n)]
                report = run_json([*argv, server.url, server.secret_key], timeout=900)
                per_group = report["rss_per_group"] / 1024
                section.row(case, name, RSS, reference=DICTS).samples.append(per_group)
                section.row(case, name, TRACKED).samples.append(report["tracked_per_group"])
                full, empty = report["gc_seconds"] * 1e3, report["gc_seconds_empty"] * 1e3
                section.row(case, name, GC).samples.append(full)
                section.row(case, name, GC_EMPTY).samples.append(empty)
                section.row(case, name, GC_RATIO).samples.append(full / empty)
    section.pair_ratios()
    for name in (FETCHED, READ, HOT):
        kib = section.find(case, name, RSS).median
        section.targets.append(
            Target(
                f"memory, {name}: <= 28 KiB per cached typical group",
                f"{kib:.1f} KiB ({kib * DEFAULT_CACHE_MAXSIZE / 1024:.0f} MiB for a full "
                "default cache)",
                kib <= 28.0,
            )
        )
        ratio = section.find(case, name, GC_RATIO).median
        section.targets.append(
            Target(
                f"memory, {name}: gc.collect() with the cache full <= empty + 10 %",
                f"{ratio:.2f}x",
                ratio <= 1.10,
            )
        )
    section.notes.append(
        "memory: each variant in a fresh process against the throughput server, every id "
        "with a typical body of its own (generated per id: only the organization's id and "
        "the like repeat across groups, so nothing is shared by two copies of one body); "
        "the client in its default configuration (rate_limit=None); "
        f"{WARMUP} warm-up lookups first, then clear_cache(); RSS from psutil after "
        "gc.collect(), before and after the fill; gc.collect() the median of 5."
    )
    return section


if __name__ == "__main__":
    variant, count, url, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sys.stdout.write(json.dumps(asyncio.run(_fill(variant, count, url, key))) + "\n")
