"""The client-wide rate limiter: token bucket, server-driven pauses, and both over HTTP."""

from __future__ import annotations

import time

import anyio
import pytest

from fanfare_async import FanfareClient, RateLimit, RateLimitError, RateLimitState
from fanfare_async._ratelimit import RateLimiter
from fanfare_async.testing import Fault, MockFanfareServer

from .helpers import client_for


class Clocks:
    """Hand-moved monotonic and wall clocks."""

    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def limiter(limit: RateLimit | None, clocks: Clocks) -> RateLimiter:
    return RateLimiter(limit, monotonic=lambda: clocks.mono, wall=lambda: clocks.wall)


def test_rate_limit_validation() -> None:
    """RateLimit rejects nonsense; burst defaults to requests."""
    assert RateLimit(1000).capacity == 1000
    assert RateLimit(10, 1.0, burst=3).capacity == 3
    assert RateLimit(600, 60).rate == 10
    for bad in ({"requests": 0}, {"requests": 5, "period": 0}, {"requests": 5, "burst": 0}):
        with pytest.raises((ValueError, TypeError)):
            RateLimit(**bad)


def test_bucket_allows_a_burst_then_paces() -> None:
    """A full bucket lets `burst` requests through at once, then one per 1/rate seconds."""
    clocks = Clocks()
    bucket = limiter(RateLimit(10, 1.0, burst=3), clocks)
    assert [bucket._try_take(clocks.mono) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket._try_take(clocks.mono) == pytest.approx(0.1)
    clocks.advance(0.1)
    assert bucket._try_take(clocks.mono) == 0.0
    clocks.advance(10)  # refills, but never above the burst
    assert [bucket._try_take(clocks.mono) for _ in range(4)][-1] == pytest.approx(0.1)


def test_no_bucket_means_no_pacing() -> None:
    """rate_limit=None never delays on its own."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    assert all(bucket._try_take(clocks.mono) == 0.0 for _ in range(10_000))


def test_remaining_zero_pauses_until_reset() -> None:
    """X-RateLimit-Remaining: 0 holds the client until X-RateLimit-Reset."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    headers = {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(clocks.wall + 12.5),
    }
    bucket.observe(0, 200, headers, None)
    assert bucket.state == RateLimitState(
        limit=1000, remaining=0, reset=clocks.wall + 12.5, paused_until=clocks.wall + 12.5
    )
    assert bucket._try_take(clocks.mono) == pytest.approx(12.5)
    clocks.advance(12.5)
    assert bucket._try_take(clocks.mono) == 0.0
    assert bucket.state.paused_until is None


def test_429_pauses_for_retry_after() -> None:
    """A 429 holds every new request for its Retry-After, even without rate headers."""
    clocks = Clocks()
    bucket = limiter(RateLimit(1000), clocks)
    bucket.observe(0, 429, {}, 30.0)
    assert bucket._try_take(clocks.mono) == pytest.approx(30.0)
    assert bucket.state.paused_until == pytest.approx(clocks.wall + 30)


def test_429_without_retry_after_uses_reset() -> None:
    """A 429 with only X-RateLimit-Reset pauses until the reset."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    bucket.observe(0, 429, {"X-RateLimit-Reset": str(int(clocks.wall) + 7)}, None)
    assert bucket._try_take(clocks.mono) == pytest.approx(7.0)


def test_small_reset_is_a_delta_and_junk_is_ignored() -> None:
    """A reset below 10^9 is read as seconds from now; unparsable headers change nothing."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    bucket.observe(0, 200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5"}, None)
    assert bucket._try_take(clocks.mono) == pytest.approx(5.0)
    other = limiter(None, clocks)
    other.observe(0, 200, {"X-RateLimit-Remaining": "zero", "X-RateLimit-Reset": "soon"}, None)
    assert other.state == RateLimitState()
    assert other._try_take(clocks.mono) == 0.0


