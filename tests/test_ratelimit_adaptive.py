"""Rate limits as servers really send them: frozen or junk headers, bare 429/503s, AIMD."""

from __future__ import annotations

import itertools
import math
import time

import pytest

from fanfare_async import FanfareClient, RateLimit
from fanfare_async._ratelimit import (
    BARE_HOLD_FIRST,
    BARE_HOLD_MAX,
    MAX_RESET_AHEAD,
    RateLimiter,
)
from fanfare_async.testing import Fault, MockFanfareServer

from .helpers import client_for
from .test_ratelimit import Clocks, limiter


def send(bucket: RateLimiter, clocks: Clocks) -> int:
    """Take a slot that must be free now; its send number."""
    sent = bucket.try_acquire()
    assert sent is not None
    return sent


def frozen(clocks: Clocks, remaining: str = "999", reset_in: float = 30.0) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": remaining,
        "X-RateLimit-Reset": f"{clocks.wall + reset_in:.0f}",
    }


def test_frozen_remaining_never_holds() -> None:
    """A server that keeps saying Remaining: 999 is never held back, over 100,000 requests."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    headers = frozen(clocks, reset_in=MAX_RESET_AHEAD)
    for _ in range(100_000):
        sent = send(bucket, clocks)
        bucket.observe(sent, 200, headers, None)
        bucket.release()
    assert bucket.state.paused_until is None
    assert bucket.state.remaining == 999


def test_counting_only_covers_requests_sent_since_the_latest_response() -> None:
    """Remaining: 2 lets two more go out; the third waits for the reset."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    bucket.observe(send(bucket, clocks), 200, frozen(clocks, "2", 5.0), None)
    send(bucket, clocks)
    send(bucket, clocks)
    assert bucket._try_take(clocks.mono) == pytest.approx(5.0)


def test_a_later_response_replaces_the_count() -> None:
    """A newer Remaining (even a larger one) is the truth, not the client's own countdown."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    first = send(bucket, clocks)
    bucket.observe(first, 200, frozen(clocks, "1", 5.0), None)
    second = send(bucket, clocks)  # spends the one request left
    assert bucket.try_acquire() is None
    bucket.observe(second, 200, frozen(clocks, "50", 5.0), None)
    assert bucket.try_acquire() is not None


@pytest.mark.parametrize("reset", ["999999999999", "1e300", "inf", "-5", "nan", "soon", ""])
def test_absurd_or_junk_reset_holds_nothing(reset: str) -> None:
    """Remaining: 0 with a reset years away (or unparsable) never turns into a long hold."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    bucket.observe(send(bucket, clocks), 200, headers, None)
    assert bucket._try_take(clocks.mono) == 0.0
    assert bucket.state.paused_until is None


def test_each_header_is_read_on_its_own() -> None:
    """A header that does not parse is ignored; the others still count."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    headers = {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "x"}
    bucket.observe(send(bucket, clocks), 200, headers, None)
    state = bucket.state
    assert (state.limit, state.remaining, state.reset) == (None, 7, None)
    bucket.observe(send(bucket, clocks), 200, {"X-RateLimit-Limit": "1000"}, None)
    assert (bucket.state.limit, bucket.state.remaining) == (1000, 7)


def test_reset_within_the_window_still_holds() -> None:
    """Remaining: 0 with a reset 40 s away holds until then (a real window)."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    bucket.observe(send(bucket, clocks), 200, frozen(clocks, "0", 40.0), None)
    assert bucket._try_take(clocks.mono) == pytest.approx(40.0)


def test_rate_shows_the_configured_rate_or_none() -> None:
    """rate_limit_state.rate is the bucket's rate, None without one."""
    clocks = Clocks()
    assert limiter(RateLimit(1000, 60.0), clocks).state.rate == pytest.approx(1000 / 60)
    assert limiter(None, clocks).state.rate is None


