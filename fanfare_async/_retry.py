"""Retry decisions: which failures to retry, how long to wait, Retry-After (pure, no I/O)."""

from __future__ import annotations

import math
import random
from email.utils import parsedate_to_datetime

from . import _config

#: Statuses worth another attempt: the server may answer differently soon.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Statuses whose retry waits on the client-wide rate limiter (which holds every
#: request after them) rather than on a backoff of the request's own, when they
#: name no wait.
CLIENT_HELD_STATUSES = frozenset({429, 503})


def backoff_delay(
    attempt: int,
    *,
    base: float | None = None,
    cap: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**attempt)]``.

    ``attempt`` counts from 0 for the wait after the first failure; ``base`` and
    ``cap`` default to ``BACKOFF_BASE`` and ``BACKOFF_MAX`` of ``_config``.
    """
    base = _config.BACKOFF_BASE if base is None else base
    cap = _config.BACKOFF_MAX if cap is None else cap
    ceiling = min(cap, base * (2 ** min(attempt, 62)))
    return (rng or random).uniform(0.0, ceiling)


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date (``Date``, ``Retry-After``) as a Unix timestamp, or None if absent/invalid."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # RFC 7231 dates are GMT; obsolete forms may lack a zone
        return None
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``now`` is the current Unix time, used for the date form. A date in the past
    means 0; an absent, negative or unparsable value gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        when = parse_http_date(text)
        return None if when is None else max(0.0, when - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
