"""Benchmark 3a: a cache hit through the public method, against other async caches."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiocache import SimpleMemoryCache
from async_lru import alru_cache

from fanfare_async import FanfareClient
from fanfare_async._fake_data import group_ids
from fanfare_async.testing import MockFanfareServer

from ._common import SEED, Section, Sizes, Target, median_ratio, rotated
from ._payloads import body_pool, pick

OURS = "fanfare_async get_group_audiences (hit)"
FLOOR = "dict lookup in an async def (floor)"
FLOOR_COPY = "dict lookup + list() copy in an async def"
ALRU = "async-lru @alru_cache(ttl=...)"
AIOCACHE = "aiocache SimpleMemoryCache.get"
UNIT = "ns/hit"
LONG = 1e6  # seconds: nothing expires during the run

Get = Callable[[str], Awaitable[Any]]


async def _drive(get: Get, keys: list[str]) -> float:
    """Mean ns per awaited lookup over ``keys``."""
    gc.collect()
    start = time.perf_counter_ns()
    for key in keys:
        await get(key)
    return (time.perf_counter_ns() - start) / len(keys)


async def _contenders(sizes: Sizes, client: FanfareClient, hot: list[str]) -> dict[str, Get]:
    await client.get_many_group_audiences(hot, concurrency=64)  # warm from the test double
    stats = client.cache_stats
    assert stats.size == len(hot), stats
    values = {key: tuple(await client.get_group_audiences(key)) for key in hot}

    async def floor(key: str) -> Any:
        return values[key]

    async def floor_copy(key: str) -> Any:
        return list(values[key])

    @alru_cache(maxsize=len(hot) * 2, ttl=LONG)
    async def alru(key: str) -> Any:
        return values[key]

    aiocache = SimpleMemoryCache()
    for key in hot:
        await alru(key)
        await aiocache.set(key, values[key])
    return {
        OURS: client.get_group_audiences,
        FLOOR: floor,
        FLOOR_COPY: floor_copy,
        ALRU: alru,
        AIOCACHE: aiocache.get,
    }


async def _run(sizes: Sizes, section: Section) -> None:
    hot = group_ids(SEED + 7, sizes.hot_keys)
    rng = random.Random(SEED)
    keys = [hot[rng.randrange(len(hot))] for _ in range(sizes.hits)]
    pool = body_pool(16)
    async with MockFanfareServer(seed=SEED, groups=0, record_requests=False) as server:
        for gid in hot:
            server.set_group(gid, pick(pool, gid))
        async with FanfareClient(
            server.secret_key,
            base_url=server.url,
            rate_limit=None,
            cache_maxsize=len(hot) * 2,
            default_ttl=LONG,
            max_ttl=LONG,
        ) as client:
            contenders = await _contenders(sizes, client, hot)
            hits_before = client.cache_stats.hits
            case = f"{len(hot)} hot keys, {len(keys)} hits"
            for name in contenders:
                section.row(case, name, UNIT, reference=FLOOR)
            for round_no in range(sizes.hit_rounds):
                for name in rotated(list(contenders), round_no):
                    # aiocache costs tens of µs per hit: a tenth of the hits is plenty.
                    share = keys[: len(keys) // 10] if name == AIOCACHE else keys
                    ns = await _drive(contenders[name], share)
                    section.find(case, name, UNIT).samples.append(ns)
            served = client.cache_stats.hits - hits_before
            assert served == len(keys) * sizes.hit_rounds, (served, client.cache_stats)
            assert server.total_requests == len(hot), server.total_requests


def run(sizes: Sizes) -> Section:
    section = Section("cache hit")
    asyncio.run(_run(sizes, section))
    section.pair_ratios()
    case = section.rows[0].case
    ours = section.find(case, OURS, UNIT).samples
    vs_floor = median_ratio(ours, section.find(case, FLOOR, UNIT).samples)
    section.targets.append(
        Target("cache hit: <= 4x the dict-in-async-def floor", f"{vs_floor:.2f}x", vs_floor <= 4)
    )
    vs_alru = median_ratio(ours, section.find(case, ALRU, UNIT).samples)
    section.targets.append(
        Target("cache hit: faster than async-lru", f"{vs_alru:.2f}x async-lru's time", vs_alru < 1)
    )
    vs_aio = median_ratio(section.find(case, AIOCACHE, UNIT).samples, ours)
    section.targets.append(
        Target("cache hit: >= 10x faster than aiocache", f"{vs_aio:.1f}x faster", vs_aio >= 10)
    )
    section.notes.append(
        "cache hit: one coroutine awaits each lookup in turn (default asyncio loop); the "
        "loop's own cost is in every figure; fanfare_async returns a new list per call "
        "(its contract), the others return the stored tuple (the list() copy row shows what "
        "that contract alone costs); warmed by one bulk fetch from the in-process test "
        "double; aiocache is timed on a tenth of the hits."
    )
    return section
