"""Shared pieces: sizes per mode, result records, paired statistics, the machine line."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

SEED = 20240611
PYTHON = sys.executable


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is; ``quick`` is the CI smoke pass."""

    quick: bool
    decode_rounds: int
    decode_seconds: float  # target duration of one timed measurement
    e2e_rounds: int
    e2e_requests: int
    e2e_warmup: int
    hot_keys: int
    hits: int
    hit_rounds: int
    memory_groups: int
    memory_rounds: int
    fanout_ids: int
    fanout_rounds: int
    soak_lookups: int
    rl_limit: int
    rl_period: float
    rl_requests: int
    # shared tier: L2 hits, cold lookups, Redis down; N processes over one group set
    tier_lookups: int
    tier_warmup: int
    tier_rounds: int
    tier_group_set: int
    tier_processes: tuple[int, ...]
    tier_process_rounds: int
    # refresh-ahead: a hot set read by concurrent callers across several TTLs
    ra_ttl: float
    ra_warmup_ttls: float
    ra_measured_ttls: float
    ra_rounds: int
    # bare 429s: a bulk run behind a limiter of R requests/s
    bare_rate: int
    bare_ids: int
    bare_concurrency: tuple[int, ...]
    bare_rounds: int


FULL = Sizes(
    quick=False,
    decode_rounds=5,
    decode_seconds=0.2,
    e2e_rounds=5,
    e2e_requests=20_000,
    e2e_warmup=500,
    hot_keys=10_000,
    hits=1_000_000,
    hit_rounds=5,
    memory_groups=10_000,
    memory_rounds=3,
    fanout_ids=5_000,
    fanout_rounds=5,
    soak_lookups=100_000,
    rl_limit=100,
    rl_period=5.0,
    rl_requests=300,
    tier_lookups=5_000,
    tier_warmup=500,
    tier_rounds=5,
    tier_group_set=2_000,
    tier_processes=(1, 2, 4, 8),
    tier_process_rounds=3,
    ra_ttl=2.0,
    ra_warmup_ttls=1.0,
    ra_measured_ttls=5.0,
    ra_rounds=3,
    bare_rate=200,
    bare_ids=2_000,
    bare_concurrency=(32, 64),
    bare_rounds=3,
)
QUICK = Sizes(
    quick=True,
    decode_rounds=2,
    decode_seconds=0.02,
    e2e_rounds=1,
    e2e_requests=500,
    e2e_warmup=64,
    hot_keys=1_000,
    hits=10_000,
    hit_rounds=2,
    memory_groups=2_000,
    memory_rounds=1,
    fanout_ids=300,
    fanout_rounds=1,
    soak_lookups=1_000,
    rl_limit=20,
    rl_period=1.0,
    rl_requests=50,
    tier_lookups=300,
    tier_warmup=64,
    tier_rounds=1,
    tier_group_set=200,
    tier_processes=(2,),
    tier_process_rounds=1,
    ra_ttl=0.5,
    ra_warmup_ttls=1.0,
    ra_measured_ttls=2.0,
    ra_rounds=1,
    bare_rate=200,
    bare_ids=100,
    bare_concurrency=(64,),
    bare_rounds=1,
)


@dataclass
class Row:
    """One contender in one case: a figure per round, and its ratio to the reference."""

    bench: str
    case: str
    contender: str
    unit: str
    samples: list[float] = field(default_factory=list)
    reference: str | None = None  # contender name of the same case and unit
    ratios: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None


@dataclass
class Target:
    """A goal from the issues and what was measured for it."""

    goal: str
    measured: str
    met: bool


@dataclass
class Section:
    """What one benchmark produced."""

    name: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, case: str, contender: str, unit: str, reference: str | None = None) -> Row:
        for existing in self.rows:
            if (existing.case, existing.contender, existing.unit) == (case, contender, unit):
                return existing
        new = Row(self.name, case, contender, unit, reference=reference)
        self.rows.append(new)
        return new

    def find(self, case: str, contender: str, unit: str) -> Row:
        for existing in self.rows:
            if (existing.case, existing.contender, existing.unit) == (case, contender, unit):
                return existing
        raise KeyError((case, contender, unit))

    def pair_ratios(self) -> None:
        """Fill each row's ratios: its sample / the reference's sample, round by round."""
        for row in self.rows:
            if row.reference is None:
                continue
            ref = self.find(row.case, row.reference, row.unit)
            row.ratios = paired(row.samples, ref.samples)


def paired(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-round ratios of two series measured in the same rounds."""
    return [a / b for a, b in zip(numerator, denominator, strict=True) if b]


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    ratios = paired(numerator, denominator)
    return statistics.median(ratios) if ratios else float("nan")


def rotated(items: Sequence[str], round_no: int) -> list[str]:
    """The contenders in a different order each round, so none always goes first."""
    k = round_no % len(items)
    return [*items[k:], *items[:k]]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pin(cpu: int | None) -> None:
    """Pin this process to one core (Linux, and only when there are at least 2)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        os.sched_setaffinity(0, {available[cpu % len(available)]})


def split_cores() -> tuple[int | None, int | None]:
    """(client core, server core) when there are two cores to split, else (None, None)."""
    return (0, 1) if cores() >= 2 else (None, None)


_PACKAGES = (
    "fanfare-async",
    "aiohttp",
    "msgspec",
    "cachetools",
    "anyio",
    "pydantic",
    "orjson",
    "httpx",
    "aiocache",
    "async-lru",
    "uvloop",
    "psutil",
    "redis",
)


def source_fingerprint() -> str:
    """A hash of the package's sources (they change under a running suite) and their age."""
    import fanfare_async

    root = Path(fanfare_async.__file__).parent
    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    stamp = datetime.datetime.fromtimestamp(newest, tz=datetime.timezone.utc)
    return f"sha256:{digest.hexdigest()[:12]} (newest file {stamp:%Y-%m-%d %H:%M:%S} UTC)"


def machine(loops: Sequence[str]) -> dict[str, Any]:
    versions: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    from ._redis import redis_server_version  # the shared-tier benchmark's server

    versions["redis-server"] = redis_server_version()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cores": cores(),
        "cpu": platform.processor() or platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "packages": versions,
        "event_loops": list(loops),
        "loadavg_at_start": [round(x, 2) for x in load],
        "fanfare_async_source": source_fingerprint(),
    }


def run_json(args: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Run ``python -m ...`` and parse the JSON object on the last line of its stdout."""
    proc = subprocess.run(  # noqa: S603 - our own interpreter and module
        [PYTHON, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(args)} printed nothing:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
