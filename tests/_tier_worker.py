"""One "process" of a multi-process test: a client sharing a RedisTier, run as a script.

    python tests/_tier_worker.py REDIS_URL API_URL SECRET [--lease S] [--wait] IDS...

Looks every id up at once (``get_many_group_audiences``) and prints one JSON
line: ``{"ok": n, "failed": {...}, "stats": {...}}``. With ``--wait`` it first
prints ``ready`` once its tier is connected and waits for a line on stdin, so
the test can start the processes' lookups together.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from fanfare_async import FanfareClient
from fanfare_async.redis import RedisTier


async def main(args: argparse.Namespace) -> None:
    tier = RedisTier(args.redis, lease=args.lease)
    try:
        async with FanfareClient(
            args.secret, base_url=args.api, shared=tier, rate_limit=None, max_retries=1
        ) as client:
            await tier.connect()
            if args.wait:
                print("ready", flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            results = await client.get_many_group_audiences(args.ids)
            failed = {k: repr(v) for k, v in results.items() if not isinstance(v, list)}
            stats = dataclasses.asdict(client.cache_stats)
    finally:
        await tier.aclose()
    print(json.dumps({"ok": len(results) - len(failed), "failed": failed, "stats": stats}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("redis")
    parser.add_argument("api")
    parser.add_argument("secret")
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("ids", nargs="+")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
