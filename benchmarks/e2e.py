"""Benchmark 2: end-to-end lookups without the cache, client CPU per request.

Each contender runs in a fresh client process per round (clean ``getrusage``),
pinned to one core while the throughput server runs pinned to the other.
"""

from __future__ import annotations

from ._clients import loadgen_argv
from ._common import SEED, Section, Sizes, Target, median_ratio, rotated, run_json, split_cores
from ._procs import ServerProcess

FANFARE = "fanfare_async iter_group_audiences"
POOL = "fanfare_async get_group_audiences x 64 workers"
FLOOR = "aiohttp + msgspec loop (floor)"
BARE = "aiohttp, no decoding"
HTTPX = "httpx.AsyncClient + pydantic v2"
CONTENDERS = {
    FANFARE: "fanfare",
    POOL: "fanfare-pool",
    FLOOR: "floor",
    BARE: "bare",
    HTTPX: "httpx",
}
# httpx + pydantic costs milliseconds per request: a quarter of the lookups keeps the run short
# (the figure is per request).
SHARE = {HTTPX: 4}
CPU = "client CPU µs/req"
RATE = "req/s"
GC = "client GC µs/req"
CONCURRENCY = 64


def loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


def run(sizes: Sizes) -> Section:
    section = Section("e2e")
    client_cpu, server_cpu = split_cores()
    n = sizes.e2e_requests
    with ServerProcess("minimal", cpu=server_cpu) as server:
        for round_no in range(sizes.e2e_rounds):
            for loop in loops():
                case = f"{loop}, {n} ids, concurrency {CONCURRENCY}"
                for name in rotated(list(CONTENDERS), round_no):
                    count = max(n // SHARE.get(name, 1), 200)
                    argv = loadgen_argv(
                        CONTENDERS[name], server, seed=SEED + round_no, count=count,
                        concurrency=CONCURRENCY, cpu=client_cpu, warmup=sizes.e2e_warmup,
                        cache_maxsize=0, loop=loop,
                    )  # fmt: skip
                    report = run_json(argv, timeout=600)
                    if report.get("escaped") or report["errors"]:
                        raise RuntimeError(f"{name} ({loop}) failed: {report}")
                    cpu = (report["user"] + report["sys"]) / report["n"] * 1e6
                    section.row(case, name, CPU, reference=FLOOR).samples.append(cpu)
                    rate = report["n"] / report["wall"]
                    section.row(case, name, RATE, reference=FLOOR).samples.append(rate)
                    gc_us = report["gc_seconds"] / report["n"] * 1e6
                    section.row(case, name, GC).samples.append(gc_us)
    section.pair_ratios()
    for loop in loops():
        case = f"{loop}, {n} ids, concurrency {CONCURRENCY}"
        floor = section.find(case, FLOOR, CPU).samples
        shapes = ((FANFARE, "iter_group_audiences"), (POOL, "64 workers (floor's shape)"))
        for name, label in shapes:
            vs_floor = median_ratio(section.find(case, name, CPU).samples, floor)
            section.targets.append(
                Target(
                    f"e2e {loop}, {label}: CPU/request <= 1.15x the aiohttp+msgspec floor",
                    f"{vs_floor:.2f}x",
                    vs_floor <= 1.15,
                )
            )
        ours = section.find(case, FANFARE, CPU).samples
        vs_httpx = median_ratio(section.find(case, HTTPX, CPU).samples, ours)
        section.targets.append(
            Target(
                f"e2e {loop}: >= 10x less CPU/request than httpx + pydantic",
                f"{vs_httpx:.1f}x less",
                vs_httpx >= 10.0,
            )
        )
    section.notes.append(
        "e2e: minimal aiohttp server (uvloop) in its own process on another core; each "
        f"contender in a fresh client process per round after {sizes.e2e_warmup} warm-up "
        "lookups; CPU = getrusage(RUSAGE_SELF) user+sys of the client around the timed part; "
        "fanfare_async with rate_limit=None, cache_maxsize=0, max_connections=64; the "
        "worker-pool row calls get_group_audiences(use_cache=False) from 64 plain asyncio "
        "workers, the floor's own shape (each fetch runs in the caller's task and its result "
        "is dropped there, while iter_group_audiences hands every result to the consuming "
        "task); "
        f"httpx + pydantic looks up {n // 4} ids "
        "(at least 200); GC = time inside the cyclic collector (gc.callbacks) in the timed part."
    )
    return section
