"""Benchmark 4a: bulk fan-out efficiency against a test double with 20 ms latency."""

from __future__ import annotations

from fanfare_async._config import DEFAULT_CACHE_MAXSIZE

from ._clients import loadgen_argv
from ._common import SEED, Section, Sizes, Target, rotated, run_json, split_cores
from ._procs import ServerProcess

FANFARE = "fanfare_async iter_group_audiences"
FANFARE_NO_CACHE = "fanfare_async iter_group_audiences, cache_maxsize=0"
FLOOR = "aiohttp + msgspec loop (floor)"
#: contender -> (load generator, cache size): the default cache, then none, to show its cost.
CONTENDERS = {
    FANFARE: ("fanfare", DEFAULT_CACHE_MAXSIZE),
    FANFARE_NO_CACHE: ("fanfare", 0),
    FLOOR: ("floor", 0),
}
LATENCY = 0.020
CONCURRENCY = 64
WALL = "wall s"
EFFICIENCY = "% of ideal"
SERVER_BUSY = "server CPU % busy"
GC = "client GC ms"


def run(sizes: Sizes) -> Section:
    section = Section("fan-out")
    n = sizes.fanout_ids
    ideal = n / CONCURRENCY * LATENCY
    case = f"{n} ids, latency 20 ms, concurrency {CONCURRENCY}, ideal {ideal:.3f} s"
    client_cpu, server_cpu = split_cores()
    for round_no in range(sizes.fanout_rounds):
        seed = SEED + 100 + round_no
        mock = ("--ids", str(n), "--seed", str(seed), "--latency", str(LATENCY))
        for name in rotated(list(CONTENDERS), round_no):
            contender, cache_maxsize = CONTENDERS[name]
            with ServerProcess("mock", *mock, cpu=server_cpu) as server:
                argv = loadgen_argv(
                    contender, server, seed=seed, count=n, concurrency=CONCURRENCY,
                    cpu=client_cpu, cache_maxsize=cache_maxsize,
                )  # fmt: skip
                before = server.stats()["cpu_seconds"]
                report = run_json(argv, timeout=600)
                server_cpu_s = server.stats()["cpu_seconds"] - before
            if report.get("escaped") or report["answered"] != n:
                raise RuntimeError(f"{name} fan-out failed: {report}")
            section.row(case, name, WALL).samples.append(report["wall"])
            section.row(case, name, EFFICIENCY).samples.append(100 * ideal / report["wall"])
            # Server CPU between two stats calls around the client run (it idles meanwhile).
            busy = 100 * server_cpu_s / report["wall"]
            section.row(case, name, SERVER_BUSY).samples.append(busy)
            section.row(case, name, GC).samples.append(report["gc_seconds"] * 1e3)
    ours = section.find(case, FANFARE, EFFICIENCY).median
    section.targets.append(
        Target("fan-out: wall time >= 85% of ideal (N/64 x 20 ms)", f"{ours:.1f}%", ours >= 85)
    )
    section.notes.append(
        "fan-out: MockFanfareServer in its own process (ids pre-registered, so it does not "
        "generate bodies while timed), a fresh one per run; no warm-up (connections opened "
        "inside the timed part); fanfare_async with rate_limit=None, with its default cache "
        "(the target's row) and with none; GC = time in the client's cyclic collector "
        "(gc.callbacks). Every cached group keeps its nested collections, tuples, each a "
        "tracked allocation until a young collection untracks it: that is what makes the "
        "cached run collect so much more often."
    )
    return section
