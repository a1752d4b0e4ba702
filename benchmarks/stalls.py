"""Benchmark 3c: the longest event-loop callbacks while a bulk run fills and overflows the cache.

Each variant is the e2e load generator (``_loadgen --time-callbacks``, the asyncio loop)
in a fresh process pinned to one core, the throughput server on the other: distinct
typical groups through ``iter_group_audiences`` at concurrency 64 with the default cache
(a run of more than 10,000 ids fills it, then every store evicts), with
``cache_maxsize=0``, and the hand-written aiohttp + msgspec loop that keeps nothing. In
the timed part every loop callback is timed, and every collection of the cyclic garbage
collector, which runs inside some callback.
"""

from __future__ import annotations

from fanfare_async._config import DEFAULT_CACHE_MAXSIZE

from ._clients import loadgen_argv
from ._common import SEED, Section, Sizes, Target, rotated, run_json, split_cores
from ._procs import ServerProcess

CACHED = "fanfare_async iter_group_audiences (default cache)"
UNCACHED = "fanfare_async iter_group_audiences, cache_maxsize=0"
FLOOR = "aiohttp + msgspec loop, keeps nothing (floor)"
#: contender -> (load generator, cache_maxsize)
VARIANTS = {
    CACHED: ("fanfare", DEFAULT_CACHE_MAXSIZE),
    UNCACHED: ("fanfare", 0),
    FLOOR: ("floor", 0),
}
LONGEST = "longest callback ms"
OVER = "callbacks over 3 ms"
P999 = "p99.9 callback µs"
GC_LONGEST = "longest collection ms"
GC_COUNT = "young collections"
CONCURRENCY = 64


def run(sizes: Sizes) -> Section:
    section = Section("stalls")
    n = sizes.e2e_requests
    case = f"asyncio, {n} ids, concurrency {CONCURRENCY} (the default cache holds 10,000)"
    client_cpu, server_cpu = split_cores()
    with ServerProcess("minimal", cpu=server_cpu) as server:
        for round_no in range(sizes.memory_rounds):
            for name in rotated(list(VARIANTS), round_no):
                generator, cache_maxsize = VARIANTS[name]
                argv = loadgen_argv(
                    generator, server, seed=SEED + 7 + round_no, count=n,
                    concurrency=CONCURRENCY, cpu=client_cpu, warmup=sizes.e2e_warmup,
                    cache_maxsize=cache_maxsize, loop="asyncio", time_callbacks=True,
                )  # fmt: skip
                report = run_json(argv, timeout=900)
                if report.get("escaped") or report["errors"]:
                    raise RuntimeError(f"{name} failed: {report}")
                timed = report["callbacks"]
                longest = section.row(case, name, LONGEST, reference=FLOOR)
                longest.samples.append(timed["longest"] * 1e3)
                section.row(case, name, OVER).samples.append(timed["over_3ms"])
                section.row(case, name, P999).samples.append(timed["p999"] * 1e6)
                section.row(case, name, GC_LONGEST).samples.append(timed["gc_longest"] * 1e3)
                gen0, gen1, gen2 = timed["gc_counts"]
                row = section.row(case, name, GC_COUNT)
                row.samples.append(gen0)
                row.note = f"last round, gen 0/1/2: {gen0}/{gen1}/{gen2}"
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
        "stalls: the e2e load generator with --time-callbacks, in a fresh process per round "
        f"pinned to one core (asyncio loop), {sizes.e2e_warmup} untimed warm-up lookups; "
        "every callback timed by wrapping asyncio.Handle._run (about 0.3 µs each); a garbage "
        "collection runs inside a callback, so its time is in that callback's. Rows: the "
        "longest callback of a round, the count over 3 ms, the 99.9th percentile, the "
        "longest collection, young collections (the note: the last round's per generation)."
    )
    return section
