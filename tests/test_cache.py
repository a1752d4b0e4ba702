"""The cache over real HTTP: expiry, single-flight, negative and stale entries, isolation."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from fanfare_async import (
    Audience,
    FanfareClient,
    FanfareClientClosedError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    TransportError,
    decode_group_audiences,
)
from fanfare_async._cache import Entry, GroupCache
from fanfare_async._config import CacheConfig
from fanfare_async._models import decode_audience_tuple
from fanfare_async.testing import Fault, MockFanfareServer

pytestmark = pytest.mark.anyio

T0 = 1_767_268_800.0  # 2026-01-01T12:00:00Z


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def audience_json(
    index: int, interval: float | None, last_refreshed: str | None = None
) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{index:012d}",
        "name": f"audience {index}",
        "archived": False,
        "createdAt": "2025-01-01T00:00:00Z",
        "createdBy": "user",
        "organizationId": "00000000-0000-4000-8000-000000000001",
        "imports": [],
        "rules": [],
        "type": "DYNAMIC",
        "refreshIntervalSeconds": interval,
        "lastRefreshedAt": last_refreshed,
    }


def iso(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def rfc3339(timestamp: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@asynccontextmanager
async def cached_client(
    server: MockFanfareServer, clock: FakeClock, **options: Any
) -> AsyncIterator[FanfareClient]:
    options.setdefault("rate_limit", None)
    options.setdefault("max_retries", 0)
    async with FanfareClient(
        server.secret_key, base_url=server.url, clock=clock, **options
    ) as client:
        yield client


async def test_hits_make_no_request_and_decode_at_most_once(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """Later lookups are served from memory with no request; the first hit decodes what
    was kept once, and every hit after it returns those same Audience objects."""
    group = server.group_ids[0]
    async with cached_client(server, clock) as client:
        first = await client.get_group_audiences(group)
        second = await client.get_group_audiences(group)
        third = await client.get_group_audiences(group)
        stats = client.cache_stats
    assert server.request_count(group) == 1
    assert first == second == third
    assert all(a is b for a, b in zip(second, third, strict=True))
    assert (stats.hits, stats.misses, stats.size) == (2, 1, 1)


async def test_each_call_gets_its_own_list(server: MockFanfareServer, clock: FakeClock) -> None:
    """Mutating a returned list never changes what the cache or another caller sees."""
    group = server.group_ids[0]
    async with cached_client(server, clock) as client:
        mine = await client.get_group_audiences(group)
        expected = list(mine)
        mine.clear()
        theirs = await client.get_group_audiences(group)
        assert theirs == expected
        theirs.append(theirs[0])
        assert await client.get_group_audiences(group) == expected
        with pytest.raises(AttributeError):
            theirs[0].name = "hijacked"  # type: ignore[misc]
        assert (await client.get_group_audiences(group))[0].name == expected[0].name


async def test_uuid_spellings_share_one_entry(server: MockFanfareServer, clock: FakeClock) -> None:
    """Upper- and lower-case spellings of a UUID are one cache key."""
    group = server.group_ids[0]
    async with cached_client(server, clock) as client:
        await client.get_group_audiences(group.upper())
        await client.get_group_audiences(group)
        assert client.cache_stats.hits == 1
    assert server.total_requests == 1


async def test_entry_expires_after_smallest_interval(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """With no lastRefreshedAt, the TTL is the smallest refreshIntervalSeconds."""
    server.set_group("g", [audience_json(1, 300), audience_json(2, 120.5), audience_json(3, None)])
    async with cached_client(server, clock) as client:
        await client.get_group_audiences("g")
        clock.advance(120.4)
        await client.get_group_audiences("g")
        assert server.request_count("g") == 1
        clock.advance(0.2)
        await client.get_group_audiences("g")
        assert server.request_count("g") == 2
        assert client.cache_stats.expirations == 1


async def test_default_ttl_for_empty_group(server: MockFanfareServer, clock: FakeClock) -> None:
    """An empty group lives default_ttl seconds."""
    server.set_group("empty", [])
    async with cached_client(server, clock, default_ttl=30) as client:
        assert await client.get_group_audiences("empty") == []
        clock.advance(29.9)
        await client.get_group_audiences("empty")
        clock.advance(0.2)
        await client.get_group_audiences("empty")
    assert server.request_count("empty") == 2


async def test_expiry_uses_server_date_header(clock: FakeClock) -> None:
    """lastRefreshedAt + interval is measured against the response's Date, not local time."""
    async with MockFanfareServer(groups=1, clock=lambda: T0) as server:
        # Server time T0; refreshed 100 s before it; interval 300 -> 200 s left.
        server.set_group("g", [audience_json(1, 300, rfc3339(T0 - 100))])
        async with cached_client(server, clock) as client:
            await client.get_group_audiences("g")
            clock.advance(199.5)
            await client.get_group_audiences("g")
            assert server.request_count("g") == 1
            clock.advance(1.0)
            await client.get_group_audiences("g")
            assert server.request_count("g") == 2


