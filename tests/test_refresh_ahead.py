"""Refresh-ahead: a hot group is refreshed in the background before it expires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from fanfare_async import FanfareClient, NotFoundError, RateLimit
from fanfare_async.testing import Fault, MockFanfareServer

from .test_cache import FakeClock, audience_json

pytestmark = pytest.mark.anyio

GROUP = "hot-group"
TTL = 10.0  # every audience of GROUP refreshes every 10 s


@asynccontextmanager
async def refreshing(**options: Any) -> AsyncIterator[tuple[MockFanfareServer, FanfareClient]]:
    """The double with GROUP (TTL 10 s), and a client on a hand-moved clock."""
    clock = options.pop("clock")
    options.setdefault("rate_limit", None)
    options.setdefault("max_retries", 0)
    options.setdefault("refresh_ahead", 0.8)
    async with MockFanfareServer(groups=0) as server:
        server.set_group(GROUP, [audience_json(1, TTL)])
        async with FanfareClient(
            server.secret_key, base_url=server.url, clock=clock, **options
        ) as client:
            yield server, client


async def refresh_done(client: FanfareClient, key: str = GROUP) -> None:
    """Wait for the background refresh of ``key`` to end (its flight's own task)."""
    flight = client._flights._flights.get(key)
    if flight is not None and flight.task is not None:
        await asyncio.gather(flight.task, return_exceptions=True)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), True, "0.8"])
def test_refresh_ahead_outside_0_1_is_a_value_error(value: Any) -> None:
    """refresh_ahead must be a fraction in [0, 1)."""
    with pytest.raises(ValueError, match="refresh_ahead"):
        FanfareClient("sk_test_x", refresh_ahead=value)


async def test_a_hot_group_is_served_across_ttls_without_waiting() -> None:
    """Read every second for five TTLs: one miss, then only hits, refreshed in the
    background each time the entry passes 80 % of its TTL."""
    clock = FakeClock()
    async with refreshing(clock=clock) as (server, client):
        await client.get_group_audiences(GROUP)
        for _ in range(50):
            clock.advance(1.0)
            await client.get_group_audiences(GROUP)
            await refresh_done(client)
        stats = client.cache_stats
    assert stats.misses == 1
    assert stats.coalesced == 0  # nobody joined a load: nobody waited for the API
    assert stats.hits == 50
    assert stats.refreshes == server.request_count(GROUP) - 1 >= 5
    assert stats.refresh_errors == 0


async def test_one_refresh_for_many_concurrent_hits() -> None:
    """Fifty hits past the refresh point, with the server paused (no request could be
    answered), all return the cached group and start exactly one refresh."""
    clock = FakeClock()
    async with refreshing(clock=clock) as (server, client):
        await client.get_group_audiences(GROUP)
        clock.advance(TTL * 0.85)
        server.pause()  # the refresh cannot finish until resumed
        results = [await client.get_group_audiences(GROUP) for _ in range(50)]
        await server.wait_for_requests(2)
        server.resume()
        await refresh_done(client)
        stats = client.cache_stats
    assert len(results) == 50
    assert server.request_count(GROUP) == 2
    assert stats.refreshes == 1


async def test_a_caller_missing_during_a_refresh_joins_it() -> None:
    """Once the entry expires while its refresh is in flight, a caller joins that refresh."""
    clock = FakeClock()
    async with refreshing(clock=clock) as (server, client):
        await client.get_group_audiences(GROUP)
        clock.advance(TTL * 0.9)
        server.pause()
        await client.get_group_audiences(GROUP)  # starts the refresh
        clock.advance(TTL * 0.2)  # now expired
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get_group_audiences, GROUP)
            await server.wait_for_requests(2)
            server.resume()
        stats = client.cache_stats
    assert server.request_count(GROUP) == 2
    assert stats.coalesced == 1


async def test_a_failed_refresh_leaves_the_entry_as_it_was() -> None:
    """A refresh that fails is counted; the entry is still served until it expires."""
    clock = FakeClock()
    async with refreshing(clock=clock) as (server, client):
        first = await client.get_group_audiences(GROUP)
        clock.advance(TTL * 0.85)
        server.inject(Fault.error(500))
        assert await client.get_group_audiences(GROUP) == first
        await refresh_done(client)
        clock.advance(TTL * 0.1)  # still fresh
        assert await client.get_group_audiences(GROUP) == first
        stats = client.cache_stats
    assert stats.refresh_errors >= 1
    assert stats.refreshes == 0


async def test_stale_if_error_applies_after_a_failed_refresh() -> None:
    """After a failed refresh the entry expires on time, then stale_if_error serves it."""
    clock = FakeClock()
    async with refreshing(clock=clock, stale_if_error=30.0) as (server, client):
        first = await client.get_group_audiences(GROUP)
        clock.advance(TTL * 0.85)
        server.inject(Fault.error(503), Fault.error(503))
        await client.get_group_audiences(GROUP)
        await refresh_done(client)
        clock.advance(TTL * 0.2)  # expired
        assert await client.get_group_audiences(GROUP) == first
        stats = client.cache_stats
    assert stats.stale_served == 1


