"""Benchmark 6: refresh-ahead on a web-app-shaped workload (issue 17).

A hot set of 200 groups with a short TTL, read by 64 concurrent callers for
several TTLs from a test double at 50 ms latency, with ``refresh_ahead`` off
and at 0.8 side by side in each round: the share of lookups that waited for
the API and the latency percentiles of all lookups.
"""

from __future__ import annotations

from typing import Any

from fanfare_async._config import MAX_REFRESHES_AT_ONCE

from ._common import SEED, Section, Sizes, Target, rotated, run_json, split_cores
from ._procs import ServerProcess

HOT = 200
CALLERS = 64
THINK = 0.010
LATENCY = 0.050
SETTINGS = {"refresh_ahead=0.0 (off)": 0.0, "refresh_ahead=0.8": 0.8}
OFF, ON = SETTINGS
ON_FRACTION = SETTINGS[ON]
WAITED = "% of lookups that waited for the API"


def run(sizes: Sizes) -> Section:
    section = Section("refresh-ahead")
    client_cpu, server_cpu = split_cores()
    ttl = sizes.ra_ttl
    warmup, seconds = sizes.ra_warmup_ttls * ttl, sizes.ra_measured_ttls * ttl
    seed = SEED + 700
    case = (
        f"{HOT} hot groups, TTL {ttl:g} s, {CALLERS} callers (mean think {THINK * 1000:.0f} "
        f"ms), latency {LATENCY * 1000:.0f} ms, {seconds:g} s measured after {warmup:g} s"
    )
    mock = ("--ids", str(HOT), "--seed", str(seed), "--latency", str(LATENCY))
    periods: dict[str, list[list[dict[str, int]]]] = {name: [] for name in SETTINGS}
    with ServerProcess("mock", *mock, cpu=server_cpu) as server:
        for round_no in range(sizes.ra_rounds):
            for name in rotated(list(SETTINGS), round_no):
                argv = [
                    "-m", "benchmarks._webload", "--url", server.url, "--key", server.secret_key,
                    "--seed", str(seed), "--count", str(HOT), "--concurrency", str(CALLERS),
                    "--ttl", str(ttl), "--refresh-ahead", str(SETTINGS[name]),
                    "--think", str(THINK), "--warmup", str(warmup), "--seconds", str(seconds),
                ]  # fmt: skip
                if client_cpu is not None:
                    argv += ["--cpu", str(client_cpu)]
                before = server.stats()["total_requests"]
                report: dict[str, Any] = run_json(argv, timeout=600)
                requests = server.stats()["total_requests"] - before
                lookups = report["lookups"]
                figures = {
                    WAITED: 100 * report["waited"] / lookups if lookups else float("nan"),
                    "lookups that waited": report["waited"],
                    "p50 latency µs": report["p50"] * 1e6,
                    "p99 latency µs": report["p99"] * 1e6,
                    "p99.9 latency µs": report["p999"] * 1e6,
                    "max latency µs": report["max"] * 1e6,
                    "lookups (measured)": lookups,
                    "refreshes (measured)": report["refreshes"],
                    "API requests/s (whole run)": requests / (warmup + seconds),
                    "lookups failed": report["errors"] + report["refresh_errors"],
                }
                for unit, value in figures.items():
                    section.row(case, name, unit).samples.append(float(value))
                periods[name].append(report["per_period"])
    waited_on = max(section.find(case, ON, "lookups that waited").samples)
    section.targets.append(
        Target(
            "refresh-ahead 0.8: no caller waits for a hot group",
            f"{waited_on:.0f} lookups waited in the worst round (median "
            f"{section.find(case, ON, WAITED).median:.2f} % of lookups; off: "
            f"{section.find(case, OFF, WAITED).median:.2f} %)",
            waited_on == 0,
        )
    )
    shares = "; ".join(
        f"{name}: "
        + " | ".join(
            ", ".join(f"{p['waited']}/{p['lookups']}" for p in one_round)
            for one_round in periods[name]
        )
        for name in SETTINGS
    )
    section.notes.append(
        f"refresh-ahead: MockFanfareServer in its own process ({HOT} ids registered, "
        f"{LATENCY * 1000:.0f} ms latency); each setting in a fresh client process per round "
        f"(rate_limit=None, min_ttl = max_ttl = {ttl:g} s, default cache), whose {CALLERS} "
        "callers each loop: get_group_audiences(a random hot id), then sleep an exponential "
        f"think time (mean {THINK * 1000:.0f} ms). The callers fill the cache themselves in "
        f"the first {warmup:g} s (not measured). Waited = cache_stats misses + coalesced over "
        "the measured part; latency = perf_counter around each awaited lookup started in it "
        "(a hit never yields to the loop). Lookups that waited / lookups, per TTL period of "
        f"the measured part (rounds split by |): {shares}. For reading them: at most "
        f"{MAX_REFRESHES_AT_ONCE} refreshes run at once, so at {LATENCY * 1000:.0f} ms "
        f"latency at most {MAX_REFRESHES_AT_ONCE / LATENCY:.0f} refreshes/s, while the hot "
        f"set needs {HOT / ttl:.0f}/s on average, and the groups the callers filled together "
        f"in the first TTL come due together, in a window of {(1 - ON_FRACTION) * ttl:g} s."
    )
    return section
