"""One client process of the shared-tier benchmark, run fresh per measurement.

``python -m benchmarks._tierload CONTENDER --url URL --key KEY --seed S --count N ...``
looks up ``N`` distinct ids of ``group_ids(S, warmup + N)`` (after ``--warmup``
others, which open the connections) and prints one JSON line: wall time, this
process's CPU (``getrusage(RUSAGE_SELF)`` user + sys around the timed part only),
errors, and for ``fanfare`` the change of ``cache_stats`` over the timed part.

Contenders:
- ``fanfare``: ``FanfareClient`` (``rate_limit=None``, the default cache unless
  ``--cache-maxsize``), with ``shared=RedisTier(--redis, namespace=--namespace)``
  when ``--redis`` is given; ``--shape pool``: ``--concurrency`` workers awaiting
  ``get_group_audiences(id)``, ``--shape bulk``: one ``get_many_group_audiences``.
- ``redis-py``: the hand-written peer: one ``redis.asyncio.Redis`` (its default
  pool), the ids' response bodies SET under plain keys before the run, then
  ``--concurrency`` workers doing ``GET`` + ``msgspec.json`` decode into the
  package's ``Audience`` structs.

``--wait`` prints ``ready`` once set up and waits for a line on stdin, so that
several processes can start their lookups together.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fanfare_async._fake_data import group_ids

from ._common import pin
from ._payloads import body_pool, pick

PEER_PREFIX = "bench:peer:"


async def _pool(ids: list[str], concurrency: int, one: Callable[[str], Awaitable[None]]) -> None:
    feed: Iterator[str] = iter(ids)

    async def worker() -> None:
        for gid in feed:
            await one(gid)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _barrier(args: argparse.Namespace) -> None:
    if args.wait:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _timed(
    args: argparse.Namespace,
    go: Callable[[list[str], Counter[str]], Awaitable[None]],
    report: dict[str, Any],
    snapshot: Callable[[], dict[str, int]] | None = None,
) -> None:
    every = group_ids(args.seed, args.warmup + args.count)
    warm, ids = every[: args.warmup], every[args.warmup :]
    errors: Counter[str] = Counter()
    if warm:
        await go(warm, errors)
        errors.clear()
    await _barrier(args)
    before = snapshot() if snapshot is not None else {}
    user0, sys0 = _cpu()
    t0 = time.perf_counter()
    await go(ids, errors)
    wall = time.perf_counter() - t0
    user1, sys1 = _cpu()
    if snapshot is not None:
        after = snapshot()
        report["stats"] = {k: after[k] - before.get(k, 0) for k in after}
    report.update(
        n=len(ids),
        wall=wall,
        user=user1 - user0,
        sys=sys1 - sys0,
        errors=sum(errors.values()),
        error_types=dict(errors),
    )


async def _fanfare(args: argparse.Namespace) -> dict[str, Any]:
    from fanfare_async import FanfareClient, FanfareError

    tier: Any = None
    if args.redis:
        from fanfare_async.redis import RedisTier

        tier = RedisTier(args.redis, namespace=args.namespace or None)
    report: dict[str, Any] = {}
    try:
        async with FanfareClient(
            args.key,
            base_url=args.url,
            rate_limit=None,
            cache_maxsize=args.cache_maxsize,
            max_connections=args.concurrency,
            shared=tier,
        ) as client:
            if tier is not None and args.connect:
                report["connected"] = await tier.connect()

            async def pool(ids: list[str], errors: Counter[str]) -> None:
                async def one(gid: str) -> None:
                    try:
                        await client.get_group_audiences(gid)
                    except FanfareError as exc:
                        errors[type(exc).__name__] += 1

                await _pool(ids, args.concurrency, one)

            async def bulk(ids: list[str], errors: Counter[str]) -> None:
                results = await client.get_many_group_audiences(ids, concurrency=args.concurrency)
                for result in results.values():
                    if isinstance(result, FanfareError):
                        errors[type(result).__name__] += 1

            def snapshot() -> dict[str, int]:
                stats: dict[str, int] = dataclasses.asdict(client.cache_stats)
                return stats

            await _timed(args, pool if args.shape == "pool" else bulk, report, snapshot)
    finally:
        if tier is not None:
            await tier.aclose()
    return report


async def _redis_py(args: argparse.Namespace) -> dict[str, Any]:
    import msgspec
    import redis.asyncio

    from fanfare_async import Audience

    decode = msgspec.json.Decoder(list[Audience]).decode
    bodies = body_pool(args.pool)
    r = redis.asyncio.Redis.from_url(args.redis)
    report: dict[str, Any] = {}
    try:
        async with r.pipeline(transaction=False) as pipe:
            for gid in group_ids(args.seed, args.warmup + args.count):
                pipe.set(PEER_PREFIX + gid, pick(bodies, gid))
            await pipe.execute()

        async def pool(ids: list[str], errors: Counter[str]) -> None:
            async def one(gid: str) -> None:
                body = await r.get(PEER_PREFIX + gid)
                if body is None:
                    errors["missing"] += 1
                    return
                decode(body)

            await _pool(ids, args.concurrency, one)

        await _timed(args, pool, report)
    finally:
        await r.aclose()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._tierload")
    parser.add_argument("contender", choices=("fanfare", "redis-py"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cache-maxsize", type=int, default=10_000)
    parser.add_argument("--redis", default="", help="Redis URL: fanfare gets a RedisTier")
    parser.add_argument("--namespace", default="")
    parser.add_argument("--connect", action="store_true", help="await tier.connect() first")
    parser.add_argument("--shape", choices=("pool", "bulk"), default="pool")
    parser.add_argument("--pool", type=int, default=32, help="redis-py: distinct bodies")
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    pin(args.cpu)
    runner = _fanfare if args.contender == "fanfare" else _redis_py
    report = asyncio.run(runner(args))
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
