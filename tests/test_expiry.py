"""The expiry rule of a group, as a pure function (contract section 4)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fanfare_async import Audience
from fanfare_async._expiry import group_ttl

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
T = NOW.timestamp()
LIMITS = {"default_ttl": 60.0, "min_ttl": 1.0, "max_ttl": 3600.0}


def audience(interval: float | None, refreshed_ago: float | None = None) -> Audience:
    refreshed = None if refreshed_ago is None else NOW - timedelta(seconds=refreshed_ago)
    return Audience(
        id="a",
        name="n",
        archived=False,
        created_at=NOW,
        created_by="u",
        organization_id="o",
        imports=(),
        rules=(),
        refresh_interval_seconds=interval,
        last_refreshed_at=refreshed,
    )


@pytest.mark.parametrize(
    ("audiences", "expected"),
    [
        pytest.param([], 60.0, id="empty group: default_ttl"),
        pytest.param([audience(None)], 60.0, id="no interval: default_ttl"),
        pytest.param([audience(300)], 300.0, id="interval, never refreshed: the interval"),
        pytest.param([audience(300), audience(120)], 120.0, id="smallest allowance wins"),
        pytest.param([audience(90.5)], 90.5, id="fractional interval"),
        pytest.param([audience(0)], 60.0, id="zero interval ignored"),
        pytest.param([audience(-5)], 60.0, id="negative interval ignored"),
        pytest.param([audience(0), audience(200)], 200.0, id="zero ignored beside a real one"),
        pytest.param([audience(300, refreshed_ago=100)], 200.0, id="time left to next refresh"),
        pytest.param([audience(300, refreshed_ago=299.5)], 1.0, id="overdue soon: min_ttl"),
        pytest.param(
            [audience(300, refreshed_ago=1000)], 200.0, id="overdue: next on the schedule"
        ),
        pytest.param(
            [audience(300, refreshed_ago=900)], 300.0, id="exactly k intervals ago: a whole i"
        ),
        pytest.param(
            [audience(3600, refreshed_ago=120 * 86400 + 3599.5)],
            1.0,
            id="months overdue, next refresh due in 0.5 s: min_ttl",
        ),
        pytest.param(
            [audience(3600, refreshed_ago=120 * 86400 + 600)],
            3000.0,
            id="months overdue: the time left in the current period",
        ),
        pytest.param(
            [audience(300, refreshed_ago=-100)], 300.0, id="refresh in the future: capped at i"
        ),
        pytest.param([audience(10_000)], 3600.0, id="clamped to max_ttl"),
        pytest.param([audience(0.2)], 1.0, id="clamped up to min_ttl"),
        pytest.param(
            [audience(300, refreshed_ago=100), audience(None), audience(600)],
            200.0,
            id="mixed audiences",
        ),
    ],
)
def test_expiry_table(audiences: list[Audience], expected: float) -> None:
    """Each row pins one clause of the contract's rule."""
    assert group_ttl(audiences, now=T, **LIMITS) == pytest.approx(expected)


def test_server_time_is_what_counts_under_clock_skew() -> None:
    """The allowance is computed against the `now` given (server Date), not local time."""
    group = [audience(300, refreshed_ago=100)]
    assert group_ttl(group, now=T, **LIMITS) == pytest.approx(200.0)
    # A server clock 50 s ahead of the data's refresh time leaves 50 s less.
    assert group_ttl(group, now=T + 50, **LIMITS) == pytest.approx(150.0)


def test_custom_limits() -> None:
    """default_ttl, min_ttl and max_ttl are the client's options."""
    assert group_ttl([], now=T, default_ttl=5, min_ttl=0, max_ttl=10) == 5
    assert group_ttl([audience(50)], now=T, default_ttl=5, min_ttl=0, max_ttl=10) == 10
    assert group_ttl([audience(50)], now=T, default_ttl=5, min_ttl=60, max_ttl=100) == 60
