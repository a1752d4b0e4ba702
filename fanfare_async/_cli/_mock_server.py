"""``mock-server``: serve the test double (a fake Fanfare API) until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
from typing import TYPE_CHECKING

from .._config import ENV_BASE_URL, ENV_SECRET_KEY
from ._exit_codes import EXIT_OK, EXIT_USAGE
from ._messages import say

if TYPE_CHECKING:
    from ..testing import MockFanfareServer


def run(args: argparse.Namespace) -> int:
    """Write the ids file if asked, then serve; exit 2 when either cannot be done."""
    if args.ids_file:
        from .._fake_data import group_ids

        try:
            with open(args.ids_file, "w", encoding="utf-8") as ids:
                ids.writelines(f"{gid}\n" for gid in group_ids(args.seed, args.groups))
        except OSError as exc:
            say(f"cannot write {args.ids_file}: {exc.strerror or exc}")
            return EXIT_USAGE
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        say(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def _serve(args: argparse.Namespace) -> None:
    from ..testing import MockFanfareServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with MockFanfareServer(
        seed=args.seed,
        groups=args.groups,
        latency=args.latency,
        rate_limit=args.rate_limit or None,
        rate_period=args.rate_period,
        host=args.host,
        port=args.port,
    ) as server:
        _announce(server, args)
        await stop.wait()
        count = server.total_requests
        say(f"stopped after {count} request{'' if count == 1 else 's'}")


def _announce(server: MockFanfareServer, args: argparse.Namespace) -> None:
    """The URL, the key and how to export them, on stdout."""
    url, key = server.url, server.secret_key
    limit = f"{args.rate_limit} per {args.rate_period:g}s" if args.rate_limit else "none"
    print(f"url: {url}")
    print(f"secret: {key}")
    print(f"groups: {len(server.group_ids)} (e.g. {server.group_ids[0]}); rate limit: {limit}")
    print(f"export {ENV_BASE_URL}={shlex.quote(url)} {ENV_SECRET_KEY}={shlex.quote(key)}")
    print("serving; Ctrl-C to stop", flush=True)
