"""``demo``: fetch every group of an in-process test double twice, showing the cache."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._client import FanfareClient
from .._config import DEFAULT_CACHE_MAXSIZE
from .._exceptions import FanfareError
from ._exit_codes import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from ..testing import MockFanfareServer


@dataclass
class _Pass:
    """One pass over all groups: groups, requests made, seconds, cache hits, failures."""

    groups: int
    requests: int
    seconds: float
    hits: int
    failures: int

    def line(self, number: int) -> str:
        rate = self.groups / self.seconds if self.seconds > 0 else math.inf
        failed = f", {self.failures} failed" if self.failures else ""
        return (
            f"pass {number}: {self.groups} groups, {self.requests} requests, "
            f"{self.seconds:.3f} s, {rate:,.0f} groups/s, cache hits {self.hits}{failed}"
        )


def run(args: argparse.Namespace) -> int:
    """Exit 1 unless the second pass was served from the cache alone."""
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    from ..testing import MockFanfareServer

    async with MockFanfareServer(
        seed=args.seed, groups=args.groups, latency=args.latency, record_requests=False
    ) as server:
        generated = _pregenerate(server)
        _print(
            f"test double: {server.url}, {args.groups} groups (generated in {generated:.2f} s, "
            f"outside the timings), {args.latency * 1000:g} ms latency per request"
        )
        _print(
            f"client: concurrency {args.concurrency}, cache of {args.groups} groups, "
            "rate limit off (the demo's test double does not enforce one)"
        )
        async with FanfareClient(
            server.secret_key,
            base_url=server.url,
            rate_limit=None,
            max_connections=args.concurrency,
            cache_maxsize=max(args.groups, DEFAULT_CACHE_MAXSIZE),
        ) as client:
            first = await _timed_pass(client, server, args.concurrency)
            _print(first.line(1))
            second = await _timed_pass(client, server, args.concurrency)
            _print(second.line(2))
    return _verdict(first, second)


def _pregenerate(server: MockFanfareServer) -> float:
    """Build every group's body up front, so the passes time the client, not the fake data."""
    started = time.perf_counter()
    for group_id in server.group_ids:
        server.set_group(group_id, server.body_for(group_id))
    return time.perf_counter() - started


async def _timed_pass(client: FanfareClient, server: MockFanfareServer, concurrency: int) -> _Pass:
    requests, hits = server.total_requests, client.cache_stats.hits
    started = time.perf_counter()
    results = await client.get_many_group_audiences(server.group_ids, concurrency=concurrency)
    seconds = time.perf_counter() - started
    return _Pass(
        groups=len(results),
        requests=server.total_requests - requests,
        seconds=seconds,
        hits=client.cache_stats.hits - hits,
        failures=sum(isinstance(r, FanfareError) for r in results.values()),
    )


def _verdict(first: _Pass, second: _Pass) -> int:
    if second.requests or first.failures or second.failures:
        _print(
            f"the second pass made {second.requests} requests "
            f"({first.failures + second.failures} lookups failed): not served from the cache"
        )
        return EXIT_FAILED
    speedup = first.seconds / second.seconds if second.seconds > 0 else math.inf
    _print(
        f"the second pass made 0 requests: all {second.groups} groups were served from "
        f"the cache, {speedup:,.0f}x faster"
    )
    return EXIT_OK


def _print(text: str) -> None:
    print(text, flush=True)