def test_pauses_never_shrink() -> None:
    """A shorter pause does not cut a longer one short."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    bucket.pause(10)
    bucket.pause(2)
    assert bucket._try_take(clocks.mono) == pytest.approx(10)


@pytest.mark.anyio
async def test_matching_limits_give_zero_429s() -> None:
    """With the client's bucket at the server's limit, the server never answers 429."""
    async with (
        MockFanfareServer(groups=60, rate_limit=20, rate_period=0.5) as server,
        FanfareClient(
            server.secret_key, base_url=server.url, rate_limit=RateLimit(20, 0.5)
        ) as client,
    ):
        results = await client.get_many_group_audiences(server.group_ids, concurrency=16)
        state = client.rate_limit_state
    assert all(isinstance(r, list) for r in results.values())
    assert server.rate_limited == 0
    assert server.total_requests == 60
    assert state.limit == 20
    assert state.remaining is not None


@pytest.mark.anyio
async def test_no_request_between_a_429_and_its_reset() -> None:
    """After a burst meets 429s, nothing more is sent until the window resets.

    Any request sent into the exhausted window would itself be answered 429, so
    the only 429s are those of the burst that was already in flight.
    """
    async with MockFanfareServer(groups=20, rate_limit=6, rate_period=1.0) as server:
        server.pause()
        async with client_for(server, max_retries=5) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.get_many_group_audiences, server.group_ids[:10])
                await server.wait_for_requests(10)  # all ten in flight at once
                server.resume()
            state = client.rate_limit_state
    burst, later = server.requests[:10], server.requests[10:]
    assert sum(r.status == 429 for r in burst) == 4
    assert server.rate_limited == 4
    assert len(later) == 4
    assert all(r.status == 200 for r in later)
    assert state.limit == 6


@pytest.mark.anyio
async def test_remaining_zero_holds_other_tasks(server: MockFanfareServer) -> None:
    """A response saying Remaining: 0 delays the next request until the reset."""
    group_a, group_b = server.group_ids[:2]
    reset = time.time() + 0.4
    server.inject(
        Fault(
            status=200,
            kind="status",
            body=server.body_for(group_a),
            headers={
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{reset:.3f}",
            },
        ),
        group_id=group_a,
    )
    async with client_for(server) as client:
        await client.get_group_audiences(group_a)
        assert client.rate_limit_state.remaining == 0
        await client.get_group_audiences(group_b)
    _, second = server.requests
    assert second.time >= reset - 0.01


@pytest.mark.anyio
async def test_429_pause_applies_to_the_next_caller(server: MockFanfareServer) -> None:
    """A 429 seen by one call makes a different call wait out its Retry-After."""
    group_a, group_b = server.group_ids[:2]
    server.inject(Fault.error(429, retry_after=0.4), group_id=group_a)
    async with client_for(server, max_retries=0) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_group_audiences(group_a)
        assert info.value.retry_after == pytest.approx(0.4)
        assert client.rate_limit_state.paused_until is not None
        await client.get_group_audiences(group_b)
    first, second = server.requests
    assert second.time - first.time >= 0.39


@pytest.mark.anyio
async def test_pause_longer_than_cap_fails_fast(server: MockFanfareServer) -> None:
    """When the client is held longer than max_retry_wait, new calls fail at once."""
    group_a, group_b = server.group_ids[:2]
    server.inject(Fault.error(429, retry_after=30), group_id=group_a)
    async with client_for(server, max_retries=0, max_retry_wait=60) as client:
        with pytest.raises(RateLimitError):
            await client.get_group_audiences(group_a)
    async with client_for(server, max_retries=0, max_retry_wait=5) as client:
        client._limiter.pause(30)
        with pytest.raises(RateLimitError) as info:
            await client.get_group_audiences(group_b)
        assert info.value.retry_after is not None
        assert info.value.retry_after > 5
    assert server.request_count(group_b) == 0


def test_latest_remaining_counts_requests_sent_since_and_still_out() -> None:
    """Remaining: 3 while two other requests are in flight allows one more before the
    reset; the count starts again from each response."""
    clocks = Clocks()
    bucket = limiter(None, clocks)
    for _ in range(3):
        assert bucket._try_take(clocks.mono) == 0.0
    headers = {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": str(clocks.wall + 4)}
    bucket.observe(1, 200, headers, None)  # one of the three answered; two still out
    bucket.release()
    assert bucket._try_take(clocks.mono) == 0.0
    assert bucket._try_take(clocks.mono) == pytest.approx(4.0)
    clocks.advance(4)
    assert bucket._try_take(clocks.mono) == 0.0  # a new window: no budget known yet
