"""Benchmark 2b: end-to-end client instructions per request, counted by callgrind.

CPU time on a shared 2-core machine moves by 10-40 % from run to run; the
number of instructions a client executes does not. Each contender runs the
e2e load generator under ``valgrind --tool=callgrind`` twice, with ``small``
and ``large`` request counts, and the difference divided by the extra
requests is its instructions per request (start-up and imports cancel out).

Instructions are a proxy, not time: under valgrind the client runs ~50x
slower, so more responses wait per event-loop pass than in a native run, and
cache misses and kernel time are not counted. It is skipped without valgrind
and in ``--quick`` (each run takes most of a minute).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ._clients import loadgen_argv
from ._common import PYTHON, SEED, Section, Sizes
from ._procs import ServerProcess
from .e2e import BARE, CONCURRENCY, CONTENDERS, FANFARE, FLOOR, POOL

UNIT = "client instructions/req (thousands)"
MEASURED = (FANFARE, POOL, FLOOR, BARE)
SMALL, LARGE = 300, 1300
_COLLECTED = re.compile(r"Collected : (\d+)")


def _instructions(server: ServerProcess, contender: tuple[str, int], count: int) -> int:
    """Instructions of one load-generator run (``contender``: generator, cache_maxsize)."""
    generator, cache_maxsize = contender
    argv = loadgen_argv(
        generator, server, seed=SEED, count=count, concurrency=CONCURRENCY, cpu=0,
        warmup=100, cache_maxsize=cache_maxsize, loop="asyncio",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(  # noqa: S603 - valgrind on our own interpreter and module
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PYTHON, *argv],  # noqa: S607
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    match = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind run of {generator} failed:\n{proc.stderr[-2000:]}")
    return int(match.group(1))


def run(sizes: Sizes) -> Section:
    section = Section("instructions")
    if sizes.quick or shutil.which("valgrind") is None:
        reason = "--quick" if sizes.quick else "valgrind is not installed"
        section.notes.append(f"instructions: skipped ({reason}).")
        return section
    case = f"asyncio, {LARGE - SMALL} ids (difference of two runs), concurrency {CONCURRENCY}"
    with ServerProcess("minimal", cpu=1) as server:
        for name in MEASURED:
            small = _instructions(server, CONTENDERS[name], SMALL)
            large = _instructions(server, CONTENDERS[name], LARGE)
            per_request = (large - small) / (LARGE - SMALL) / 1000
            section.row(case, name, UNIT, reference=FLOOR).samples.append(per_request)
    section.pair_ratios()
    section.notes.append(
        "instructions: callgrind's instruction count of the e2e load generator (asyncio, "
        f"cache off, minimal server in its own process); ({LARGE} - {SMALL} requests) "
        "difference, so start-up cancels out. Deterministic for the same code, but a proxy "
        "for CPU time: under valgrind more responses are ready per event-loop pass than in "
        "a native run, and cache misses and kernel time are not counted."
    )
    return section
