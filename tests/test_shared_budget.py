"""One organization, one budget: the rate limit shared through the tier (contract section 9)."""

from __future__ import annotations

import time

import anyio
import pytest
import redis.asyncio

from fanfare_async import FanfareClient, NotFoundError, RateLimit, RateLimitError
from fanfare_async._ratelimit import DEFAULT_FALLBACK_PROCESSES
from fanfare_async.redis import RedisTier
from fanfare_async.testing import Fault, MockFanfareServer

from ._redis_server import RedisServer
from ._workers import run_workers, worker_command

pytestmark = pytest.mark.anyio


async def test_four_processes_share_one_budget(srv: RedisServer) -> None:
    """4 processes, each as fast as RateLimit(20, period=1.0) lets it, against the double
    enforcing 20/s with real headers: no 429, together within the budget plus its burst,
    and at least 90 % of it used. One process runs an hour ahead and one an hour behind
    on the wall clock: the shared rate does not change."""
    seconds = 3.0
    async with MockFanfareServer(groups=0, rate_limit=20, rate_period=1.0) as server:
        budget = ("--wait", "--budget", "20", "--seconds", str(seconds))
        commands = [
            worker_command(srv.url, server, *budget, "--skew", str(skew), f"p{index}")
            for index, skew in enumerate((0.0, 3600.0, -3600.0, 0.0))
        ]
        outputs = await run_workers(commands)
        times = [r.time for r in server.requests]
        total = server.total_requests
        limited = server.rate_limited
    assert [o["failed"] for o in outputs if o["failed"]] == []
    assert limited == 0
    span = max(times) - min(times)
    assert total <= 20 * span + 20 + 20  # the rate, the burst, one window's rounding
    assert total >= 0.9 * 20 * seconds, (total, span)


async def test_a_429_seen_by_one_process_holds_the_others(srv: RedisServer) -> None:
    """A 429 with Retry-After answered to one client: a client of another tier (another
    process) sends nothing until the hold ends."""
    async with MockFanfareServer(groups=2) as server:
        first_group, second_group = server.group_ids
        server.inject(Fault.error(429, retry_after=1.0), group_id=first_group)
        tiers = [RedisTier(srv.url), RedisTier(srv.url)]
        try:
            async with (
                FanfareClient(
                    server.secret_key, base_url=server.url, shared=tiers[0], max_retries=0
                ) as a,
                FanfareClient(
                    server.secret_key, base_url=server.url, shared=tiers[1], max_retries=0
                ) as b,
            ):
                for tier in tiers:
                    assert await tier.connect()
                with pytest.raises(RateLimitError):
                    await a.get_group_audiences(first_group)
                await anyio.wait_all_tasks_blocked()  # the hold reaches Redis
                await b.get_group_audiences(second_group)
        finally:
            for tier in tiers:
                await tier.aclose()
    rejected, answered = server.requests
    assert rejected.status == 429
    assert answered.time - rejected.time >= 0.95


async def test_redis_gone_each_process_takes_a_fair_share(srv: RedisServer) -> None:
    """With Redis killed, a client falls back to a local bucket at its share of the budget
    (the processes last counted), answers everything, and rejoins the shared bucket
    once Redis is back."""
    limit = RateLimit(100, period=1.0, burst=10)
    async with MockFanfareServer(groups=0) as server:
        tiers = [RedisTier(srv.url), RedisTier(srv.url)]
        try:
            async with (
                FanfareClient(
                    server.secret_key, base_url=server.url, shared=tiers[0], rate_limit=limit
                ) as a,
                FanfareClient(
                    server.secret_key, base_url=server.url, shared=tiers[1], rate_limit=limit
                ) as b,
            ):
                for client in (a, b, a):  # both draw: the tier counts two members
                    with pytest.raises(NotFoundError):
                        await client.get_group_audiences("warm-up")
                    await client.invalidate("warm-up")
                assert a._limiter._budget is not None
                assert a._limiter._budget.members == 2
                srv.kill()
                started = time.monotonic()
                results = await a.get_many_group_audiences([f"gone-{n}" for n in range(30)])
                alone = time.monotonic() - started
                await srv.restart()
                with anyio.fail_after(6):
                    while not tiers[0].available:
                        await anyio.sleep(0.05)
                        with pytest.raises(NotFoundError):
                            await a.get_group_audiences(f"probe-{time.monotonic()}")
                await a.get_many_group_audiences([f"back-{n}" for n in range(5)])
                raw = redis.asyncio.Redis.from_url(srv.url)
                try:
                    bucket = [k async for k in raw.scan_iter(match=b"fanfare:*:b:t")]
                finally:
                    await raw.aclose()
        finally:
            for tier in tiers:
                await tier.aclose()
    assert all(isinstance(r, NotFoundError) for r in results.values())
    # Half of 100/s with half the burst: 30 requests take at least (30 - 5) / 50 s; the
    # whole budget would let them through in (30 - 10) / 100 s.
    assert alone >= 0.9 * (30 - 5) / 50
    assert bucket, "the shared bucket is in use again"


async def test_fallback_share_without_a_count() -> None:
    """A process that never reached Redis takes 1/DEFAULT_FALLBACK_PROCESSES of the budget."""
    async with MockFanfareServer(groups=0) as server:
        tier = RedisTier("redis://127.0.0.1:1/0", timeout=0.05)  # nothing listens there
        try:
            async with FanfareClient(
                server.secret_key,
                base_url=server.url,
                shared=tier,
                rate_limit=RateLimit(40, period=1.0, burst=4),
            ) as client:
                started = time.monotonic()
                results = await client.get_many_group_audiences([f"x-{n}" for n in range(11)])
                elapsed = time.monotonic() - started
                errors = client.cache_stats.shared_errors
        finally:
            await tier.aclose()
    assert all(isinstance(r, NotFoundError) for r in results.values())
    share = 40 / DEFAULT_FALLBACK_PROCESSES  # 10/s, burst 1
    assert elapsed >= 0.9 * 10 / share
    assert errors >= 1
