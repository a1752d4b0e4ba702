"""Building ``_loadgen`` command lines."""

from __future__ import annotations

from ._procs import ServerProcess


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
    argv = [
        "-m", "benchmarks._loadgen", contender,
        "--url", server.url, "--key", server.secret_key,
        "--seed", str(seed), "--count", str(count), "--concurrency", str(concurrency),
    ]  # fmt: skip
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    return argv
