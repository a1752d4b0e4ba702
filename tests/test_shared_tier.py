"""Many clients, one cache: FanfareClient(shared=RedisTier) against a real redis-server."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import redis.asyncio

from fanfare_async import FanfareClient, NotFoundError, ServerError
from fanfare_async.redis import RedisTier
from fanfare_async.testing import Fault, MockFanfareServer

from ._redis_server import RedisServer
from ._workers import child_env, run_workers, worker_command

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def tier_client(
    server: MockFanfareServer, tier: RedisTier, **options: Any
) -> AsyncIterator[FanfareClient]:
    options.setdefault("rate_limit", None)
    options.setdefault("max_retries", 0)
    async with FanfareClient(
        server.secret_key, base_url=server.url, shared=tier, **options
    ) as client:
        yield client


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    """Wait (bounded) for a condition that another process makes true (no event crosses
    processes, so this polls)."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)


async def value_keys(raw: redis.asyncio.Redis) -> list[bytes]:
    return [k async for k in raw.scan_iter(match=b"fanfare:*:v:*")]


async def test_a_second_client_is_served_by_the_tier(srv: RedisServer) -> None:
    """Two clients with their own in-process caches: the second lookup makes no request."""
    async with MockFanfareServer(groups=5) as server:
        group = server.group_ids[0]
        tier = RedisTier(srv.url)
        try:
            async with tier_client(server, tier) as first, tier_client(server, tier) as second:
                a = await first.get_group_audiences(group)
                b = await second.get_group_audiences(group)
                stats = second.cache_stats
                assert second.shared is tier
        finally:
            await tier.aclose()
    assert a == b
    assert server.request_count(group) == 1
    assert (stats.shared_hits, stats.shared_misses, stats.shared_errors) == (1, 0, 0)
    assert stats.misses == 1  # missed in-process, answered by the tier


async def test_stats_without_a_tier_are_zero() -> None:
    """cache_stats has the shared counters, 0 without a tier; client.shared is None."""
    async with (
        MockFanfareServer(groups=1) as server,
        FanfareClient(server.secret_key, base_url=server.url) as client,
    ):
        await client.get_group_audiences(server.group_ids[0])
        stats = client.cache_stats
        assert client.shared is None
    assert (stats.shared_hits, stats.shared_misses, stats.shared_errors) == (0, 0, 0)


