"""One load-generating client, run in a fresh process per measurement.

``python -m benchmarks._loadgen CONTENDER --url URL --key KEY --count N ...`` looks up
``N`` distinct ids (after ``--warmup`` others that open the connections) at
``--concurrency``, and prints one JSON line: wall time, this process's CPU time
(``getrusage(RUSAGE_SELF)`` user + sys, measured around the timed part only),
errors, unhandled exceptions and peak RSS.

Contenders:
- ``fanfare``: ``FanfareClient.iter_group_audiences`` (no rate limit by default, cache of
  ``--cache-maxsize``);
- ``fanfare-pool``: N workers awaiting ``get_group_audiences(id, use_cache=False)``;
- ``fanfare-many``: one ``get_many_group_audiences(ids, concurrency=N)``;
- ``floor``: one aiohttp ``ClientSession``, N workers, ``msgspec`` decode into the package's
  ``Audience`` struct: the least a client can do;
- ``bare``: the same loop without decoding;
- ``httpx``: ``httpx.AsyncClient`` and pydantic v2 models.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fanfare_async._fake_data import group_ids

from ._common import pin
from ._looptimer import CallbackTimer

Runner = Callable[[list[str]], Awaitable[Counter[str]]]


def _audience_decoder() -> Callable[[bytes], Any]:
    import msgspec

    from fanfare_async import Audience

    return msgspec.json.Decoder(list[Audience]).decode


async def _pool(ids: list[str], concurrency: int, one: Callable[[str], Awaitable[None]]) -> None:
    feed: Iterator[str] = iter(ids)

    async def worker() -> None:
        for gid in feed:
            await one(gid)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _with_aiohttp(args: argparse.Namespace, decode: bool, measure: Any) -> Any:
    import aiohttp

    decoder = _audience_decoder() if decode else None
    prefix = args.url + "/audiences/groups/"
    headers = {"Authorization": f"Bearer {args.key}", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def make_runner(errors: Counter[str]) -> Callable[[str], Awaitable[None]]:
            async def one(gid: str) -> None:
                try:
                    async with session.get(prefix + gid, headers=headers) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            errors[f"HTTP {resp.status}"] += 1
                            return
                    if decoder is not None:
                        decoder(body)
                except aiohttp.ClientError as exc:
                    errors[type(exc).__name__] += 1

            return one

        return await measure(make_runner)


async def _with_httpx(args: argparse.Namespace, measure: Any) -> Any:
    import httpx

    from ._altmodels import PYDANTIC_GROUP

    prefix = args.url + "/audiences/groups/"
    headers = {"Authorization": f"Bearer {args.key}", "Accept": "application/json"}
    size = args.concurrency
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def make_runner(errors: Counter[str]) -> Callable[[str], Awaitable[None]]:
            async def one(gid: str) -> None:
                try:
                    resp = await client.get(prefix + gid, headers=headers)
                    if resp.status_code != 200:
                        errors[f"HTTP {resp.status_code}"] += 1
                        return
                    PYDANTIC_GROUP.validate_json(resp.content)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1

            return one

        return await measure(make_runner)


async def _with_fanfare(args: argparse.Namespace, measure: Any, report: dict[str, Any]) -> Any:
    from fanfare_async import FanfareClient, FanfareError, RateLimit

    limit = None
    if args.rate_limit:
        requests, period = args.rate_limit.split("/")
        limit = RateLimit(int(requests), float(period))
    client = FanfareClient(
        args.key,
        base_url=args.url,
        rate_limit=limit,
        cache_maxsize=args.cache_maxsize,
        max_connections=args.max_connections or args.concurrency,
    )
    async with client:

        async def bulk(ids: list[str], errors: Counter[str], answered: set[str]) -> None:
            async for gid, result in client.iter_group_audiences(ids, concurrency=args.concurrency):
                answered.add(gid)
                if isinstance(result, FanfareError):
                    errors[type(result).__name__] += 1

        async def make_runner(errors: Counter[str]) -> Callable[[str], Awaitable[None]]:
            async def one(gid: str) -> None:
                try:
                    await client.get_group_audiences(gid, use_cache=False)
                except FanfareError as exc:
                    errors[type(exc).__name__] += 1

            return one

        async def many(ids: list[str], errors: Counter[str], answered: set[str]) -> None:
            results = await client.get_many_group_audiences(ids, concurrency=args.concurrency)
            for gid, result in results.items():
                answered.add(gid)
                if isinstance(result, FanfareError):
                    errors[type(result).__name__] += 1

        try:
            if args.contender == "fanfare-pool":
                return await measure(make_runner)
            return await measure(None, many if args.contender == "fanfare-many" else bulk)
        finally:
            report["rate_limit_wait_seconds"] = client.rate_limit_wait_seconds
            report["rate_in_force"] = client.rate_limit_state.rate


class _GcTimer:
    """Time spent in the cyclic garbage collector, and collections per generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def reset(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    unhandled: list[str] = []

    def on_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        unhandled.append(str(context.get("message")))
        _loop.default_exception_handler(context)

    loop.set_exception_handler(on_error)
    every = group_ids(args.seed, args.warmup + args.count)
    warm, ids = every[: args.warmup], every[args.warmup :]
    report: dict[str, Any] = {}
    gc_timer = _GcTimer()
    callbacks = CallbackTimer() if args.time_callbacks else None

    async def measure(make_runner: Any, bulk: Any = None) -> None:
        errors: Counter[str] = Counter()
        answered: set[str] = set()

        async def go(batch: list[str]) -> None:
            if bulk is not None:
                await bulk(batch, errors, answered)
            else:
                await _pool(batch, args.concurrency, await make_runner(errors))
                answered.update(batch)

        if warm:
            await go(warm)
            errors.clear()
            answered.clear()
        if args.start_at:
            await asyncio.sleep(max(0.0, args.start_at - time.time()))
        gc.collect()
        gc_timer.reset()
        if callbacks is not None:
            callbacks.on = True
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        report["t0_unix"] = time.time()
        t0 = time.perf_counter()
        try:
            await go(ids)
        except Exception as exc:  # counted, not fatal: the soak reports it
            traceback.print_exc()
            report["escaped"] = repr(exc)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        if callbacks is not None:
            callbacks.on = False
            report["callbacks"] = callbacks.report()
        report.update(
            n=len(ids),
            wall=wall,
            user=ru1.ru_utime - ru0.ru_utime,
            sys=ru1.ru_stime - ru0.ru_stime,
            errors=sum(errors.values()),
            error_types=dict(errors),
            answered=len(answered.intersection(ids)),
            gc_seconds=gc_timer.seconds,
            gc_collections=list(gc_timer.collections),
        )

    if args.contender in ("fanfare", "fanfare-pool", "fanfare-many"):
        await _with_fanfare(args, measure, report)
    elif args.contender in ("floor", "bare"):
        await _with_aiohttp(args, args.contender == "floor", measure)
    else:
        await _with_httpx(args, measure)
    report["unhandled"] = len(unhandled) + ("escaped" in report)
    report["unhandled_messages"] = unhandled[:5]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._loadgen")
    parser.add_argument(
        "contender", choices=("fanfare", "fanfare-pool", "fanfare-many", "floor", "bare", "httpx")
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-connections", type=int, default=0)
    parser.add_argument("--cache-maxsize", type=int, default=0)
    parser.add_argument("--rate-limit", default="", help="REQUESTS/PERIOD, e.g. 100/5")
    parser.add_argument("--start-at", type=float, default=0.0, help="Unix time to start at")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--time-callbacks", action="store_true",
        help="time every loop callback and collection in the timed part (asyncio only)",
    )  # fmt: skip
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    pin(args.cpu)
    if args.loop == "uvloop":
        import uvloop

        report = uvloop.run(_main(args))
    else:
        report = asyncio.run(_main(args))
    report["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
