"""Deterministic response bodies from the package's seeded generator."""

from __future__ import annotations

import functools
import random
import time
from datetime import datetime, timezone
from typing import Any

from fanfare_async._fake_data import encode_group, generate_group, group_ids

from ._common import SEED

TYPICAL_AUDIENCES = 8
LARGE_AUDIENCES = 100
#: ``lastRefreshedAt`` of the bodies: None (the generator's null), "recent" (within the
#: last fifth of each audience's interval) or "old" (months back, several intervals ago).
REFRESHED = (None, "recent", "old")
_MONTHS = 120 * 86_400.0


@functools.cache
def typical_body() -> bytes:
    """One group of 8 audiences (~23 KB)."""
    gid = group_ids(SEED, 1)[0]
    return encode_group(generate_group(SEED, gid, TYPICAL_AUDIENCES))


@functools.cache
def large_body() -> bytes:
    """One group of 100 audiences (~290 KB)."""
    gid = group_ids(SEED + 1, 1)[0]
    return encode_group(generate_group(SEED + 1, gid, LARGE_AUDIENCES))


def body_pool(
    count: int,
    audiences: int = TYPICAL_AUDIENCES,
    seed: int = SEED,
    refreshed: str | None = None,
) -> list[bytes]:
    """``count`` distinct typical bodies, served in turn for any id by the load servers;
    ``refreshed`` sets ``lastRefreshedAt`` (see ``REFRESHED``) relative to now."""
    groups = [generate_group(seed, gid, audiences) for gid in group_ids(seed, count)]
    if refreshed is not None:
        rng = random.Random(seed)
        now = time.time()
        for group in groups:
            for audience in group:
                _set_last_refreshed(audience, refreshed, now, rng)
    return [encode_group(group) for group in groups]


def _set_last_refreshed(audience: dict[str, Any], how: str, now: float, rng: random.Random) -> None:
    interval = audience["refreshIntervalSeconds"]
    if interval is None:
        return
    back = rng.uniform(0.0, 0.2) * interval
    if how == "old":
        back += _MONTHS
    when = datetime.fromtimestamp(now - back, tz=timezone.utc)
    audience["lastRefreshedAt"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pick(pool: list[bytes], group_id: str) -> bytes:
    """The pool body for ``group_id`` (stable for an id, spread over the pool)."""
    return pool[int(group_id[:8], 16) % len(pool)] if _hex8(group_id) else pool[0]


def _hex8(text: str) -> bool:
    head = text[:8]
    return len(head) == 8 and all(c in "0123456789abcdefABCDEF" for c in head)
