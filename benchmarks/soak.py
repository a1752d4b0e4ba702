"""Benchmark 4b: a long bulk run with injected 503s and dropped connections."""

from __future__ import annotations

from ._clients import loadgen_argv
from ._common import SEED, Section, Sizes, Target, run_json, split_cores
from ._procs import ServerProcess

FANFARE = "fanfare_async iter_group_audiences"
CONCURRENCY = 256
FAULT_RATE = 0.01


def run(sizes: Sizes) -> Section:
    section = Section("soak")
    n = sizes.soak_lookups
    case = f"{n} ids, concurrency {CONCURRENCY}, 1% 503/drop"
    client_cpu, server_cpu = split_cores()
    seed = SEED + 200
    mock = ("--ids", str(n), "--seed", str(seed), "--fault-rate", str(FAULT_RATE))
    with ServerProcess("mock", *mock, cpu=server_cpu) as server:
        argv = loadgen_argv(
            "fanfare", server, seed=seed, count=n, concurrency=CONCURRENCY, cpu=client_cpu,
            max_connections=CONCURRENCY, cache_maxsize=10_000,
        )  # fmt: skip
        report = run_json(argv, timeout=1200)
        stats = server.stats()
    figures = {
        "ids answered": report["answered"],
        "ids answered with an error": report["errors"],
        "unhandled exceptions": report["unhandled"],
        "peak RSS MB": report["maxrss_mb"],
        "wall s": report["wall"],
        "lookups/s": n / report["wall"],
        "requests seen by the server": stats["total_requests"],
    }
    for unit, value in figures.items():
        section.row(case, FANFARE, unit).samples.append(float(value))
    if report["error_types"]:
        section.notes.append(f"soak: final errors by type: {report['error_types']}")
    if report.get("unhandled_messages"):
        section.notes.append(f"soak: unhandled: {report['unhandled_messages']}")
    if report.get("escaped"):
        section.notes.append(f"soak: the bulk call raised {report['escaped']}")
    section.targets.append(
        Target("soak: every id answered", f"{report['answered']}/{n}", report["answered"] == n)
    )
    section.targets.append(
        Target("soak: 0 unhandled exceptions", str(report["unhandled"]), report["unhandled"] == 0)
    )
    section.notes.append(
        "soak: MockFanfareServer in its own process, fault_rate=0.01 drawn from "
        "(Fault.error(503), Fault.drop()); client max_connections=256, rate_limit=None, "
        "default retries; results consumed as they complete (not kept)."
    )
    return section
