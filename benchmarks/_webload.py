"""One web-app-shaped client process for the refresh-ahead benchmark.

``python -m benchmarks._webload --url URL --key KEY --seed S --count N --ttl T ...``
runs ``--concurrency`` callers, each looking up a random group of the hot set
``group_ids(S, N)`` with ``get_group_audiences``, then "serving" for an
exponentially distributed think time (mean ``--think`` seconds), for
``--warmup`` seconds (the callers fill the cache themselves) and then
``--seconds`` more, measured. The client's TTL is ``--ttl`` for every group
(``min_ttl = max_ttl``), ``refresh_ahead`` is ``--refresh-ahead``.

Prints one JSON line: lookups started in the measured part, how many of them
waited for the API (``cache_stats`` misses + coalesced over that part), the
same per TTL period, latency percentiles of those lookups, refreshes and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from typing import Any

from fanfare_async import FanfareClient, FanfareError
from fanfare_async._fake_data import group_ids

from ._common import SEED, pin


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    ids = group_ids(args.seed, args.count)
    latencies: list[float] = []
    errors = 0
    stop = False
    measuring = False
    client = FanfareClient(
        args.key,
        base_url=args.url,
        rate_limit=None,
        min_ttl=args.ttl,
        max_ttl=args.ttl,
        refresh_ahead=args.refresh_ahead,
        max_connections=args.concurrency,
    )

    async def caller(index: int) -> None:
        nonlocal errors
        rng = random.Random(SEED * 1000 + index)
        get = client.get_group_audiences
        clock = time.perf_counter
        while not stop:
            gid = ids[rng.randrange(len(ids))]
            counted = measuring
            started = clock()
            try:
                await get(gid)
            except FanfareError:
                errors += counted
            if counted:
                latencies.append(clock() - started)
            await asyncio.sleep(rng.expovariate(1.0 / args.think))

    def waited() -> int:
        stats = client.cache_stats
        return stats.misses + stats.coalesced

    async with client:
        tasks = [asyncio.create_task(caller(i)) for i in range(args.concurrency)]
        await asyncio.sleep(args.warmup)
        stats0 = client.cache_stats
        measuring = True
        per_period: list[dict[str, int]] = []
        t0 = time.perf_counter()
        periods = max(1, round(args.seconds / args.ttl))
        for _ in range(periods):
            looked, before = len(latencies), waited()
            await asyncio.sleep(args.seconds / periods)
            per_period.append({"lookups": len(latencies) - looked, "waited": waited() - before})
        measuring = False
        wall = time.perf_counter() - t0
        stats1 = client.cache_stats
        stop = True
        await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    return {
        "lookups": len(latencies),
        "wall": wall,
        "waited": (stats1.misses + stats1.coalesced) - (stats0.misses + stats0.coalesced),
        "misses": stats1.misses - stats0.misses,
        "coalesced": stats1.coalesced - stats0.coalesced,
        "hits": stats1.hits - stats0.hits,
        "refreshes": stats1.refreshes - stats0.refreshes,
        "refresh_errors": stats1.refresh_errors - stats0.refresh_errors,
        "errors": errors,
        "per_period": per_period,
        "p50": _percentile(ordered, 0.50),
        "p99": _percentile(ordered, 0.99),
        "p999": _percentile(ordered, 0.999),
        "max": ordered[-1] if ordered else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._webload")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True, help="groups in the hot set")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent callers")
    parser.add_argument("--ttl", type=float, required=True)
    parser.add_argument("--refresh-ahead", type=float, default=0.0)
    parser.add_argument("--think", type=float, default=0.01, help="mean seconds between lookups")
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    pin(args.cpu)
    report = asyncio.run(_main(args))
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