def test_bare_429_holds_and_halves_the_rate() -> None:
    """A bare 429 holds the client 0.25-1 s and halves the configured rate."""
    clocks = Clocks()
    bucket = limiter(RateLimit(100, 1.0), clocks)
    sent = send(bucket, clocks)
    bucket.observe(sent, 429, {}, None)
    hold = bucket._try_take(clocks.mono)
    assert 0.25 <= hold <= 1.0
    assert bucket.state.paused_until is not None
    assert bucket.state.rate == pytest.approx(50.0)


def test_a_storm_in_flight_counts_once() -> None:
    """Thirty 429s for requests sent before the client slowed down decrease it once."""
    clocks = Clocks()
    bucket = limiter(RateLimit(100, 1.0), clocks)
    sends = [send(bucket, clocks) for _ in range(30)]
    for sent in sends:
        bucket.observe(sent, 429, {}, None)
    assert bucket.state.rate == pytest.approx(50.0)
    assert bucket._try_take(clocks.mono) == pytest.approx(BARE_HOLD_FIRST)


def test_consecutive_bare_rejections_grow_the_hold_and_success_resets_it() -> None:
    """Each bare 429 sent after the last slow-down doubles the hold; a success ends the streak."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    holds = []
    for _ in range(8):
        clocks.advance(bucket._try_take(clocks.mono) + 0.001)
        sent = send(bucket, clocks)
        bucket.observe(sent, 429, {}, None)
        holds.append(bucket._hold(clocks.mono) - clocks.mono)
    assert holds[0] == pytest.approx(BARE_HOLD_FIRST)
    assert holds[1] == pytest.approx(2 * BARE_HOLD_FIRST)
    assert holds[-1] == pytest.approx(BARE_HOLD_MAX)
    clocks.advance(BARE_HOLD_MAX + 1)
    bucket.observe(send(bucket, clocks), 200, {}, None)
    clocks.advance(10)
    bucket.observe(send(bucket, clocks), 429, {}, None)
    assert bucket._hold(clocks.mono) - clocks.mono == pytest.approx(BARE_HOLD_FIRST)


def test_bare_503_adapts_but_503_with_retry_after_does_not_hold_the_client() -> None:
    """A 503 naming no wait is treated like a bare 429; one with Retry-After is its own."""
    clocks = Clocks()
    bucket = limiter(RateLimit(100, 1.0), clocks)
    bucket.observe(send(bucket, clocks), 503, {}, 3.0)
    assert bucket._try_take(clocks.mono) == 0.0
    bucket.observe(send(bucket, clocks), 503, {}, None)
    assert bucket._try_take(clocks.mono) == pytest.approx(BARE_HOLD_FIRST)
    assert bucket.state.rate == pytest.approx(50.0)


def test_the_rate_climbs_back_additively_to_the_configured_one() -> None:
    """After a halving, successes add a constant rate per second until the configured rate."""
    clocks = Clocks()
    bucket = limiter(RateLimit(100, 1.0), clocks)
    bucket.observe(send(bucket, clocks), 429, {}, None)
    rates = []
    for _ in range(12):
        clocks.advance(0.5)
        bucket.observe(send(bucket, clocks), 200, {}, None)
        rates.append(bucket.state.rate)
    steps = [b - a for a, b in itertools.pairwise(rates) if b is not None and a is not None]
    assert rates[0] is not None and 50.0 < rates[0] < 100.0
    assert steps[0] == pytest.approx(steps[1])  # additive, not multiplicative
    assert rates[-1] == pytest.approx(100.0)


def test_without_a_configured_rate_the_adapted_one_starts_below_the_sending_rate() -> None:
    """With rate_limit=None, a bare 429 sets a rate of half what was being sent; once it
    has climbed well past that, nothing limits the client again."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    for _ in range(64):  # 200 requests/second
        clocks.advance(0.005)
        send(bucket, clocks)
    bucket.observe(bucket._sent, 429, {}, None)
    rate = bucket.state.rate
    assert rate is not None and 90.0 <= rate <= 110.0
    clocks.advance(BARE_HOLD_FIRST)
    for _ in range(200):
        clocks.advance(0.1)
        bucket.observe(send(bucket, clocks), 200, {}, None)
        if bucket.state.rate is None:
            break
    assert bucket.state.rate is None