@pytest.mark.parametrize("date_header", [False, "not a date", "Tue, 99 Foo 2026 99:99:99 GMT"])
async def test_missing_or_malformed_date_falls_back_to_local_clock(
    clock: FakeClock, date_header: bool | str
) -> None:
    """Without a usable Date header, local wall time stands in for server time."""
    import time

    async with MockFanfareServer(groups=1, date_header=date_header) as server:
        server.set_group("g", [audience_json(1, 300, rfc3339(time.time() - 100))])
        async with cached_client(server, clock) as client:
            await client.get_group_audiences("g")
            clock.advance(190)  # ~200 s were left when it arrived
            await client.get_group_audiences("g")
            assert server.request_count("g") == 1
            clock.advance(15)
            await client.get_group_audiences("g")
            assert server.request_count("g") == 2


async def test_wall_clock_jumps_do_not_affect_expiry(
    server: MockFanfareServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expiry runs on the monotonic clock: wall time jumping either way changes nothing."""
    import time

    real_time = time.time
    server.set_group("g", [audience_json(1, 300)])
    async with cached_client(server, clock) as client:
        await client.get_group_audiences("g")
        monkeypatch.setattr(time, "time", lambda: real_time() + 86_400)
        clock.advance(100)
        await client.get_group_audiences("g")  # not flushed by a jump forward
        monkeypatch.setattr(time, "time", lambda: real_time() - 86_400)
        clock.advance(201)
        monkeypatch.setattr(time, "time", real_time)
        await client.get_group_audiences("g")  # not kept by a jump backward
    assert server.request_count("g") == 2


async def test_min_and_max_ttl_clamp(server: MockFanfareServer, clock: FakeClock) -> None:
    """A huge interval is capped by max_ttl."""
    server.set_group("g", [audience_json(1, 100_000)])
    async with cached_client(server, clock, max_ttl=50) as client:
        await client.get_group_audiences("g")
        clock.advance(50.1)
        await client.get_group_audiences("g")
    assert server.request_count("g") == 2


# -- single-flight ------------------------------------------------------------


async def test_fifty_concurrent_callers_share_one_request(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """50 callers of an uncached group: one request, 49 coalesced, all get the result."""
    group = server.group_ids[0]
    results: list[list[Any]] = []
    server.pause()
    async with cached_client(server, clock) as client:

        async def call() -> None:
            results.append(await client.get_group_audiences(group))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
            await server.wait_for_requests(1)
            await wait_all_tasks_blocked()
            assert client.cache_stats.coalesced == 49
            server.resume()
        stats = client.cache_stats
    assert server.request_count(group) == 1
    assert len(results) == 50
    assert all(r == results[0] for r in results)
    assert len({id(r) for r in results}) == 50  # each caller its own list
    assert (stats.misses, stats.coalesced) == (1, 49)


async def test_cancelling_the_starter_does_not_cancel_the_others(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """The caller that triggered the fetch is cancelled; the joiner still gets the result."""
    group = server.group_ids[0]
    server.pause()
    async with cached_client(server, clock) as client:
        starter = asyncio.ensure_future(client.get_group_audiences(group))
        await server.wait_for_requests(1)
        joiner = asyncio.ensure_future(client.get_group_audiences(group))
        await wait_all_tasks_blocked()
        starter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starter
        server.resume()
        audiences = await joiner
        assert audiences
        await client.get_group_audiences(group)  # now cached
    assert server.request_count(group) == 1


async def test_last_waiter_cancelled_cancels_the_fetch(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """When every waiter is gone the fetch stops too: no task is left behind."""
    server.pause()
    async with cached_client(server, clock) as client:
        caller = asyncio.ensure_future(client.get_group_audiences(server.group_ids[0]))
        await server.wait_for_requests(1)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        for _ in range(3):
            await checkpoint()
        assert not client._flights._tasks
        assert not client._flights._flights
        server.resume()


async def test_error_reaches_every_waiter_and_is_not_cached(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """A failure is raised in all waiters, and the next call tries again."""
    group = server.group_ids[0]
    server.inject(500, group_id=group)
    server.pause()
    errors: list[BaseException] = []
    async with cached_client(server, clock) as client:

        async def call() -> None:
            try:
                await client.get_group_audiences(group)
            except ServerError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(call)
            await server.wait_for_requests(1)
            await wait_all_tasks_blocked()
            server.resume()
        assert len(errors) == 10
        assert await client.get_group_audiences(group)
        assert not client._flights._tasks
    assert server.request_count(group) == 2


# -- negative, stale, bypass, invalidation --------------------------------------


async def test_404_cached_for_negative_ttl(server: MockFanfareServer, clock: FakeClock) -> None:
    """With negative_ttl, a 404 is answered from memory until it expires."""
    async with cached_client(server, clock, negative_ttl=30) as client:
        for _ in range(3):
            with pytest.raises(NotFoundError) as info:
                await client.get_group_audiences("missing")
        assert info.value.status_code == 404
        assert server.request_count("missing") == 1
        clock.advance(30.1)
        with pytest.raises(NotFoundError):
            await client.get_group_audiences("missing")
    assert server.request_count("missing") == 2


async def test_404_not_cached_by_default(server: MockFanfareServer, clock: FakeClock) -> None:
    """negative_ttl defaults to 0: every lookup of a missing group asks again."""
    async with cached_client(server, clock) as client:
        for _ in range(2):
            with pytest.raises(NotFoundError):
                await client.get_group_audiences("missing")
    assert server.request_count("missing") == 2


@pytest.mark.parametrize("fault", [Fault.error(503), Fault.error(429), Fault.drop()])
async def test_stale_if_error_serves_expired_entry(
    server: MockFanfareServer, clock: FakeClock, fault: Fault
) -> None:
    """A transient failure inside the stale window returns the expired value."""
    server.set_group("g", [audience_json(1, 60)])
    async with cached_client(server, clock, stale_if_error=100) as client:
        fresh = await client.get_group_audiences("g")
        clock.advance(60 + 99)
        server.inject(fault, fault, group_id="g")
        assert await client.get_group_audiences("g") == fresh
        assert client.cache_stats.stale_served == 1


async def test_stale_if_error_window_and_kind(server: MockFanfareServer, clock: FakeClock) -> None:
    """Past the window, or for a non-transient error, the error is raised."""
    server.set_group("g", [audience_json(1, 60)])
    async with cached_client(server, clock, stale_if_error=100) as client:
        await client.get_group_audiences("g")
        clock.advance(61)
        server.inject(403, group_id="g")
        with pytest.raises(PermissionDeniedError):
            await client.get_group_audiences("g")
        clock.advance(100)
        server.inject(503, group_id="g")
        with pytest.raises(ServerError):
            await client.get_group_audiences("g")
        assert client.cache_stats.stale_served == 0


async def test_no_stale_serving_by_default(server: MockFanfareServer, clock: FakeClock) -> None:
    """stale_if_error defaults to 0: an expired entry is never served."""
    server.set_group("g", [audience_json(1, 60)])
    async with cached_client(server, clock) as client:
        await client.get_group_audiences("g")
        clock.advance(61)
        server.inject(Fault.drop(), Fault.drop(), group_id="g")
        with pytest.raises(TransportError):
            await client.get_group_audiences("g")


async def test_use_cache_false_bypasses_reads_but_stores(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """use_cache=False always asks the server, and what it gets is then cached."""
    group = server.group_ids[0]
    async with cached_client(server, clock) as client:
        await client.get_group_audiences(group, use_cache=False)
        await client.get_group_audiences(group, use_cache=False)
        assert server.request_count(group) == 2
        await client.get_group_audiences(group)
        assert server.request_count(group) == 2
        assert client.cache_stats.hits == 1


async def test_invalidate_and_clear(server: MockFanfareServer, clock: FakeClock) -> None:
    """invalidate drops one group, clear_cache all of them."""
    a, b = server.group_ids[:2]
    async with cached_client(server, clock) as client:
        await client.get_group_audiences(a)
        await client.get_group_audiences(b)
        await client.invalidate(a.upper())
        await client.get_group_audiences(a)
        await client.get_group_audiences(b)
        assert (server.request_count(a), server.request_count(b)) == (2, 1)
        await client.clear_cache()
        assert client.cache_stats.size == 0
        await client.get_group_audiences(a)
        await client.get_group_audiences(b)
    assert (server.request_count(a), server.request_count(b)) == (3, 2)


async def test_invalidate_during_fetch_keeps_old_answer_out(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """A fetch in flight when its group is invalidated does not store its answer."""
    group = server.group_ids[0]
    server.pause()
    async with cached_client(server, clock) as client:
        pending = asyncio.ensure_future(client.get_group_audiences(group))
        await server.wait_for_requests(1)
        await client.invalidate(group)
        server.resume()
        assert await pending
        await client.get_group_audiences(group)
    assert server.request_count(group) == 2


async def test_lru_eviction_at_maxsize(server: MockFanfareServer, clock: FakeClock) -> None:
    """The least recently used group goes first; a hit counts as a use."""
    a, b, c = server.group_ids[:3]
    async with cached_client(server, clock, cache_maxsize=2) as client:
        await client.get_group_audiences(a)
        await client.get_group_audiences(b)
        await client.get_group_audiences(a)  # a is now more recent than b
        await client.get_group_audiences(c)  # evicts b
        stats = client.cache_stats
        assert (stats.size, stats.evictions) == (2, 1)
        await client.get_group_audiences(a)
        assert server.request_count(a) == 1
        await client.get_group_audiences(b)
        assert server.request_count(b) == 2


async def test_lru_order_follows_latest_hits(server: MockFanfareServer, clock: FakeClock) -> None:
    """Hits in the order b, a make b the least recently used."""
    a, b, c = server.group_ids[:3]
    async with cached_client(server, clock, cache_maxsize=2) as client:
        await client.get_group_audiences(a)
        await client.get_group_audiences(b)
        await client.get_group_audiences(b)
        await client.get_group_audiences(a)
        await client.get_group_audiences(c)  # evicts b
        await client.get_group_audiences(a)
    assert (server.request_count(a), server.request_count(b)) == (1, 1)
    assert server.request_count(c) == 1


async def test_one_group_going_stale_leaves_the_others_fresh(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """Groups expire one by one, each at its own time; hits on the others go on."""
    for index, interval in enumerate((10, 20, 30)):
        server.set_group(f"g{index}", [audience_json(index, interval)])
    async with cached_client(server, clock) as client:
        for index in range(3):
            await client.get_group_audiences(f"g{index}")
        clock.advance(15)
        for index in (1, 2, 0):
            await client.get_group_audiences(f"g{index}")
        assert [server.request_count(f"g{i}") for i in range(3)] == [2, 1, 1]
        clock.advance(9)  # at 24 s g1 (20 s) is stale; g0, refetched at 15 s, is not
        for index in (2, 0, 1):
            await client.get_group_audiences(f"g{index}")
        stats = client.cache_stats
    assert [server.request_count(f"g{i}") for i in range(3)] == [2, 2, 1]
    assert (stats.hits, stats.misses, stats.expirations) == (4, 5, 2)


async def test_refreshed_group_is_fresh_until_its_new_deadline(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """A group stored again (use_cache=False) keeps its new deadline, not the old one."""
    server.set_group("g", [audience_json(1, 10)])
    async with cached_client(server, clock) as client:
        await client.get_group_audiences("g")
        clock.advance(8)
        await client.get_group_audiences("g", use_cache=False)  # fresh until 18
        clock.advance(5)  # 13: past the first deadline only
        await client.get_group_audiences("g")
        assert server.request_count("g") == 2
        clock.advance(5)  # 18
        await client.get_group_audiences("g")
    assert server.request_count("g") == 3


async def test_expired_groups_kept_for_stale_if_error_are_evicted_before_fresh_ones(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """A full cache drops a group kept only for stale_if_error before any fresh one."""
    server.set_group("short", [audience_json(1, 10)])
    server.set_group("long", [audience_json(2, 100)])
    server.set_group("new", [audience_json(3, 100)])
    async with cached_client(server, clock, cache_maxsize=2, stale_if_error=1000) as client:
        await client.get_group_audiences("long")  # the least recently used...
        await client.get_group_audiences("short")
        clock.advance(20)  # ...but "short" is expired, kept only in case of errors
        await client.get_group_audiences("new")
        stats = client.cache_stats
        assert (stats.size, stats.evictions) == (2, 1)
        await client.get_group_audiences("long")
    assert server.request_count("long") == 1


def _timeline_items(cache: GroupCache) -> int:
    return sum(len(shard) for shard in cache._timeline.shards)


def test_the_timeline_stays_bounded_when_a_group_is_stored_again_and_again() -> None:
    """Replacing one group many times does not pile up items in the timeline."""
    clock = FakeClock()
    cache = GroupCache(CacheConfig(maxsize=10), clock=clock)
    for _ in range(1000):
        cache.store("g", Entry((), clock() + 60))
        assert _timeline_items(cache) <= 2 * len(cache.entries) + 34
    assert cache.fresh_audiences("g", clock()) == ()
    clock.advance(60)
    assert cache.fresh_audiences("g", clock()) is None
    assert (cache.fresh, _timeline_items(cache), cache.horizon) == ({}, 0, float("inf"))


def test_entries_in_their_stale_window_stay_bounded_when_stored_again_and_again() -> None:
    """Replacing groups inside their stale window keeps the timeline bounded and counts
    each replaced expired entry once; a store drops what is past any use."""
    clock = FakeClock()
    cache = GroupCache(CacheConfig(maxsize=10, stale_if_error=5), clock=clock)
    for _ in range(1000):
        cache.store("g", Entry((), clock() + 1))
        clock.advance(2)  # expired, inside its stale window when replaced
        assert _timeline_items(cache) <= 2 * len(cache.entries) + 34
    assert cache.stats().expirations == 999
    clock.advance(65)
    cache.store("h", Entry((), clock() + 60))
    assert (list(cache.entries), cache.stats().expirations) == (["h"], 1000)
    assert list(cache.outside) == []


EXAMPLE_BODY = (Path(__file__).parent / "data" / "endpoint_example.json").read_bytes()


def test_a_group_is_kept_as_its_body_until_its_first_hit_decodes_it_once() -> None:
    """A stored body is what the cache keeps; the first hit decodes it and keeps the
    audiences, so later hits return the very same objects."""
    clock = FakeClock()
    cache = GroupCache(CacheConfig(maxsize=10), clock=clock)
    cache.store("g", Entry(EXAMPLE_BODY, clock() + 60))
    assert cache.fresh["g"] is EXAMPLE_BODY and cache.entries["g"].audiences is EXAMPLE_BODY
    first = cache.fresh_audiences("g", clock())
    assert first is not None and list(first) == decode_group_audiences(EXAMPLE_BODY)
    kept: list[object] = [cache.fresh["g"], cache.entries["g"].audiences]
    assert kept == [first, first] and all(value is first for value in kept)
    assert cache.fresh_audiences("g", clock()) is first
    assert cache.stats().hits == 2


async def test_the_inline_hit_path_decodes_a_kept_body_through_the_slow_path(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """The client's first hit of a group stored as its body returns its audiences (not
    the bytes) and counts one hit; the group is kept decoded from then on."""
    group = server.group_ids[0]
    async with cached_client(server, clock) as client:
        fetched = await client.get_group_audiences(group)
        assert type(client._cache.fresh[group]) is bytes
        hit = await client.get_group_audiences(group)
        assert hit == fetched and all(isinstance(a, Audience) for a in hit)
        assert type(client._cache.fresh[group]) is tuple
        assert client.cache_stats.hits == 1


def test_a_backlog_of_due_changes_never_serves_an_expired_group() -> None:
    """When more entries expire at once than one step handles, every lookup still sees
    exactly which are fresh, and the backlog clears over the following steps."""
    clock = FakeClock()
    cache = GroupCache(CacheConfig(maxsize=1000), clock=clock)
    for index in range(500):
        cache.store(f"old{index}", Entry(EXAMPLE_BODY, clock() + 10))
    cache.store("long", Entry(EXAMPLE_BODY, clock() + 100))
    clock.advance(10)
    for index in range(500):
        assert cache.fresh_audiences(f"old{index}", clock()) is None
        assert cache.fresh_audiences("long", clock()) is not None
    assert list(cache.entries) == ["long"] and cache.stats().expirations == 500


def test_one_step_does_a_bounded_amount_of_expiry_and_eviction() -> None:
    """A store into a full cache evicts a small batch (16 at most), and one step
    handles a bounded batch of due expiries, never the whole backlog at once."""
    clock = FakeClock()
    cache = GroupCache(CacheConfig(maxsize=2000), clock=clock)
    for index in range(2000):
        cache.store(f"g{index}", Entry(EXAMPLE_BODY, clock() + 60))
    cache.store("one-more", Entry(EXAMPLE_BODY, clock() + 60))
    assert cache.stats().evictions == 16 and len(cache.entries) == 2000 - 15
    assert "g0" not in cache.entries and "g15" not in cache.entries and "g16" in cache.entries
    clock.advance(60)
    cache.store("later", Entry(EXAMPLE_BODY, clock() + 60))
    assert 0 < cache.stats().expirations <= 64


def test_lru_order_holds_across_kept_bodies_and_decoded_groups() -> None:
    """A hit on a group kept as its body makes it the most recently used: a full cache
    evicts the group nobody read instead."""
    clock = FakeClock()
    cache = GroupCache(CacheConfig(maxsize=2), clock=clock)
    cache.store("read", Entry(EXAMPLE_BODY, clock() + 60))
    cache.store("unread", Entry(EXAMPLE_BODY, clock() + 60))
    assert cache.fresh_audiences("read", clock()) is not None
    cache.store("new", Entry(EXAMPLE_BODY, clock() + 60))
    assert sorted(cache.entries) == ["new", "read"]


def test_a_growing_cache_adds_no_object_for_the_garbage_collector() -> None:
    """The store keeps no per-entry object the GC tracks (cachetools' TLRUCache keeps one)."""
    clock = FakeClock()
    cache = GroupCache(CacheConfig(maxsize=10_000, stale_if_error=5), clock=clock)
    example = (Path(__file__).parent / "data" / "endpoint_example.json").read_bytes()
    audiences = decode_audience_tuple(example)
    for index in range(500):  # the heaps and dicts have grown once
        cache.store(f"g{index}", Entry(audiences, clock() + 60 + index % 7))
    gc.collect()
    before = len(gc.get_objects())
    for index in range(500, 3000):
        cache.store(f"g{index}", Entry(audiences, clock() + 60 + index % 7))
    gc.collect()
    assert cache.stats().size == 3000
    assert len(gc.get_objects()) - before < 100  # 2,500 more groups


def test_evicted_and_replaced_groups_are_freed_at_once() -> None:
    """Nothing the cache keeps for its read path holds on to a group it let go."""
    clock = FakeClock()
    cache = GroupCache(CacheConfig(maxsize=1), clock=clock)
    example = (Path(__file__).parent / "data" / "endpoint_example.json").read_bytes()
    first, second, third = (decode_audience_tuple(example) for _ in range(3))
    alone = sys.getrefcount(first)
    cache.store("a", Entry(first, clock() + 60))
    assert sys.getrefcount(first) > alone
    cache.store("a", Entry(second, clock() + 60))  # replaced
    assert sys.getrefcount(first) == alone
    cache.store("b", Entry(third, clock() + 60))  # evicts "a"
    assert cache.stats().evictions == 1
    assert sys.getrefcount(second) == alone


async def test_cached_404_takes_its_place_in_the_lru_order(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """A cached 404 that was just looked up again outlives a group unused since."""
    a, b = server.group_ids[:2]
    async with cached_client(server, clock, cache_maxsize=2, negative_ttl=60) as client:
        with pytest.raises(NotFoundError):
            await client.get_group_audiences("missing")
        await client.get_group_audiences(a)
        with pytest.raises(NotFoundError):
            await client.get_group_audiences("missing")  # a hit: now the more recent
        await client.get_group_audiences(b)  # evicts a
        with pytest.raises(NotFoundError):
            await client.get_group_audiences("missing")
        await client.get_group_audiences(a)
        stats = client.cache_stats
    assert (server.request_count("missing"), server.request_count(a)) == (1, 2)
    assert (stats.hits, stats.evictions) == (2, 2)


async def test_cache_maxsize_zero_disables_caching(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """cache_maxsize=0 means every lookup asks the server."""
    async with cached_client(server, clock, cache_maxsize=0) as client:
        await client.get_group_audiences(server.group_ids[0])
        await client.get_group_audiences(server.group_ids[0])
        assert client.cache_stats.size == 0
    assert server.total_requests == 2


async def test_closed_client_does_not_serve_hits(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """After aclose() even a cached group raises FanfareClientClosedError."""
    client = FanfareClient(server.secret_key, base_url=server.url, clock=clock)
    await client.get_group_audiences(server.group_ids[0])
    await client.aclose()
    with pytest.raises(FanfareClientClosedError):
        await client.get_group_audiences(server.group_ids[0])


async def test_full_cache_evicts_least_recently_used_batch(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """At maxsize 32 a full cache drops its two least recently used groups to make room."""
    ids = server.group_ids[:33]
    async with cached_client(server, clock, cache_maxsize=32) as client:
        await client.get_many_group_audiences(ids[:32], concurrency=1)
        for group in ids[:10]:
            await client.get_group_audiences(group)  # now the most recently used
        await client.get_group_audiences(ids[32])
        stats = client.cache_stats
        assert (stats.size, stats.evictions, stats.hits) == (31, 2, 10)
        for group in ids[:10] + ids[12:]:
            await client.get_group_audiences(group)
        assert server.total_requests == 33
        await client.get_group_audiences(ids[10])
        await client.get_group_audiences(ids[11])
    assert server.total_requests == 35


async def test_zero_ttl_answer_evicts_nothing(server: MockFanfareServer, clock: FakeClock) -> None:
    """A group that is stale on arrival is not kept, and does not push anything out."""
    a, b = server.group_ids[:2]
    server.set_group("empty", [])
    async with cached_client(server, clock, cache_maxsize=2, default_ttl=0, min_ttl=0) as client:
        await client.get_group_audiences(a)
        await client.get_group_audiences(b)
        assert await client.get_group_audiences("empty") == []
        stats = client.cache_stats
        assert (stats.size, stats.evictions) == (2, 0)
        await client.get_group_audiences(a)
        await client.get_group_audiences(b)
    assert (server.request_count(a), server.request_count(b)) == (1, 1)


async def test_full_cache_drops_expired_groups_before_evicting(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """When the cache is full of expired groups, a new one replaces them: no LRU eviction."""
    ids = server.group_ids[:5]
    async with cached_client(server, clock, cache_maxsize=4, default_ttl=10) as client:
        for group in ids[:4]:
            server.set_group(group, [])
            await client.get_group_audiences(group)
        clock.advance(11)
        server.set_group(ids[4], [])
        await client.get_group_audiences(ids[4])
        stats = client.cache_stats
        assert (stats.size, stats.evictions, stats.expirations) == (1, 0, 4)


async def test_cache_entries_are_not_tracked_by_gc(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """Entries add nothing to a garbage collection; a cached 404 keeps no traceback."""
    async with cached_client(server, clock, negative_ttl=30) as client:
        await client.get_group_audiences(server.group_ids[0])
        with pytest.raises(NotFoundError) as raised:
            await client.get_group_audiences("missing")
        cache = client._cache
        entries = list(cache.entries.values())
        assert len(entries) == 2
        assert not any(gc.is_tracked(entry) for entry in entries)
        kept = cache.entries["missing"].not_found
        assert kept is not None and kept.__traceback__ is None
        assert raised.value.__traceback__ is not None  # the caller's error keeps its own
        assert kept.status_code == raised.value.status_code == 404


async def test_groups_read_again_hold_each_string_once(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """A group kept decoded (read again) holds one copy of each recurring string value
    (organization, group, audience and user ids, rule fields and values), shared within
    the group and with the other groups kept, while what a caller got from the lookup
    that fetched it keeps the decoder's own copies."""
    first, second = server.group_ids[:2]
    async with cached_client(server, clock) as client:
        fetched = await client.get_group_audiences(first)
        await client.get_group_audiences(second)
        kept = await client.get_group_audiences(first)  # the first hit decodes
        other = await client.get_group_audiences(second)
    assert kept == fetched

    def strings(audiences: list[Audience]) -> list[str]:
        found: list[str] = []
        for audience in audiences:
            found += [audience.id, audience.organization_id, audience.created_by]
            found += [audience.group_id or "", audience.updated_by or ""]
            for rule in audience.rules:
                found += [rule.field, rule.audience_id or "", rule.organization_id or ""]
                found += [v for v in rule.values if type(v) is str]
            for item in audience.imports:
                found += [item.audience_id or "", item.organization_id or ""]
                found += [item.created_by or "", item.updated_by or ""]
            source = audience.primary_sync_source
            if source is not None:
                found += [source.organization_id or "", source.created_by or ""]
        return [value for value in found if value]

    def copies(values: list[str]) -> int:
        return len({id(value) for value in values}) - len(set(values))

    assert copies(strings(fetched)) > 0, "the test double's group repeats values"
    assert copies(strings(kept)) == 0
    assert copies(strings(kept) + strings(other)) == 0
    organizations = {a.organization_id for a in kept} & {a.organization_id for a in other}
    assert organizations, "the two groups share an organization"


async def test_cached_groups_do_not_keep_their_response_body(
    server: MockFanfareServer, clock: FakeClock
) -> None:
    """A group not read since it arrived is kept as its body and nothing else; once read,
    its free-form JSON is copied out of the body (a raw view of the body would keep all
    of it alive), while a group that is only decoded still points into it."""
    group = server.group_ids[0]
    async with cached_client(server, clock) as client:
        await client.get_group_audiences(group)
        kept = client._cache.entries[group].audiences
        assert type(kept) is bytes and kept == server.body_for(group)
        [*audiences] = await client.get_group_audiences(group)  # the first hit decodes
        assert client._cache.entries[group].audiences == tuple(audiences)

    def raws(stored: Any) -> list[msgspec.Raw]:
        if isinstance(stored, msgspec.Raw):
            return [stored]
        values = stored.values() if isinstance(stored, dict) else stored or ()
        return [value for value in values if isinstance(value, msgspec.Raw)]

    def slot(struct: Any, name: str) -> Any:
        return msgspec.structs.astuple(struct)[struct.__struct_fields__.index(name)]

    def stored_raws(items: list[Any]) -> list[msgspec.Raw]:
        found: list[msgspec.Raw] = []
        for audience in items:
            found += raws(slot(audience, "metadata"))
            if audience.primary_sync_source is not None:
                found += raws(slot(audience.primary_sync_source, "source_data"))
            for item in audience.imports:
                for error in item.errors:
                    found += raws(slot(error, "issues"))
        return found

    cached = stored_raws(audiences)
    assert cached, "the test double's group has free-form JSON"
    assert all(raw.copy() is raw for raw in cached)  # copy() is a no-op unless a view
    decoded = decode_group_audiences(server.body_for(group))
    fresh = stored_raws(decoded)
    assert fresh and all(raw.copy() is not raw for raw in fresh)
    assert audiences == decoded  # the same JSON values, however they are kept
    assert [a.metadata for a in audiences] == [a.metadata for a in decoded]
    issues = [e.issues for a in audiences for i in a.imports for e in i.errors]
    assert issues == [e.issues for a in decoded for i in a.imports for e in i.errors]
    assert any(issues), "the test double's group has import issues"
    # Cached, each free-form field is one untracked object: nothing for a collection.
    free_form = [slot(e, "issues") for a in audiences for i in a.imports for e in i.errors]
    free_form += [slot(a, "metadata") for a in audiences]
    assert free_form and not any(gc.is_tracked(value) for value in free_form)
