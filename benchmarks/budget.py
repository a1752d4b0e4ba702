"""Benchmark 7: one budget shared through the tier (issue 15, contract section 11).

- N processes (1, 2, 4, 8), each as fast as ``RateLimit(R, period=1.0)`` lets it,
  sharing one RedisTier, against the test double enforcing R per second with
  the real headers: the 429s it sent, and the share of the allowed requests
  (R per second of the run, plus the burst of R) they used.
- The client CPU the shared bucket adds per request: ``use_cache=False``
  lookups (so the budget's draw is the only tier operation) with a tier and
  without one, against a non-binding budget.

Skipped without redis-py or redis-server.
"""

from __future__ import annotations

from ._common import Section, Sizes, Target, run_json, split_cores
from ._procs import ServerProcess
from ._redis import RedisProcess, redis_py_version, redis_server_binary
from .shared import _start_together

RATE = 40
CPU_COUNT = 2_000


def _argv(srv: ServerProcess, *options: str) -> list[str]:
    return ["-m", "benchmarks._budgetload", "--url", srv.url, "--key", srv.secret_key, *options]


def _processes(sizes: Sizes, section: Section, redis: RedisProcess) -> None:
    _, server_cpu = split_cores()
    seconds = 2.0 if sizes.quick else 5.0
    counts = (1, 2) if sizes.quick else (1, 2, 4, 8)
    case = (
        f"N processes, each as fast as RateLimit({RATE}, 1.0) allows, sharing one RedisTier, "
        f"{seconds:g} s, the double enforcing {RATE}/s (1 s windows, real headers)"
    )
    worst_429, worst_share = 0.0, 1.0
    for count in counts:
        mock = ("--rate-limit", str(RATE), "--rate-period", "1.0")
        with ServerProcess("mock", *mock, cpu=server_cpu) as srv:
            argvs = [
                _argv(
                    srv,
                    "--rate",
                    str(RATE),
                    "--seconds",
                    str(seconds),
                    "--wait",
                    "--redis",
                    redis.url,
                    "--namespace",
                    f"budget-{count}",
                    "--prefix",
                    f"p{index}",
                )
                for index in range(count)
            ]
            reports = _start_together(argvs, timeout=120)
            stats = srv.stats()
        redis.flushall()
        name = f"{count} process{'es' if count > 1 else ''}"
        requests = float(stats["total_requests"])
        limited = float(stats.get("rate_limited", 0))
        share = requests / (RATE * (seconds + 1))  # the budget over the run, plus its burst
        section.row(case, name, "429s").samples.append(limited)
        section.row(case, name, "requests").samples.append(requests)
        section.row(case, name, "share of R x (seconds + 1) used").samples.append(share)
        section.row(case, name, "errors (not 404)").samples.append(
            float(sum(r["errors"] for r in reports))
        )
        worst_429 = max(worst_429, limited)
        worst_share = min(worst_share, share)
    section.targets.append(
        Target("shared budget: N processes draw no 429", f"at most {worst_429:.0f}", worst_429 == 0)
    )
    section.targets.append(
        Target(
            "shared budget: N processes use at least 90 % of it",
            f"at least {worst_share * 100:.1f} %",
            worst_share >= 0.9,
        )
    )


def _cpu(sizes: Sizes, section: Section, redis: RedisProcess) -> None:
    _, server_cpu = split_cores()
    count = 200 if sizes.quick else CPU_COUNT
    case = f"{count} use_cache=False lookups in turn (404s), RateLimit(100000, 1.0)"
    rounds = 1 if sizes.quick else 3
    with ServerProcess("mock", cpu=server_cpu) as srv:
        for _ in range(rounds):
            plain = run_json(_argv(srv, "--rate", "100000", "--count", str(count)), timeout=120)
            shared = run_json(
                _argv(
                    srv,
                    "--rate",
                    "100000",
                    "--count",
                    str(count),
                    "--redis",
                    redis.url,
                    "--namespace",
                    "budget-cpu",
                ),
                timeout=120,
            )
            redis.flushall()
            base = plain["cpu"] / count * 1e6
            with_tier = shared["cpu"] / count * 1e6
            section.row(case, "local bucket (no tier)", "client CPU µs/request").samples.append(
                base
            )
            section.row(case, "shared bucket (RedisTier)", "client CPU µs/request").samples.append(
                with_tier
            )
            section.row(
                case, "shared bucket (RedisTier)", "added client CPU µs/request"
            ).samples.append(with_tier - base)


def run(sizes: Sizes) -> Section:
    section = Section("shared budget")
    if redis_py_version() is None or redis_server_binary() is None:
        section.notes.append("shared budget: skipped (redis-py or redis-server is missing).")
        return section
    _, server_cpu = split_cores()
    with RedisProcess(cpu=server_cpu) as redis:
        _processes(sizes, section, redis)
        _cpu(sizes, section, redis)
    section.notes.append(
        "shared budget: every client process fresh, started together (released by one line "
        "on stdin); the double (MockFanfareServer in its own process) counts requests and "
        "429s; share = requests / (R x (seconds + 1)): the budget over the run plus its "
        "burst (a bucket of R); the CPU rows compare the same lookups with and without a tier, "
        "whose only operation there is the budget's draw (one script call per request)."
    )
    return section
