"""Load servers, each run in its own process so client and server never share a loop.

``python -m benchmarks._server minimal|mock [options]`` prints one JSON line
``{"url", "secret_key", "start"}`` once listening, then answers each ``stats``
line on stdin with a JSON line of counters, and exits when stdin closes.

- ``minimal``: a bare aiohttp app serving pre-generated bodies for any id
  (auth checked for presence only): the throughput server.
- ``mock``: :class:`fanfare_async.testing.MockFanfareServer` with the given
  latency, rate limit (``--bare-429``: a proxy's bare 429s, no rate-limit headers)
  and faults; the ids of ``group_ids(seed, ids)`` are
  registered with pre-generated bodies so the double spends no time generating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from aiohttp import web

from fanfare_async._fake_data import encode_group, generate_group, group_ids
from fanfare_async.testing import Fault, MockFanfareServer

from ._common import SEED, pin
from ._payloads import TYPICAL_AUDIENCES, body_pool, pick

SECRET = "sk_test_benchmarks000000000000000000"
_PREFIX = "/api/audiences/groups/"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _serve_commands(stats: Any) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        if line.strip() == "stats":
            _emit(stats())


async def _minimal(args: argparse.Namespace) -> None:
    pool = body_pool(args.pool, refreshed=args.refreshed)
    own: dict[str, bytes] = {}  # --per-id: each id's body, made on its first request
    served = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal served
        if not request.headers.get("Authorization"):
            return web.json_response({"error": "Authentication required"}, status=401)
        served += 1
        gid = request.match_info["gid"]
        if args.per_id:
            body = own.get(gid)
            if body is None:
                body = own[gid] = encode_group(generate_group(args.seed, gid, TYPICAL_AUDIENCES))
        else:
            body = pick(pool, gid)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(_PREFIX + "{gid}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    _emit({"url": f"http://127.0.0.1:{port}/api", "secret_key": SECRET, "start": time.time()})
    try:
        await _serve_commands(lambda: {"total_requests": served, "cpu_seconds": _cpu_seconds()})
    finally:
        await runner.cleanup()


async def _mock(args: argparse.Namespace) -> None:
    pool = body_pool(args.pool, refreshed=args.refreshed)
    faults = (Fault.error(503), Fault.drop())
    server = MockFanfareServer(
        seed=SEED,
        groups=0,
        secret_key=SECRET,
        latency=args.latency,
        rate_limit=args.rate_limit,
        rate_period=args.rate_period,
        fault_rate=args.fault_rate,
        fault_kinds=faults,
        fault_seed=SEED,
        record_requests=False,
        rate_limit_headers=not args.bare_429,
    )
    for gid in group_ids(args.seed, args.ids):
        server.set_group(gid, pick(pool, gid))
    async with server:
        _emit({"url": server.url, "secret_key": server.secret_key, "start": time.time()})
        await _serve_commands(
            lambda: {
                "total_requests": server.total_requests,
                "rate_limited": server.rate_limited,
                "max_in_flight": server.max_in_flight,
                "cpu_seconds": _cpu_seconds(),
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._server")
    parser.add_argument("mode", choices=("minimal", "mock"))
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--pool", type=int, default=32, help="distinct bodies to serve")
    parser.add_argument(
        "--per-id", action="store_true",
        help="minimal: a typical body of each id's own (no two ids share a string)",
    )  # fmt: skip
    parser.add_argument(
        "--refreshed", choices=("recent", "old"), default=None,
        help="lastRefreshedAt of the bodies (default: null, as the generator makes them)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the registered ids")
    parser.add_argument("--ids", type=int, default=0, help="mock: ids to register")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=int, default=None)
    parser.add_argument("--rate-period", type=float, default=60.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument(
        "--bare-429", action="store_true", help="mock: a proxy's bare 429s (no rate-limit headers)"
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    args = parser.parse_args()
    pin(args.cpu)
    coro = _minimal(args) if args.mode == "minimal" else _mock(args)
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            asyncio.run(coro)
        else:
            uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
