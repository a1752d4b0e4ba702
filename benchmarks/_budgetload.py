"""One process of the shared-budget benchmark (run by benchmarks/budget.py).

    python -m benchmarks._budgetload --url URL --key KEY --rate R --seconds S
        [--redis URL --namespace NS] [--wait] [--count N] --prefix P

With ``--seconds``: looks up new ids (``P-0``, ``P-1``, ...: unknown to the
double, so 404s, each one request) as fast as ``RateLimit(R, period=1.0)``
lets it, for S seconds. With ``--count N`` instead: N lookups with
``use_cache=False`` (so the only tier operation is the budget's draw). Prints
one JSON line: requests sent, errors other than 404, client CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import sys
import time

import anyio

from fanfare_async import FanfareClient, FanfareError, NotFoundError, RateLimit


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(args: argparse.Namespace) -> None:
    tier = None
    if args.redis:
        from fanfare_async.redis import RedisTier

        tier = RedisTier(args.redis, namespace=args.namespace)
    errors = 0
    sent = 0
    async with FanfareClient(
        args.key,
        base_url=args.url,
        shared=tier,
        rate_limit=RateLimit(args.rate, period=1.0),
        cache_maxsize=0,
        max_retries=1,
    ) as client:
        if tier is not None:
            await tier.connect()
        if args.wait:
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        ids = (f"{args.prefix}-{n}" for n in itertools.count())
        started, cpu = time.monotonic(), _cpu()
        if args.seconds:
            with anyio.move_on_after(args.seconds):
                async for _, result in client.iter_group_audiences(ids, concurrency=8):
                    sent += 1
                    errors += isinstance(result, FanfareError) and not isinstance(
                        result, NotFoundError
                    )
        else:
            for group_id in itertools.islice(ids, args.count):
                sent += 1
                try:
                    await client.get_group_audiences(group_id, use_cache=False)
                except NotFoundError:
                    pass
                except FanfareError:
                    errors += 1
        wall, cpu = time.monotonic() - started, _cpu() - cpu
    if tier is not None:
        await tier.aclose()
    print(json.dumps({"sent": sent, "errors": errors, "cpu": cpu, "wall": wall}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--redis")
    parser.add_argument("--namespace")
    parser.add_argument("--prefix", default="budget")
    parser.add_argument("--wait", action="store_true")
    asyncio.run(main(parser.parse_args()))