async def test_a_later_reader_gets_what_is_left_of_the_ttl(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """The tier keeps a deadline: a client reading 55 s into a 60 s TTL keeps it 5 s."""
    async with MockFanfareServer(groups=1) as server:
        group = server.group_ids[0]
        tier = RedisTier(srv.url)
        try:
            async with tier_client(server, tier, min_ttl=60, max_ttl=60) as first:
                await first.get_group_audiences(group)
            (key,) = await value_keys(raw)
            await raw.pexpire(key, 5_000)  # as if 55 s had passed on Redis's clock
            async with tier_client(server, tier) as second:
                await second.get_group_audiences(group)
                left = second._cache.entries[group].expires - time.monotonic()
        finally:
            await tier.aclose()
    assert 4.0 < left <= 5.0
    assert server.request_count(group) == 1


async def test_a_cached_404_reaches_other_clients(srv: RedisServer) -> None:
    """With negative_ttl, one client's 404 answers the others without a request."""
    async with MockFanfareServer(groups=0) as server:
        tier = RedisTier(srv.url)
        try:
            async with tier_client(server, tier, negative_ttl=30) as first:
                with pytest.raises(NotFoundError):
                    await first.get_group_audiences("gone")
            async with tier_client(server, tier, negative_ttl=30) as second:
                with pytest.raises(NotFoundError) as info:
                    await second.get_group_audiences("gone")
        finally:
            await tier.aclose()
    assert server.request_count("gone") == 1
    assert info.value.status_code == 404


async def test_stale_if_error_across_processes(srv: RedisServer, raw: redis.asyncio.Redis) -> None:
    """A value past its TTL but in its grace serves a client whose own fetch fails."""
    async with MockFanfareServer(groups=1) as server:
        group = server.group_ids[0]
        tier = RedisTier(srv.url)
        try:
            async with tier_client(server, tier, stale_if_error=60) as first:
                expected = await first.get_group_audiences(group)
            (key,) = await value_keys(raw)
            await raw.pexpire(key, 30_000)  # expired 30 s ago, 30 s of grace left
            server.inject(Fault.error(500))
            async with tier_client(server, tier, stale_if_error=60) as second:
                got = await second.get_group_audiences(group)
                stats = second.cache_stats
            server.inject(Fault.error(500))
            async with tier_client(server, tier, stale_if_error=0) as strict:
                with pytest.raises(ServerError):
                    await strict.get_group_audiences(group)
        finally:
            await tier.aclose()
    assert got == expected
    assert stats.stale_served == 1


async def test_a_corrupt_value_is_a_miss(srv: RedisServer, raw: redis.asyncio.Redis) -> None:
    """A value that does not decode counts as a miss: the API answers, nothing fails."""
    async with MockFanfareServer(groups=1) as server:
        group = server.group_ids[0]
        tier = RedisTier(srv.url)
        try:
            async with tier_client(server, tier) as first:
                await first.get_group_audiences(group)
            (key,) = await value_keys(raw)
            await raw.set(key, b"\x93garbage", px=60_000)
            async with tier_client(server, tier) as second:
                audiences = await second.get_group_audiences(group)
        finally:
            await tier.aclose()
    assert audiences
    assert server.request_count(group) == 2


async def test_invalidate_and_clear_reach_every_client(srv: RedisServer) -> None:
    """invalidate() and clear_cache() on one client drop the group from the others
    promptly (well under a second), and from Redis."""
    async with MockFanfareServer(groups=3) as server:
        g1, g2, g3 = server.group_ids
        tiers = [RedisTier(srv.url), RedisTier(srv.url)]  # as two processes
        try:
            async with tier_client(server, tiers[0]) as a, tier_client(server, tiers[1]) as b:
                await tiers[0].connect()
                await tiers[1].connect()
                for group in (g1, g2, g3):
                    await a.get_group_audiences(group)
                    await b.get_group_audiences(group)
                assert b.cache_stats.size == 3
                started = time.monotonic()
                await a.invalidate(g1)
                await until(lambda: b.cache_stats.size == 2, within=1.0)
                invalidated_in = time.monotonic() - started
                await b.get_group_audiences(g1)  # neither in b nor in Redis: the API
                await a.clear_cache()
                await until(lambda: b.cache_stats.size == 0, within=1.0)
                await b.get_group_audiences(g2)
        finally:
            for tier in tiers:
                await tier.aclose()
    assert invalidated_in < 1.0
    assert server.request_count(g1) == 2
    assert server.request_count(g2) == 2


async def test_the_secret_key_is_nowhere_in_redis(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """Neither keys nor values nor channels carry the secret key (or its hint)."""
    async with MockFanfareServer(groups=10) as server:
        tier = RedisTier(srv.url)
        try:
            async with tier_client(server, tier, negative_ttl=30) as client:
                await client.get_many_group_audiences([*server.group_ids, "missing"])
                channels = await raw.pubsub_channels()
        finally:
            await tier.aclose()
        secret = server.secret_key.encode()
        keys = [k async for k in raw.scan_iter()]
        assert len(keys) >= 11
        for key in keys:
            assert secret not in key and secret[-4:] not in key
            values: list[Any] = (
                await raw.zrange(key, 0, -1)  # the budget's members: random ids
                if await raw.type(key) == b"zset"
                else [await raw.get(key)]
            )
            assert all(v is None or secret not in v for v in values)
        assert all(secret not in c for c in channels)


async def test_a_tier_that_fails_never_fails_a_lookup(srv: RedisServer) -> None:
    """Redis killed mid-run, then paused, then back: every lookup is answered, errors
    are counted, and the tier serves again by itself once Redis answers."""
    async with MockFanfareServer(groups=300) as server:
        ids = server.group_ids
        tier = RedisTier(srv.url)
        try:
            async with tier_client(server, tier, cache_maxsize=0) as client:
                first = await client.get_many_group_audiences(ids[:100], concurrency=16)
                srv.kill()
                started = time.monotonic()
                second = await client.get_many_group_audiences(ids[100:200], concurrency=16)
                killed_run = time.monotonic() - started
                await srv.restart()
                srv.pause()
                third = await client.get_many_group_audiences(ids[200:], concurrency=16)
                srv.resume()
                errors = client.cache_stats.shared_errors
                # Back by itself within 5 s: ids[:100] are in Redis no more (restart
                # lost them), so fetch one, then see a second client hit it.
                await until(lambda: tier.available, within=5.0)
                await client.get_group_audiences(ids[0])
                async with tier_client(server, tier) as other:
                    await other.get_group_audiences(ids[0])
                    back = other.cache_stats.shared_hits
        finally:
            await tier.aclose()
    for results in (first, second, third):
        assert all(isinstance(r, list) for r in results.values())
    assert errors >= 1
    assert killed_run < 5.0
    assert back == 1


async def test_without_the_extra_nothing_of_redis_is_imported() -> None:
    """Importing fanfare_async (and building a client) imports no redis module."""
    code = (
        "import sys, fanfare_async; "
        "fanfare_async.FanfareClient('sk_test_x'); "
        "assert not [m for m in sys.modules if m == 'redis' or m.startswith('redis.')]"
    )
    process = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert process.returncode == 0, process.stderr


def test_shared_must_be_a_tier() -> None:
    """Anything without attach() is a TypeError at construction."""
    with pytest.raises(TypeError, match="shared"):
        FanfareClient("sk_test_x", shared=object())  # type: ignore[arg-type]


# -- several processes -----------------------------------------------------------------------


async def test_four_processes_make_one_request_per_group(srv: RedisServer) -> None:
    """4 processes looking up the same 40 groups at the same moment: 40 API requests."""
    async with MockFanfareServer(groups=40, latency=0.02) as server:
        command = worker_command(srv.url, server, "--wait", *server.group_ids)
        outputs = await run_workers([command] * 4, within=30)
        total = server.total_requests
    assert all(o["ok"] == 40 and not o["failed"] for o in outputs)
    assert total == 40
    assert sum(o["stats"]["shared_hits"] for o in outputs) + 40 == 4 * 40


async def test_a_dead_holder_is_replaced_once_its_lease_runs_out(srv: RedisServer) -> None:
    """The process fetching a group is killed mid-fetch: another one gets the answer
    within lease + 1 s."""
    lease = 1.0
    async with MockFanfareServer(groups=1) as server:
        group = server.group_ids[0]
        server.pause()  # the holder's request hangs
        command = worker_command(srv.url, server, "--lease", str(lease), group)
        async with await anyio.open_process(command, env=child_env(), stdout=None) as holder:
            await server.wait_for_requests(1, timeout=30.0)
            holder.send_signal(signal.SIGKILL)
            await holder.wait()
        server.resume()
        tier = RedisTier(srv.url, lease=lease)
        try:
            async with tier_client(server, tier) as client:
                started = time.monotonic()
                audiences = await client.get_group_audiences(group)
                waited = time.monotonic() - started
        finally:
            await tier.aclose()
    assert audiences
    assert waited <= lease + 1.0
    assert server.request_count(group) == 2


# -- the command line ------------------------------------------------------------------------


async def test_bulk_with_redis_shares_the_cache_between_runs(srv: RedisServer) -> None:
    """Two `fanfare-async bulk --redis URL` runs over the same ids: the second one makes no
    API request; FANFARE_REDIS_URL does the same as --redis."""
    async with MockFanfareServer(groups=30) as server:
        env = child_env(FANFARE_SECRET_KEY=server.secret_key, FANFARE_BASE_URL=server.url)
        ids = "\n".join(server.group_ids).encode()
        command = [sys.executable, "-m", "fanfare_async", "bulk", "--no-progress", "-"]
        first = await anyio.run_process(
            [*command[:-1], "--redis", srv.url, "-"], input=ids, env=env
        )
        after_first = server.total_requests
        second = await anyio.run_process(
            command, input=ids, env={**env, "FANFARE_REDIS_URL": srv.url}
        )
    assert first.returncode == second.returncode == 0
    assert after_first == 30
    assert server.total_requests == 30
    assert len(second.stdout.splitlines()) == 30
    assert all(b'"ok":true' in line for line in second.stdout.splitlines())
