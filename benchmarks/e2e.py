"""Benchmark 2: cold lookups end to end, client CPU per request, in the default configuration.

The headline rows are the configuration users get: the cache on at its default size
(``cache_maxsize=10000``; a 20,000-id run fills it and overflows it), which stores every
answer. ``cache_maxsize=0`` is a secondary row, to show what the cache costs. A second case
serves bodies whose ``lastRefreshedAt`` is set (recent, and months old), so the expiry rule
runs on the ``Date`` header instead of falling back to the interval.

Each contender runs in a fresh client process per round (clean ``getrusage``), pinned to
one core while the throughput server runs pinned to the other.
"""

from __future__ import annotations

from fanfare_async._config import DEFAULT_CACHE_MAXSIZE

from ._clients import loadgen_argv
from ._common import SEED, Section, Sizes, Target, median_ratio, rotated, run_json, split_cores
from ._procs import ServerProcess

FANFARE = "fanfare_async iter_group_audiences"
POOL = "fanfare_async get_group_audiences x 64 workers"
FANFARE_NO_CACHE = "fanfare_async iter_group_audiences, cache_maxsize=0"
FLOOR = "aiohttp + msgspec loop (floor)"
BARE = "aiohttp, no decoding"
HTTPX = "httpx.AsyncClient + pydantic v2"
#: contender -> (load generator, cache_maxsize); the default cache unless named.
CONTENDERS = {
    FANFARE: ("fanfare", DEFAULT_CACHE_MAXSIZE),
    POOL: ("fanfare-pool", DEFAULT_CACHE_MAXSIZE),
    FANFARE_NO_CACHE: ("fanfare", 0),
    FLOOR: ("floor", 0),
    BARE: ("bare", 0),
    HTTPX: ("httpx", 0),
}
#: The lastRefreshedAt case: ours (default cache) against the floor, bodies refreshed
#: recently and months ago.
REFRESHED = {"recent": "recently", "old": "months ago"}
REFRESHED_CONTENDERS = (FANFARE, FLOOR)
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


def _measure(
    section: Section,
    case: str,
    name: str,
    server: ServerProcess,
    sizes: Sizes,
    round_no: int,
    loop: str,
    cpu: int | None,
) -> None:
    contender, cache_maxsize = CONTENDERS[name]
    count = max(sizes.e2e_requests // SHARE.get(name, 1), 200)
    argv = loadgen_argv(
        contender, server, seed=SEED + round_no, count=count, concurrency=CONCURRENCY,
        cpu=cpu, warmup=sizes.e2e_warmup, cache_maxsize=cache_maxsize, loop=loop,
    )  # fmt: skip
    report = run_json(argv, timeout=600)
    if report.get("escaped") or report["errors"]:
        raise RuntimeError(f"{name} ({loop}) failed: {report}")
    cpu_us = (report["user"] + report["sys"]) / report["n"] * 1e6
    section.row(case, name, CPU, reference=FLOOR).samples.append(cpu_us)
    section.row(case, name, RATE, reference=FLOOR).samples.append(report["n"] / report["wall"])
    section.row(case, name, GC).samples.append(report["gc_seconds"] / report["n"] * 1e6)


def run(sizes: Sizes) -> Section:
    section = Section("e2e")
    client_cpu, server_cpu = split_cores()
    n = sizes.e2e_requests
    with ServerProcess("minimal", cpu=server_cpu) as server:
        for round_no in range(sizes.e2e_rounds):
            for loop in loops():
                case = f"{loop}, {n} ids, concurrency {CONCURRENCY}"
                for name in rotated(list(CONTENDERS), round_no):
                    _measure(section, case, name, server, sizes, round_no, loop, client_cpu)
    for how, label in REFRESHED.items():
        with ServerProcess("minimal", "--refreshed", how, cpu=server_cpu) as server:
            case = f"asyncio, {n} ids, concurrency {CONCURRENCY}, lastRefreshedAt {label}"
            for round_no in range(sizes.e2e_rounds):
                for name in rotated(list(REFRESHED_CONTENDERS), round_no):
                    _measure(section, case, name, server, sizes, round_no, "asyncio", client_cpu)
    section.pair_ratios()
    for loop in loops():
        case = f"{loop}, {n} ids, concurrency {CONCURRENCY}"
        floor = section.find(case, FLOOR, CPU).samples
        shapes = ((FANFARE, "iter_group_audiences"), (POOL, "64 workers (floor's shape)"))
        for name, label in shapes:
            vs_floor = median_ratio(section.find(case, name, CPU).samples, floor)
            section.targets.append(
                Target(
                    f"e2e {loop}, default cache, {label}: CPU/request <= 1.15x the "
                    "aiohttp+msgspec floor",
                    f"{vs_floor:.2f}x",
                    vs_floor <= 1.15,
                )
            )
        ours = section.find(case, FANFARE, CPU).samples
        vs_httpx = median_ratio(section.find(case, HTTPX, CPU).samples, ours)
        section.targets.append(
            Target(
                f"e2e {loop}, default cache: >= 10x less CPU/request than httpx + pydantic",
                f"{vs_httpx:.1f}x less",
                vs_httpx >= 10.0,
            )
        )
    for label in REFRESHED.values():
        case = f"asyncio, {n} ids, concurrency {CONCURRENCY}, lastRefreshedAt {label}"
        vs_floor = median_ratio(
            section.find(case, FANFARE, CPU).samples, section.find(case, FLOOR, CPU).samples
        )
        section.targets.append(
            Target(
                f"e2e asyncio, default cache, lastRefreshedAt {label}: CPU/request <= 1.15x "
                "the floor",
                f"{vs_floor:.2f}x",
                vs_floor <= 1.15,
            )
        )
    section.notes.append(
        "e2e: minimal aiohttp server (uvloop) in its own process on another core, serving "
        "32 distinct typical groups (8 audiences, ~23 KB); each contender in a fresh client "
        f"process per round after {sizes.e2e_warmup} warm-up lookups; CPU = "
        "getrusage(RUSAGE_SELF) user+sys of the client around the timed part; fanfare_async "
        "with rate_limit=None, max_connections=64 and its default cache "
        f"(cache_maxsize={DEFAULT_CACHE_MAXSIZE}, every answer stored, the cache full and "
        "evicting once the run passes that many ids) unless the row says cache_maxsize=0; the "
        "worker-pool row calls get_group_audiences(use_cache=False) from 64 plain asyncio "
        "workers, the floor's own shape (it still stores every answer); "
        f"httpx + pydantic looks up {n // 4} ids (at least 200); GC = time inside the cyclic "
        "collector (gc.callbacks) in the timed part. The lastRefreshedAt cases serve the same "
        "bodies with lastRefreshedAt set within the last fifth of each interval, or months "
        "back (the server's Date header then decides each TTL)."
    )
    return section
