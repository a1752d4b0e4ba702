"""Building the command lines of the client processes (``_loadgen``, ``_tierload``, ...)."""

from __future__ import annotations

from ._procs import ServerProcess


def worker_argv(
    module: str,
    contender: str,
    server: ServerProcess,
    *,
    seed: int,
    count: int,
    concurrency: int,
    cpu: int | None,
    **options: str | int | float,
) -> list[str]:
    """``-m benchmarks.<module> ...``; ``options`` become ``--name value`` flags (``True``:
    a bare ``--name``, ``False``: left out)."""
    argv = [
        "-m", f"benchmarks.{module}", contender,
        "--url", server.url, "--key", server.secret_key,
        "--seed", str(seed), "--count", str(count), "--concurrency", str(concurrency),
    ]  # fmt: skip
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    return argv


def loadgen_argv(
    contender: str,
    server: ServerProcess,
    *,
    seed: int,
    count: int,
    concurrency: int,
    cpu: int | None,
    **options: str | int | float,
) -> list[str]:
    """``-m benchmarks._loadgen ...``; ``options`` become ``--name value`` flags."""
    return worker_argv(
        "_loadgen", contender, server, seed=seed, count=count, concurrency=concurrency,
        cpu=cpu, **options,
    )  # fmt: skip