def test_adapted_bucket_has_a_small_burst() -> None:
    """While adapted, a long idle time does not bank a burst that would set off a new storm."""
    clocks = Clocks()
    bucket = limiter(RateLimit(1000, 1.0), clocks)
    bucket.observe(send(bucket, clocks), 429, {}, None)
    clocks.advance(BARE_HOLD_FIRST)
    bucket.observe(send(bucket, clocks), 429, {}, None)  # a second slow-down: 250/s
    clocks.advance(60)
    free = 0
    while bucket._try_take(clocks.mono) == 0.0:
        free += 1
    assert free <= math.ceil(bucket.state.rate or 0)  # at most a fraction of a second's worth


@pytest.mark.anyio
async def test_frozen_headers_3000_lookups_all_served() -> None:
    """Behind a gateway answering Remaining: 999 with a fixed reset, 3,000 lookups at
    concurrency 64 all succeed (the client never locks itself up)."""
    reset = f"{time.time() + 1800:.0f}"
    headers = {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "999",
        "X-RateLimit-Reset": reset,
    }
    async with (
        MockFanfareServer(groups=3000, response_headers=headers, record_requests=False) as server,
        client_for(server, rate_limit=None, cache_maxsize=0) as client,
    ):
        results = await client.get_many_group_audiences(server.group_ids, concurrency=64)
        state = client.rate_limit_state
    assert len(results) == 3000
    assert all(isinstance(r, list) for r in results.values())
    assert state.remaining == 999
    assert state.paused_until is None


@pytest.mark.anyio
async def test_unparsable_headers_are_ignored_over_http() -> None:
    """Junk rate-limit headers neither fail lookups nor hold the client."""
    headers = {
        "X-RateLimit-Limit": "many",
        "X-RateLimit-Remaining": "-",
        "X-RateLimit-Reset": "Tuesday",
    }
    async with (
        MockFanfareServer(groups=50, response_headers=headers) as server,
        client_for(server) as client,
    ):
        results = await client.get_many_group_audiences(server.group_ids)
        state = client.rate_limit_state
    assert all(isinstance(r, list) for r in results.values())
    assert (state.limit, state.remaining, state.reset, state.paused_until) == (None,) * 4


@pytest.mark.anyio
async def test_bare_503_holds_every_task() -> None:
    """After a 503 that names no wait, no task sends anything for the hold."""
    async with MockFanfareServer(groups=9) as server:
        server.inject(Fault.error(503))
        async with client_for(server) as client:
            await client.get_group_audiences(server.group_ids[0])
            results = await client.get_many_group_audiences(server.group_ids[1:], concurrency=8)
    assert all(isinstance(r, list) for r in results.values())
    first, *rest = server.requests
    assert first.status == 503
    assert min(r.time for r in rest) - first.time >= BARE_HOLD_FIRST - 0.01


@pytest.mark.anyio
@pytest.mark.parametrize("configured", [None, RateLimit(1000, 1.0)], ids=["none", "1000/s"])
async def test_bulk_behind_a_bare_limiter_settles_near_its_rate(
    configured: RateLimit | None,
) -> None:
    """Behind a limiter of R/s answering bare 429s, 400 ids at concurrency 32 are all
    answered, at most a quarter of the requests are rejected, and the run averages at
    least 0.4 R (contract section 6)."""
    rate = 100
    async with (
        MockFanfareServer(
            groups=400, rate_limit=rate // 10, rate_period=0.1, rate_limit_headers=False
        ) as server,
        FanfareClient(
            server.secret_key, base_url=server.url, rate_limit=configured, cache_maxsize=0
        ) as client,
    ):
        started = time.monotonic()
        results = await client.get_many_group_audiences(server.group_ids, concurrency=32)
        elapsed = time.monotonic() - started
        adapted = client.rate_limit_state.rate
    failed = [r for r in results.values() if not isinstance(r, list)]
    assert failed == []
    rejected = server.rate_limited / server.total_requests
    assert rejected <= 0.25, rejected
    assert 400 / elapsed >= 0.4 * rate, elapsed
    assert adapted is not None
