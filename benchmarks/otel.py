"""Benchmark 8: what the otel extra costs (issue 18, contract section 10).

Client CPU per cold lookup (64 workers awaiting get_group_audiences, the
default cache) and per cache hit, in three fresh processes per round:
OpenTelemetry absent (its import blocked, as without the extra),
opentelemetry-api alone (the global no-op providers) and an SDK configured
(spans batched to a discarding exporter, metrics to an in-memory reader).
"""

from __future__ import annotations

from ._common import SEED, Section, Sizes, Target, rotated, run_json, split_cores
from ._procs import ServerProcess

MODES = {
    "absent": "OpenTelemetry not installed (import blocked)",
    "api": "opentelemetry-api only (no SDK: no-op providers)",
    "sdk": "OpenTelemetry SDK configured (batch spans, in-memory metrics)",
}
COLD = "client CPU µs/cold lookup"
HIT = "client CPU ns/hit"


def run(sizes: Sizes) -> Section:
    section = Section("otel")
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        section.notes.append("otel: skipped (opentelemetry-sdk is not installed).")
        return section
    client_cpu, server_cpu = split_cores()
    count = 300 if sizes.quick else 3_000
    rounds = 1 if sizes.quick else 5
    seed = SEED + 900
    case = f"asyncio, {count} distinct ids, 64 workers, default cache; then {count * 20} hits"
    reference = MODES["absent"]
    with ServerProcess("mock", "--ids", str(count), "--seed", str(seed), cpu=server_cpu) as srv:
        for round_no in range(rounds):
            for mode in rotated(list(MODES), round_no):
                argv = [
                    "-m", "benchmarks._otelload", mode, "--url", srv.url,
                    "--key", srv.secret_key, "--seed", str(seed), "--count", str(count),
                ]  # fmt: skip
                if client_cpu is not None:
                    argv += ["--cpu", str(client_cpu)]
                report = run_json(argv, timeout=300)
                name = MODES[mode]
                ref = None if name == reference else reference
                section.row(case, name, COLD, ref).samples.append(report["cold_us"])
                section.row(case, name, HIT, ref).samples.append(report["hit_ns"])
    section.pair_ratios()
    hit_ratio = section.find(case, MODES["sdk"], HIT).ratio or 0.0
    section.targets.append(
        Target(
            "otel: nothing measurable on hits (SDK configured, within 5 % of no OpenTelemetry)",
            f"{hit_ratio:.2f}x",
            hit_ratio <= 1.05,
        )
    )
    section.notes.append(
        "otel: each mode a fresh client process per round (modes rotated), pinned to one core, "
        "the double in its own process; CPU = getrusage of the client around each part."
    )
    return section
