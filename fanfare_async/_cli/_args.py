"""The argument parser: options, their types and help, and each subcommand's handler."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

from ..__about__ import __version__
from .._config import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    ENV_REDIS_URL,
    ENV_SECRET_KEY,
)
from . import _bulk, _demo, _get, _mock_server
from ._messages import PROG

_EPILOG = f"""\
environment:
  {ENV_SECRET_KEY}   the secret key (sk_live_... or sk_test_...); required by get and bulk
  {ENV_BASE_URL}     the API root (default https://admin.fanfare.io/api)
  {ENV_REDIS_URL}    a Redis shared by every process (as --redis URL)

exit codes: 0 all ok, 1 some ids failed (a rejected key included),
            2 usage or configuration error, 130 interrupted (Ctrl-C)

try it without an account:
  {PROG} demo
  {PROG} mock-server --port 8080     # then export the two variables it prints
"""


def _number(kind: Callable[[str], Any], minimum: float, *, strict: bool = False) -> Any:
    """An argparse type: a finite number >= ``minimum`` (> when ``strict``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum:g}, got {text}")
        return value

    return parse


def _port(text: str) -> int:
    value: int = _number(int, 0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fanfare-async`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Look up Fanfare audience groups (GET /audiences/groups/{groupId}).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client = _client_options()
    _add_get(commands, client)
    _add_bulk(commands, client)
    _add_mock_server(commands)
    _add_demo(commands)
    return parser


def _client_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("client options")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help=f"API root (default: ${ENV_BASE_URL}, else https://admin.fanfare.io/api)",
    )
    group.add_argument(
        "--concurrency",
        type=_number(int, 1),
        metavar="N",
        help=f"lookups in flight at once, also the connection pool size "
        f"(default {DEFAULT_MAX_CONNECTIONS})",
    )
    group.add_argument(
        "--timeout",
        type=_number(float, 0, strict=True),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"per attempt (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--max-retries",
        type=_number(int, 0),
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help=f"retries on connection errors, timeouts, 408, 429, 5xx "
        f"(default {DEFAULT_MAX_RETRIES})",
    )
    group.add_argument(
        "--rate-limit",
        type=_number(int, 0),
        default=DEFAULT_RATE_LIMIT.requests,
        metavar="N",
        help="requests per minute, client-side; 0 disables "
        f"(default {DEFAULT_RATE_LIMIT.requests}, Fanfare's limit)",
    )
    group.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="share the cache and the rate limit with every process using this Redis "
        f'(default: ${ENV_REDIS_URL}; needs pip install "fanfare-async[redis]")',
    )
    return parent


def _subparser(
    commands: Any,
    name: str,
    summary: str,
    description: str,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_EPILOG,
        parents=list(parents),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return sub


def _add_get(commands: Any, client: argparse.ArgumentParser) -> None:
    sub = _subparser(
        commands,
        "get",
        "print the audiences of one or more groups as JSON",
        "Print the audiences of the given groups as JSON on stdout: one id gives its\n"
        "array, several give an object {id: array} of the ids that succeeded. Each failure\n"
        "is reported on stderr (type, status, message) and the exit code is then 1.",
        [client],
    )
    sub.add_argument("ids", nargs="+", metavar="ID", help="a group id (UUID or opaque string)")
    sub.set_defaults(handler=_get.run)


def _add_bulk(commands: Any, client: argparse.ArgumentParser) -> None:
    sub = _subparser(
        commands,
        "bulk",
        "look up ids from a file or stdin, NDJSON out",
        "Read group ids one per line (blank lines and lines starting with # are skipped)\n"
        "and write one NDJSON record per distinct id to stdout, in completion order:\n"
        '  {"group_id": ID, "ok": true, "audiences": [...]}\n'
        '  {"group_id": ID, "ok": false, "error": {"type": ..., "status": ..., "message": ...}}\n'
        'An invalid id also carries its "line" number. The input is read lazily, so\n'
        "huge files are fine. A live progress display goes to stderr when it is a\n"
        "terminal, and a summary line always. A rejected key (401) stops the run.",
        [client],
    )
    sub.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="file of ids; - or none: stdin"
    )
    sub.add_argument("--no-progress", action="store_true", help="no live progress display")
    sub.set_defaults(handler=_bulk.run)


def _add_mock_server(commands: Any) -> None:
    sub = _subparser(
        commands,
        "mock-server",
        "run the test double (a fake Fanfare API) until Ctrl-C",
        "Serve the endpoint with deterministic generated groups, for trying the\n"
        "command or your own code without an account. Prints its URL and its (fake)\n"
        "secret key, then serves until Ctrl-C or SIGTERM.",
    )
    sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sub.add_argument("--port", type=_port, default=8080, help="0 picks a free port (default 8080)")
    _add_test_double_options(sub, groups=1000, latency=0.0)
    sub.add_argument(
        "--rate-limit",
        type=_number(int, 0),
        default=0,
        metavar="N",
        help="enforce N requests per --rate-period with 429s and X-RateLimit-* headers "
        "(default 0: no limit)",
    )
    period = DEFAULT_RATE_LIMIT.period
    sub.add_argument(
        "--rate-period",
        type=_number(float, 0, strict=True),
        default=period,
        metavar="SECONDS",
        help=f"window of --rate-limit (default {period:g})",
    )
    sub.add_argument("--ids-file", metavar="PATH", help="also write the group ids there")
    sub.set_defaults(handler=_mock_server.run)


def _add_demo(commands: Any) -> None:
    sub = _subparser(
        commands,
        "demo",
        "bulk-fetch from an in-process test double twice: throughput and cache",
        "Start the test double in-process, fetch every group once (over HTTP), then\n"
        "again (from the cache), and report requests, time and throughput of each pass.\n"
        "Needs no key or network. Exit code 1 if the second pass made any request.",
    )
    _add_test_double_options(sub, groups=3000, latency=0.002)
    sub.add_argument(
        "--concurrency", type=_number(int, 1), default=64, metavar="N", help="(default 64)"
    )
    sub.set_defaults(handler=_demo.run)


def _add_test_double_options(sub: argparse.ArgumentParser, *, groups: int, latency: float) -> None:
    """The generated data of the test double: seed, group count, added latency."""
    sub.add_argument("--seed", type=int, default=0, help="seed of the generated data (default 0)")
    sub.add_argument(
        "--groups", type=_number(int, 1), default=groups, help=f"groups served (default {groups})"
    )
    sub.add_argument(
        "--latency",
        type=_number(float, 0),
        default=latency,
        metavar="SECONDS",
        help=f"added to every response (default {latency:g})",
    )