async def test_a_cold_group_is_not_refreshed() -> None:
    """Without a hit past the refresh point nothing is refreshed; it just expires."""
    clock = FakeClock()
    async with refreshing(clock=clock) as (server, client):
        await client.get_group_audiences(GROUP)
        clock.advance(TTL * 0.9)
        with pytest.raises(NotFoundError):
            await client.get_group_audiences("another")  # another key
        clock.advance(TTL * 0.2)
        assert server.request_count(GROUP) == 1
        await client.get_group_audiences(GROUP)
        stats = client.cache_stats
    assert server.request_count(GROUP) == 2
    assert stats.refreshes == 0


async def test_off_by_default() -> None:
    """refresh_ahead=0 (the default) never refreshes ahead."""
    clock = FakeClock()
    async with refreshing(clock=clock, refresh_ahead=0.0) as (server, client):
        await client.get_group_audiences(GROUP)
        clock.advance(TTL * 0.95)
        await client.get_group_audiences(GROUP)
        assert client._flights._flights == {}
    assert server.request_count(GROUP) == 1


async def test_aclose_cancels_a_refresh_in_flight() -> None:
    """Closing the client while a refresh waits on the server ends it, with no warning."""
    clock = FakeClock()
    async with refreshing(clock=clock) as (server, client):
        await client.get_group_audiences(GROUP)
        clock.advance(TTL * 0.85)
        server.pause()
        await client.get_group_audiences(GROUP)
        await server.wait_for_requests(2)
        await client.aclose()
        assert client._flights._tasks == set()
        assert client._refreshing == 0  # counted down when its task ended
        server.resume()
    assert client.cache_stats.refreshes == 0


async def test_refreshes_wait_for_the_rate_limit() -> None:
    """A refresh draws from the same bucket as foreground lookups."""
    clock = FakeClock()
    limit = RateLimit(4, period=1.0, burst=1)
    async with refreshing(clock=clock, rate_limit=limit) as (server, client):
        await client.get_group_audiences(GROUP)  # spends the only token
        clock.advance(TTL * 0.85)
        await client.get_group_audiences(GROUP)
        await refresh_done(client)
        waited = client.rate_limit_wait_seconds
        stats = client.cache_stats
    assert stats.refreshes == 1
    assert waited > 0
    assert server.request_count(GROUP) == 2


async def test_with_a_shared_tier_one_process_refreshes_for_all() -> None:
    """Two clients on two tiers (two processes) whose entries come due together: one
    refresh request in all; the other picks the new value up from Redis."""
    import redis.asyncio

    from fanfare_async.redis import RedisTier

    from ._redis_server import redis_server

    clocks = [FakeClock(), FakeClock()]
    async with redis_server() as srv, MockFanfareServer(groups=0) as server:
        server.set_group(GROUP, [audience_json(1, TTL)])
        tiers = [RedisTier(srv.url), RedisTier(srv.url)]
        try:
            async with (
                FanfareClient(
                    server.secret_key,
                    base_url=server.url,
                    clock=clocks[0],
                    shared=tiers[0],
                    rate_limit=None,
                    refresh_ahead=0.8,
                ) as a,
                FanfareClient(
                    server.secret_key,
                    base_url=server.url,
                    clock=clocks[1],
                    shared=tiers[1],
                    rate_limit=None,
                    refresh_ahead=0.8,
                ) as b,
            ):
                for tier in tiers:
                    assert await tier.connect()
                await a.get_group_audiences(GROUP)
                await b.get_group_audiences(GROUP)  # from Redis
                assert server.request_count(GROUP) == 1
                for clock in clocks:
                    clock.advance(TTL * 0.85)
                raw = redis.asyncio.Redis.from_url(srv.url)
                try:  # Redis's clock moves on too: 1.4 s of the value are left, and
                    # the fill's short-lived marker in the lease key is long gone
                    (key,) = [k async for k in raw.scan_iter(match=b"fanfare:*:v:*")]
                    await raw.pexpire(key, 1400)
                    leases = [k async for k in raw.scan_iter(match=b"fanfare:*:l:*")]
                    if leases:
                        await raw.delete(*leases)
                finally:
                    await raw.aclose()
                server.pause()
                await a.get_group_audiences(GROUP)  # both start a refresh, at once
                await b.get_group_audiences(GROUP)
                await server.wait_for_requests(2)
                server.resume()
                await refresh_done(a)
                await refresh_done(b)
                stats = [a.cache_stats, b.cache_stats]
        finally:
            for tier in tiers:
                await tier.aclose()
    assert server.request_count(GROUP) == 2
    assert [s.refreshes for s in stats] == [1, 1]
    assert sum(s.shared_hits for s in stats) == 2  # b's first lookup, and one refresh


async def test_a_refresh_waits_behind_foreground_lookups() -> None:
    """Foreground lookups already waiting at the rate limiter go before a refresh."""
    clock = FakeClock()
    limit = RateLimit(4, period=1.0, burst=1)  # a token every 250 ms
    async with refreshing(clock=clock, rate_limit=limit) as (server, client):
        server.set_group("one", [audience_json(2, TTL)])
        server.set_group("two", [audience_json(3, TTL)])
        await client.get_group_audiences(GROUP)  # spends the only token
        clock.advance(TTL * 0.85)
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get_group_audiences, "one")  # waits for a token
            await anyio.wait_all_tasks_blocked()
            await client.get_group_audiences(GROUP)  # due: starts a refresh
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(client.get_group_audiences, "two")  # arrives after the refresh
        await refresh_done(client)
        order = [r.group_id for r in server.requests]
    assert order == [GROUP, "one", "two", GROUP]
    assert client.cache_stats.refreshes == 1
