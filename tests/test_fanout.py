"""Bulk fan-out over real HTTP: per-id results, order, bounds, early exit, cancellation."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from anyio.lowlevel import checkpoint

from fanfare_async import (
    FanfareClient,
    FanfareClientClosedError,
    InvalidGroupIdError,
    NotFoundError,
    ServerError,
    decode_group_audiences,
)
from fanfare_async.testing import Fault, MockFanfareServer

from .helpers import client_for

pytestmark = pytest.mark.anyio


async def settle() -> None:
    """Let cancelled tasks run their cleanup (a few scheduler passes)."""
    for _ in range(5):
        await checkpoint()


async def test_get_many_maps_every_distinct_id(server: MockFanfareServer) -> None:
    """Each distinct id, as given and in first-seen order, maps to audiences or its error."""
    a, b, c = server.group_ids[:3]
    server.inject(500, group_id=c)
    ids = [b, "missing", a, "", b, c, a.upper()]
    async with client_for(server, max_retries=0) as client:
        results = await client.get_many_group_audiences(ids)
    assert list(results) == [b, "missing", a, "", c, a.upper()]
    assert results[a] == decode_group_audiences(server.body_for(a))
    assert results[a.upper()] == results[a]
    assert isinstance(results["missing"], NotFoundError)
    assert isinstance(results[""], InvalidGroupIdError)
    assert isinstance(results[c], ServerError)
    assert server.request_count(b) == 1
    assert server.request_count(a) == 1  # two spellings, one request


async def test_get_many_accepts_uuid_objects_and_bad_types(server: MockFanfareServer) -> None:
    """UUID objects key by their string; a non-str id gets an InvalidGroupIdError value."""
    import uuid

    group = server.group_ids[0]
    async with client_for(server) as client:
        results = await client.get_many_group_audiences([uuid.UUID(group), 42])  # type: ignore[list-item]
    assert list(results) == [group, 42]
    assert isinstance(results[group], list)
    assert isinstance(results[42], InvalidGroupIdError)  # type: ignore[index]


async def test_iter_yields_in_completion_order(server: MockFanfareServer) -> None:
    """A slow group comes out after a fast one listed behind it."""
    slow, fast = server.group_ids[:2]
    server.inject(Fault.delayed(0.3), group_id=slow)
    async with client_for(server) as client:
        order = [gid async for gid, _ in client.iter_group_audiences([slow, fast])]
    assert order == [fast, slow]


async def test_iter_answers_each_distinct_id_once(server: MockFanfareServer) -> None:
    """Duplicates in one call are fetched once and answered once."""
    ids = [server.group_ids[0], server.group_ids[1]] * 5
    async with client_for(server) as client:
        bulk = client.iter_group_audiences(ids)
        seen = [gid async for gid, _ in bulk]
    assert sorted(seen) == sorted(server.group_ids[:2])
    assert server.total_requests == 2
    assert bulk.progress.duplicates == 8


async def test_cache_hits_make_no_request(server: MockFanfareServer) -> None:
    """Groups already cached are answered without a request and counted as hits."""
    ids = server.group_ids[:10]
    async with client_for(server) as client:
        await client.get_many_group_audiences(ids[:6])
        bulk = client.iter_group_audiences(ids)
        results = {gid: r async for gid, r in bulk}
    assert len(results) == 10
    assert server.total_requests == 10
    assert bulk.progress.cache_hits == 6
    assert (bulk.progress.done, bulk.progress.total, bulk.progress.errors) == (10, 10, 0)


async def test_in_flight_lookups_are_bounded(server: MockFanfareServer) -> None:
    """No more than `concurrency` requests are ever in flight at the server."""
    server.latency = 0.01
    async with client_for(server, max_connections=32) as client:
        results = await client.get_many_group_audiences(server.group_ids, concurrency=7)
    assert len(results) == 50
    assert server.max_in_flight == 7


async def test_default_concurrency_is_max_connections(server: MockFanfareServer) -> None:
    """Without `concurrency`, max_connections bounds the fan-out."""
    server.latency = 0.01
    async with client_for(server, max_connections=5) as client:
        await client.get_many_group_audiences(server.group_ids)
    assert server.max_in_flight == 5


async def test_endless_input_is_read_lazily_and_break_stops_everything(
    server: MockFanfareServer,
) -> None:
    """An endless generator is pulled only as workers free up; break leaves nothing behind."""
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield server.group_ids[pulled % 50] if pulled % 3 else f"missing-{pulled}"

    async with client_for(server) as client:
        got = 0
        async for _ in client.iter_group_audiences(endless(), concurrency=4):
            got += 1
            if got == 40:
                break
        await settle()
        assert pulled <= 40 + 4 + 4 + 2
        assert not client._runners
        assert not client._flights._tasks
    assert server.in_flight == 0


async def test_async_iterable_input(server: MockFanfareServer) -> None:
    """An async iterable works as input too."""

    async def ids() -> AsyncIterator[str]:
        for gid in server.group_ids[:5]:
            await checkpoint()
            yield gid

    async with client_for(server) as client:
        results = await client.get_many_group_audiences(ids())
    assert list(results) == server.group_ids[:5]


async def test_exception_in_consumer_stops_workers(server: MockFanfareServer) -> None:
    """An exception raised in the loop body stops the run; no task survives it."""
    server.latency = 0.02
    async with client_for(server) as client:

        async def consume() -> None:
            async for _ in client.iter_group_audiences(server.group_ids, concurrency=4):
                raise RuntimeError("consumer failed")

        with pytest.raises(RuntimeError):
            await consume()
        gc.collect()
        await settle()
        assert not client._runners
        assert not client._flights._tasks
    assert server.total_requests < 50


async def test_cancelling_the_consumer_stops_workers(server: MockFanfareServer) -> None:
    """Cancelling the task that iterates cancels every worker."""
    server.pause()
    async with client_for(server) as client:

        async def consume() -> None:
            async for _ in client.iter_group_audiences(server.group_ids, concurrency=6):
                pass

        task = asyncio.ensure_future(consume())
        await server.wait_for_requests(6)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gc.collect()
        await settle()
        assert not client._runners
        assert not client._flights._tasks
        server.resume()
    assert server.total_requests == 6


async def test_cancel_scope_around_get_many(server: MockFanfareServer) -> None:
    """A timeout around get_many cancels it cleanly."""
    server.latency = 0.5
    async with client_for(server) as client:
        with anyio.move_on_after(0.1) as scope:
            await client.get_many_group_audiences(server.group_ids)
        assert scope.cancelled_caught
        await settle()
        assert not client._runners
        assert not client._flights._tasks


async def test_closed_client_refuses_bulk_at_once(server: MockFanfareServer) -> None:
    """Both bulk methods raise FanfareClientClosedError on a closed client, before iterating."""
    client = FanfareClient(server.secret_key, base_url=server.url)
    await client.aclose()
    with pytest.raises(FanfareClientClosedError):
        await client.get_many_group_audiences(server.group_ids)
    with pytest.raises(FanfareClientClosedError):
        client.iter_group_audiences(server.group_ids)


async def test_closing_during_bulk_ends_it_with_closed_error(server: MockFanfareServer) -> None:
    """aclose() while a bulk run is in flight ends it promptly with FanfareClientClosedError."""
    server.pause()
    client = FanfareClient(server.secret_key, base_url=server.url, rate_limit=None)
    outcome: list[BaseException] = []

    async def run() -> None:
        try:
            await client.get_many_group_audiences(server.group_ids, concurrency=3)
        except FanfareClientClosedError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await server.wait_for_requests(3)
        with anyio.fail_after(5):
            await client.aclose()
    server.resume()
    assert len(outcome) == 1


async def test_failing_input_iterable_surfaces_its_error(server: MockFanfareServer) -> None:
    """An exception from the input iterator reaches the consumer as itself."""

    def broken() -> Iterator[str]:
        yield server.group_ids[0]
        raise LookupError("input broke")

    async with client_for(server) as client:
        with pytest.raises(LookupError, match="input broke"):
            await client.get_many_group_audiences(broken())
        assert not client._flights._tasks


async def test_bad_arguments(server: MockFanfareServer) -> None:
    """A bare string is not a list of ids; concurrency must be a positive int."""
    async with client_for(server) as client:
        with pytest.raises(TypeError):
            await client.get_many_group_audiences("abc")
        with pytest.raises(ValueError, match="concurrency"):
            await client.get_many_group_audiences(["a"], concurrency=0)
    assert server.total_requests == 0


async def test_empty_input(server: MockFanfareServer) -> None:
    """No ids, no requests, an empty answer."""
    async with client_for(server) as client:
        assert await client.get_many_group_audiences([]) == {}
        assert [x async for x in client.iter_group_audiences(iter(()))] == []


async def test_a_caller_joins_a_bulk_runs_fetch(server: MockFanfareServer) -> None:
    """A bulk worker fetches a miss in its own task; a caller asking meanwhile shares it."""
    group = server.group_ids[0]
    server.pause()
    async with client_for(server) as client, client.iter_group_audiences([group]) as bulk:
        answer = asyncio.ensure_future(bulk.__anext__())
        await server.wait_for_requests(1)
        caller = asyncio.ensure_future(client.get_group_audiences(group))
        await settle()
        assert client.cache_stats.coalesced == 1
        server.resume()
        key, result = await answer
        assert (key, await caller) == (group, result)
    assert server.request_count(group) == 1


async def test_stopping_a_bulk_run_hands_its_fetch_to_callers_waiting_on_it(
    server: MockFanfareServer,
) -> None:
    """The bulk run stops while a caller waits on one of its fetches: the caller still
    gets the group (a fetch task takes over), and nothing is left running."""
    group = server.group_ids[0]
    expected = decode_group_audiences(server.body_for(group))
    server.pause()
    async with client_for(server) as client:
        bulk = client.iter_group_audiences([group])
        answer = asyncio.ensure_future(bulk.__anext__())
        await server.wait_for_requests(1)
        caller = asyncio.ensure_future(client.get_group_audiences(group))
        await settle()
        answer.cancel()
        await bulk.aclose()
        server.resume()
        assert await caller == expected
        await settle()
        assert not client._flights._tasks
        assert not client._flights._flights


async def test_closing_the_client_ends_callers_waiting_on_a_bulk_fetch(
    server: MockFanfareServer,
) -> None:
    """aclose() during a bulk fetch that a caller joined: both end with the closed error."""
    group = server.group_ids[0]
    server.pause()
    client = FanfareClient(server.secret_key, base_url=server.url, rate_limit=None)
    bulk = client.iter_group_audiences([group])
    answer = asyncio.ensure_future(bulk.__anext__())
    await server.wait_for_requests(1)
    caller = asyncio.ensure_future(client.get_group_audiences(group))
    await settle()
    with anyio.fail_after(5):
        await client.aclose()
    with pytest.raises(FanfareClientClosedError):
        await caller
    with pytest.raises(FanfareClientClosedError):
        await answer
    server.resume()


async def test_unread_results_are_bounded_by_concurrency(server: MockFanfareServer) -> None:
    """A consumer that stops reading holds the run: at most `concurrency` results wait
    unread and each worker holds one more; the input is not read any further."""
    ids = server.group_ids[:50]
    pulled: list[str] = []

    def source() -> Iterator[str]:
        for group in ids:
            pulled.append(group)
            yield group

    async with client_for(server) as client:
        await client.get_many_group_audiences(ids)  # all cached: lookups never wait
        async with client.iter_group_audiences(source(), concurrency=4) as bulk:
            first = await bulk.__anext__()
            await settle()
            assert len(pulled) <= 1 + 4 + 4 + 1
            assert bulk.progress.done == 1
            rest = [key async for key, _ in bulk]
        assert sorted([first[0], *rest]) == sorted(ids)


async def test_workers_keep_no_reference_to_delivered_results(server: MockFanfareServer) -> None:
    """Once a result is handed over, only the consumer holds it (a worker waiting on its
    next lookup does not keep the last one alive)."""
    cached, uncached = server.group_ids[:2]
    async with client_for(server) as client:
        await client.get_group_audiences(cached)
        server.pause()
        async with client.iter_group_audiences([cached, uncached], concurrency=1) as bulk:
            key, result = await bulk.__anext__()
            await server.wait_for_requests(2)  # the worker now waits on the uncached id
            assert key == cached
            assert sys.getrefcount(result) == 2  # `result` here, and getrefcount's argument
            server.resume()
