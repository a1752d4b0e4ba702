"""Benchmark 4c: the client's RateLimit against a double enforcing the same limit."""

from __future__ import annotations

import math
import time

from ._clients import loadgen_argv
from ._common import SEED, Section, Sizes, Target, run_json, split_cores
from ._procs import ServerProcess

FANFARE = "fanfare_async iter_group_audiences"
CONCURRENCY = 64
START_OFFSET = 0.02  # seconds into a fresh server window
STARTUP = 1.5  # seconds a client process needs before it can start


def run(sizes: Sizes) -> Section:
    section = Section("rate limit")
    limit, period, n = sizes.rl_limit, sizes.rl_period, sizes.rl_requests
    windows = math.ceil(n / limit)
    case = f"{n} requests, limit {limit}/{period:g}s on both sides ({windows} windows)"
    client_cpu, server_cpu = split_cores()
    seed = SEED + 300
    mock = ("--ids", str(n), "--seed", str(seed), "--rate-limit", str(limit),
            "--rate-period", str(period))  # fmt: skip
    with ServerProcess("mock", *mock, cpu=server_cpu) as server:
        # Start right after a window opens, leaving the client process time to start.
        elapsed = time.time() + STARTUP - server.start_time
        first = math.ceil(elapsed / period)
        start_at = server.start_time + first * period + START_OFFSET
        argv = loadgen_argv(
            "fanfare", server, seed=seed, count=n, concurrency=CONCURRENCY, cpu=client_cpu,
            rate_limit=f"{limit}/{period:g}", start_at=start_at, cache_maxsize=10_000,
        )  # fmt: skip
        report = run_json(argv, timeout=600)
        stats = server.stats()
    # The last window the run needs opens at this time; no 429-free client can end sooner.
    last_window = server.start_time + (first + windows - 1) * period
    ideal = last_window - report["t0_unix"]
    share = 100 * ideal / report["wall"]
    figures = {
        "429s sent by the server": stats["rate_limited"],
        "ids answered with an error": report["errors"],
        "wall s": report["wall"],
        "fastest 429-free wall s": ideal,
        "% of allowed throughput": share,
        "req/s": n / report["wall"],
    }
    for unit, value in figures.items():
        section.row(case, FANFARE, unit).samples.append(float(value))
    section.targets.append(
        Target("rate limit: 0 429s", str(stats["rate_limited"]), stats["rate_limited"] == 0)
    )
    section.targets.append(
        Target("rate limit: >= 90% of allowed throughput", f"{share:.1f}%", share >= 90)
    )
    section.notes.append(
        "rate limit: the double's fixed windows start with the server; the client starts "
        f"~{START_OFFSET * 1000:.0f} ms into a window with a full bucket (RateLimit(limit, "
        "period)); N requests need ceil(N/limit) windows, so no 429-free client finishes "
        "before the last of them opens: % of allowed = that time / measured wall time."
    )
    return section
