"""Benchmark 4d: a bulk run behind a limiter that sends bare 429s (issue 13).

The test double allows R requests/second (R/10 per fixed 100 ms window) and
answers the rest with a proxy's bare 429 (no ``Retry-After``, no rate-limit
headers), as nginx's ``limit_req`` does. The client runs
``get_many_group_audiences`` with the cache off, at concurrency 32 and 64,
with ``rate_limit=None`` and with a configured ``RateLimit`` well above R (so
only the client's adaptation to the 429s can slow it down): the share of 429s
among all requests and the throughput as a fraction of R.
"""

from __future__ import annotations

from ._clients import loadgen_argv
from ._common import SEED, Section, Sizes, Target, rotated, run_json, split_cores
from ._procs import ServerProcess

WINDOW = 0.1  # seconds per fixed window of the double's limiter
ABOVE = 5  # the configured RateLimit is this many times R
SHARE_429 = "% of requests answered 429"
FAILED = "ids answered with an error"
OF_R = "throughput, fraction of R"


def _settings(rate: int) -> dict[str, str]:
    return {
        "rate_limit=None": "",
        f"rate_limit=RateLimit({ABOVE * rate}, 1.0)": f"{ABOVE * rate}/1",
    }


def run(sizes: Sizes) -> Section:
    section = Section("rate limit, bare 429s")
    client_cpu, server_cpu = split_cores()
    rate, n = sizes.bare_rate, sizes.bare_ids
    per_window = max(1, round(rate * WINDOW))
    seed = SEED + 800
    settings = _settings(rate)
    mock = ("--ids", str(n), "--seed", str(seed), "--rate-limit", str(per_window),
            "--rate-period", str(WINDOW), "--bare-429")  # fmt: skip

    def case(concurrency: int) -> str:
        return (
            f"{n} ids, limiter R = {rate}/s ({per_window} per {WINDOW * 1000:.0f} ms window), "
            f"bare 429s, get_many_group_audiences at concurrency {concurrency}, cache off"
        )

    for round_no in range(sizes.bare_rounds):
        for concurrency in sizes.bare_concurrency:
            for name in rotated(list(settings), round_no):
                with ServerProcess("mock", *mock, cpu=server_cpu) as server:
                    argv = loadgen_argv(
                        "fanfare-many", server, seed=seed, count=n, concurrency=concurrency,
                        cpu=client_cpu, cache_maxsize=0, rate_limit=settings[name],
                    )  # fmt: skip
                    report = run_json(argv, timeout=900)
                    stats = server.stats()
                if report.get("escaped") or report["answered"] != n:
                    raise RuntimeError(f"{name} bulk run failed: {report}")
                total = stats["total_requests"]
                answered_ok = n - report["errors"]
                figures = {
                    SHARE_429: 100 * stats["rate_limited"] / total if total else 0.0,
                    OF_R: answered_ok / report["wall"] / rate,
                    "requests sent": total,
                    "429s": stats["rate_limited"],
                    FAILED: report["errors"],
                    "wall s": report["wall"],
                    "client's rate in force at the end, req/s": report["rate_in_force"] or 0.0,
                }
                for unit, value in figures.items():
                    section.row(case(concurrency), name, unit).samples.append(float(value))
                if report["error_types"]:
                    section.notes.append(
                        f"rate limit, bare 429s: {name}, concurrency {concurrency}, round "
                        f"{round_no + 1}: errors by type {report['error_types']}"
                    )
    for concurrency in sizes.bare_concurrency:
        for name in settings:
            share = section.find(case(concurrency), name, SHARE_429).median
            of_r = section.find(case(concurrency), name, OF_R).median
            errors = max(section.find(case(concurrency), name, FAILED).samples)
            section.targets.append(
                Target(
                    f"bare 429s, concurrency {concurrency}, {name}: >= 0.8 R with <= 10 % of "
                    "requests answered 429, every id answered",
                    f"{of_r:.2f} R, {share:.1f} % 429s, {errors:.0f} ids failed",
                    of_r >= 0.8 and share <= 10 and errors == 0,
                )
            )
    section.notes.append(
        "rate limit, bare 429s: MockFanfareServer(rate_limit=R/10, rate_period=0.1, "
        "rate_limit_headers=False) in its own process, a fresh one per run (its windows "
        "start with it; the client starts about half a second later); the client in a "
        "fresh process (cache_maxsize=0, default retries, max_connections = concurrency); "
        "throughput = ids answered without an error / wall time of the bulk call / R; "
        "% 429 = the double's 429s / all requests it received. The client's rate in force "
        "is rate_limit_state.rate when the run ended (0: nothing limits it)."
    )
    return section
