"""Benchmark 5: the shared tier on Redis (issue 14, contract section 11).

- L2 hit: client CPU per lookup that misses in-process and is answered by
  Redis, against a cold API lookup without a tier and a hand-written redis-py
  GET + msgspec decode of the same group. The L2 contender is a fresh process
  (empty in-process cache) reading groups that another process put in Redis.
- N processes (1, 2, 4, 8) over one set of groups, sharing one tier: the API
  requests the test double saw.
- Redis down (nothing listens on its port) or stopped (SIGSTOP: connections
  are accepted, nothing answers): cold lookups, against the same without a tier.

Every client process is fresh, pinned to one core; the test double and
redis-server share the other. Skipped without redis-py or redis-server.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import ExitStack
from typing import Any

from ._clients import worker_argv
from ._common import (
    PYTHON,
    SEED,
    Section,
    Sizes,
    Target,
    median_ratio,
    rotated,
    run_json,
    split_cores,
)
from ._procs import ServerProcess
from ._redis import (
    RedisProcess,
    free_port,
    redis_py_version,
    redis_server_binary,
    redis_server_version,
)

L2 = "fanfare_async get_group_audiences, L2 hit (RedisTier)"
COLD = "fanfare_async get_group_audiences, cold API lookup (no tier)"
PEER = "redis-py GET + msgspec decode (hand-written peer)"
DOWN = "fanfare_async get_group_audiences, cold, RedisTier on a port nothing listens on"
STOPPED = "fanfare_async get_group_audiences, cold, RedisTier on a SIGSTOPped redis-server"
CPU = "client CPU µs/lookup"
RATE = "lookups/s"
REQUESTS = "API requests"
FAILED = "lookups failed"
CONCURRENCY = 64
PROCESS_LATENCY = 0.020


def _check(name: str, report: dict[str, Any]) -> None:
    if report["errors"]:
        raise RuntimeError(f"{name}: {report['errors']} lookups failed: {report['error_types']}")


def _cpu_us(report: dict[str, Any]) -> float:
    seconds = float(report["user"]) + float(report["sys"])
    return seconds / int(report["n"]) * 1e6


def _lookups(sizes: Sizes, section: Section, redis: RedisProcess) -> None:
    """L2 hits, cold API lookups, the redis-py peer and a down / stopped Redis, side by
    side in each round (the cold row is the reference of all of them)."""
    client_cpu, server_cpu = split_cores()
    n, warm = sizes.tier_lookups, sizes.tier_warmup
    seed = SEED + 400
    namespace = "bench-l2"
    case = f"asyncio, {n} ids, 64 workers awaiting one lookup each, 23 KB groups"
    with ExitStack() as stack:
        srv = stack.enter_context(
            ServerProcess("mock", "--ids", str(warm + n), "--seed", str(seed), cpu=server_cpu)
        )
        stopped = stack.enter_context(RedisProcess(cpu=server_cpu))
        stopped.pause()
        contenders: dict[str, tuple[str, dict[str, Any]]] = {
            L2: ("fanfare", {"redis": redis.url, "namespace": namespace, "connect": True}),
            COLD: ("fanfare", {}),
            PEER: ("redis-py", {"redis": redis.url}),
            DOWN: ("fanfare", {"redis": f"redis://127.0.0.1:{free_port()}/0"}),
            STOPPED: ("fanfare", {"redis": stopped.url}),
        }
        # Another process puts every group in Redis (its misses there are fetched from the API).
        fill_argv = worker_argv(
            "_tierload", "fanfare", srv, seed=seed, count=warm + n, concurrency=CONCURRENCY,
            cpu=client_cpu, redis=redis.url, namespace=namespace, connect=True, shape="bulk",
        )  # fmt: skip
        fill = run_json(fill_argv, timeout=600)
        _check("filling Redis", fill)
        if fill["stats"]["shared_misses"] != warm + n:
            raise RuntimeError(f"filling Redis: unexpected counters {fill['stats']}")
        for round_no in range(sizes.tier_rounds):
            for name in rotated(list(contenders), round_no):
                contender, options = contenders[name]
                before = srv.stats()["total_requests"]
                argv = worker_argv(
                    "_tierload", contender, srv, seed=seed, count=n, concurrency=CONCURRENCY,
                    cpu=client_cpu, warmup=warm, **options,
                )  # fmt: skip
                report = run_json(argv, timeout=600)
                requests = srv.stats()["total_requests"] - before
                if name not in (DOWN, STOPPED):
                    _check(name, report)
                if name == L2 and (report["stats"]["shared_hits"] != n or requests):
                    raise RuntimeError(
                        f"L2 run was not all shared hits: {report['stats']}, {requests} requests"
                    )
                section.row(case, name, CPU, reference=COLD).samples.append(_cpu_us(report))
                rate = report["n"] / report["wall"]
                section.row(case, name, RATE, reference=COLD).samples.append(rate)
                if contender == "fanfare":
                    per = requests / (n + warm)
                    section.row(case, name, "API requests/lookup").samples.append(per)
                if name in (DOWN, STOPPED):
                    section.row(case, name, FAILED).samples.append(report["errors"])
                    errors = report["stats"]["shared_errors"]
                    section.row(case, name, "shared_errors (timed part)").samples.append(errors)
    section.pair_ratios()
    cold = section.find(case, COLD, CPU).samples
    for name in (DOWN, STOPPED):
        added = [a - b for a, b in zip(section.find(case, name, CPU).samples, cold, strict=True)]
        section.row(case, name, "added client CPU µs/lookup").samples.extend(added)
    l2 = section.find(case, L2, CPU).samples
    vs_cold = median_ratio(l2, cold)
    vs_peer = median_ratio(l2, section.find(case, PEER, CPU).samples)
    section.targets.append(
        Target(
            "shared tier: an L2 hit costs <= 0.5x the client CPU of a cold API lookup",
            f"{vs_cold:.2f}x (the redis-py peer's CPU x {vs_peer:.2f})",
            vs_cold <= 0.5,
        )
    )
    l2_requests = max(section.find(case, L2, "API requests/lookup").samples)
    section.targets.append(
        Target("shared tier: an L2 hit makes no API request", f"{l2_requests:g}/lookup",
               l2_requests == 0)
    )  # fmt: skip
    failed = sum(sum(section.find(case, name, FAILED).samples) for name in (DOWN, STOPPED))
    section.targets.append(
        Target(
            "shared tier: Redis down or stopped never fails a lookup",
            f"{failed:.0f} failed lookups",
            failed == 0,
        )
    )
    section.notes.append(
        f"shared tier, lookups: {warm + n} groups put in Redis by another process (a bulk "
        "run with the tier), then each contender in a fresh client process per round, "
        f"{warm} warm-up lookups of other ids first (connections opened, a down tier's "
        f"circuit opened), {n} distinct ids timed. L2 hit: each lookup misses the empty "
        "in-process cache and is a shared hit (checked: cache_stats.shared_hits = n, no "
        "request reached the test double). The cold row (the reference) is the default "
        "configuration without a tier (cache on, every response stored, rate_limit=None) "
        "against MockFanfareServer in its own process; the peer SETs the same JSON bodies "
        "under plain keys and GETs them through redis.asyncio.Redis's default pool, decoding "
        "with msgspec into the package's Audience structs; the down and stopped rows are "
        "the cold row with a RedisTier on a port nothing listens on, or on a redis-server "
        "held by SIGSTOP (it accepts connections, never answers): the circuit opens in the "
        "warm-up and skips Redis, probing it again after each cooldown (0.5 s doubling to "
        "4 s; against the stopped server a probe costs the one lookup carrying it the "
        "tier's timeout, 100 ms). Added CPU = the row minus the cold row of the same round. "
        "CPU = getrusage(RUSAGE_SELF) user+sys of the client around the timed part."
    )


def _start_together(argvs: list[list[str]], timeout: float) -> list[dict[str, Any]]:
    """Start the processes, wait for each one's ``ready``, release them at once, and
    parse each one's JSON line."""
    procs: list[subprocess.Popen[str]] = []
    with ExitStack() as stack:
        for argv in argvs:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [PYTHON, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            stack.callback(_reap, proc)
            procs.append(proc)
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a tier process did not get ready: {line!r}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"a tier process exited with {proc.returncode}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _processes(sizes: Sizes, section: Section, redis: RedisProcess) -> None:
    _, server_cpu = split_cores()
    n = sizes.tier_group_set
    seed = SEED + 500
    case = (
        f"{n} groups, every process looks all of them up (get_many_group_audiences, "
        f"concurrency 64, same order) at once, latency {PROCESS_LATENCY * 1000:.0f} ms"
    )
    mock = ("--ids", str(n), "--seed", str(seed), "--latency", str(PROCESS_LATENCY))
    with ServerProcess("mock", *mock, cpu=server_cpu) as srv:
        for round_no in range(sizes.tier_process_rounds):
            for count in sizes.tier_processes:
                argv = worker_argv(
                    "_tierload", "fanfare", srv, seed=seed, count=n, concurrency=CONCURRENCY,
                    cpu=None, redis=redis.url, namespace=f"bench-procs-{round_no}-{count}",
                    connect=True, shape="bulk", wait=True,
                )  # fmt: skip
                before = srv.stats()["total_requests"]
                reports = _start_together([argv] * count, timeout=600)
                requests = srv.stats()["total_requests"] - before
                redis.flushall()
                name = f"{count} process{'es' if count > 1 else ''} sharing one RedisTier"
                section.row(case, name, REQUESTS).samples.append(float(requests))
                wall = max(r["wall"] for r in reports)
                section.row(case, name, "wall s (slowest process)").samples.append(wall)
                errors = sum(r["errors"] for r in reports)
                section.row(case, name, "ids answered with an error").samples.append(errors)
                hits = sum(r["stats"]["shared_hits"] for r in reports)
                section.row(case, name, "shared hits (all processes)").samples.append(hits)
    worst = max(
        max(section.find(case, f"{c} process{'es' if c > 1 else ''} sharing one RedisTier",
                         REQUESTS).samples)
        for c in sizes.tier_processes
    )  # fmt: skip
    section.targets.append(
        Target(
            f"shared tier: N processes over {n} groups make as many API requests as one "
            f"(N = {', '.join(map(str, sizes.tier_processes))}; within 1 % of {n})",
            f"at most {worst:.0f}",
            worst <= n * 1.01,
        )
    )
    section.notes.append(
        "shared tier, N processes: MockFanfareServer in its own process (20 ms latency, ids "
        "registered); N fresh client processes, each with its own RedisTier on one "
        "redis-server and a namespace new for every run, connect, then start their bulk "
        "runs together (released by one line on stdin); API requests = the double's request "
        "count over the run; without a tier N processes would make N x that."
    )


def run(sizes: Sizes) -> Section:
    section = Section("shared tier")
    redis_py = redis_py_version()
    if redis_py is None or redis_server_binary() is None:
        missing = "redis-py (the redis extra)" if redis_py is None else "redis-server"
        section.notes.append(f"shared tier: skipped ({missing} is not installed).")
        return section
    _, server_cpu = split_cores()
    with RedisProcess(cpu=server_cpu) as redis:
        _lookups(sizes, section, redis)
        redis.flushall()
        _processes(sizes, section, redis)
    section.notes.append(
        f"shared tier: redis-server {redis_server_version()} (no persistence, loopback, "
        f"pinned with the test double), redis-py {redis_py}, RedisTier defaults "
        "(timeout 100 ms, lease 5 s)."
    )
    return section
