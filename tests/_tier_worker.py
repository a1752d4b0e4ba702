"""One "process" of a multi-process test: a client sharing a RedisTier, run as a script.

    python tests/_tier_worker.py REDIS_URL API_URL SECRET [--lease S] [--wait]
        [--budget N --seconds S] [--skew S] IDS...

Looks every id up at once (``get_many_group_audiences``) and prints one JSON
line: ``{"ok": n, "failed": {...}, "stats": {...}}``. With ``--wait`` it first
prints ``ready`` once its tier is connected and waits for a line on stdin, so
the test can start the processes' lookups together. With ``--seconds S`` it looks
up new ids (``IDS[0]-0``, ``IDS[0]-1``, ...) for S seconds instead, as fast as
its ``--budget`` allows.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import sys
import time

import anyio

from fanfare_async import Audience, FanfareClient, FanfareError, NotFoundError, RateLimit
from fanfare_async.redis import RedisTier


async def main(args: argparse.Namespace) -> None:
    if args.skew:  # a host whose wall clock is off: the shared budget must not care
        wall = time.time
        time.time = lambda: wall() + args.skew
    tier = RedisTier(args.redis, lease=args.lease)
    limit = None if args.budget is None else RateLimit(args.budget, period=1.0)
    try:
        async with FanfareClient(
            args.secret,
            base_url=args.api,
            shared=tier,
            rate_limit=limit,
            max_retries=1,
            cache_maxsize=0 if args.seconds else 10_000,
        ) as client:
            await tier.connect()
            if args.wait:
                print("ready", flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            if args.seconds:
                results = await _for_a_while(client, args.ids[0], args.seconds)
            else:
                results = await client.get_many_group_audiences(args.ids)
            failed = {
                k: repr(v)
                for k, v in results.items()
                if not isinstance(v, list) and not isinstance(v, NotFoundError)
            }
            stats = dataclasses.asdict(client.cache_stats)
    finally:
        await tier.aclose()
    print(json.dumps({"ok": len(results) - len(failed), "failed": failed, "stats": stats}))


async def _for_a_while(
    client: FanfareClient, prefix: str, seconds: float
) -> dict[str, list[Audience] | FanfareError]:
    """Look up new ids (unknown to the double: 404s, each one request) as fast as the
    budget lets this process, for ``seconds``."""
    results: dict[str, list[Audience] | FanfareError] = {}
    ids = (f"{prefix}-{n}" for n in itertools.count())
    with anyio.move_on_after(seconds):
        async for key, result in client.iter_group_audiences(ids, concurrency=8):
            results[key] = result
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("redis")
    parser.add_argument("api")
    parser.add_argument("secret")
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("--budget", type=int, help="RateLimit(N, period=1.0); default none")
    parser.add_argument("--seconds", type=float, help="look up new ids for this long")
    parser.add_argument("--skew", type=float, default=0.0, help="seconds added to time.time")
    parser.add_argument("ids", nargs="+")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
