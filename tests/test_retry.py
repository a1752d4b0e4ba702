"""Pure retry decisions: backoff with full jitter and the Retry-After forms."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from fanfare_async._retry import (
    RETRYABLE_STATUSES,
    backoff_delay,
    parse_http_date,
    parse_retry_after,
)

NOW = 1_700_000_000.0


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    """Each delay lies in [0, min(cap, base * 2**attempt)] and the spread covers it."""
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 8.0), (500, 8.0)]:
        delays = [backoff_delay(attempt, base=0.5, cap=8.0, rng=rng) for _ in range(2000)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.9
        assert min(delays) < ceiling * 0.1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("30", 30.0),
        (" 2 ", 2.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (formatdate(NOW + 45, usegmt=True), 45.0),
        (formatdate(NOW - 45, usegmt=True), 0.0),
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_retry_after_forms(header: str | None, expected: float | None) -> None:
    """Delta-seconds and HTTP dates are honoured; nonsense is ignored."""
    assert parse_retry_after(header, now=NOW) == expected


def test_http_date_parsing() -> None:
    """Valid dates parse to Unix time; malformed or zone-less ones give None."""
    assert parse_http_date(formatdate(NOW, usegmt=True)) == NOW
    assert parse_http_date("Tue, 32 Foo 2023 99:99:99 GMT") is None
    assert parse_http_date("not a date") is None
    assert parse_http_date(None) is None
    assert parse_http_date("") is None


def test_retryable_statuses() -> None:
    """Exactly the contract's statuses are retried."""
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES
