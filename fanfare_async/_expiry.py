"""How long a group's audiences may be served from the cache (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ._models import Audience


def group_ttl(
    audiences: Iterable[Audience],
    *,
    now: float,
    default_ttl: float,
    min_ttl: float,
    max_ttl: float,
) -> float:
    """Seconds a freshly received group stays fresh.

    Each audience with a positive ``refresh_interval_seconds`` ``i`` allows
    the time left until its next server refresh, clamped into ``[min_ttl, i]``,
    or ``i`` when ``last_refreshed_at`` is unknown. Refreshes are periodic: the
    next one is the first ``last_refreshed_at + k*i`` (k = 1, 2, ...) after
    ``now``, so an audience refreshed several intervals ago is not taken as due
    at once (which would cost a request per ``min_ttl`` forever).
    The group's TTL is the smallest allowance (``default_ttl`` when no audience
    has an interval), clamped into ``[min_ttl, max_ttl]``.

    ``now`` is server time (the response's ``Date``) when known, else the
    local wall clock, as a Unix timestamp.
    """
    ttl = math.inf
    for audience in audiences:
        interval = audience.refresh_interval_seconds
        if interval is None or not interval > 0 or interval == math.inf:
            continue
        refreshed = audience.last_refreshed_at
        if refreshed is None:
            allowance = interval
        else:
            allowance = min(
                max(_until_next_refresh(refreshed.timestamp(), interval, now), min_ttl), interval
            )
        if allowance < ttl:
            ttl = allowance
    if ttl == math.inf:
        ttl = default_ttl
    return min(max(ttl, min_ttl), max_ttl)


def _until_next_refresh(refreshed: float, interval: float, now: float) -> float:
    """Seconds from ``now`` to the first ``refreshed + k*interval`` (k >= 1) after it."""
    elapsed = now - refreshed
    if elapsed < 0:
        return refreshed + interval - now
    return interval - math.fmod(elapsed, interval)
