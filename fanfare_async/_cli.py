"""The ``fanfare-async`` command: a thin layer over the public client.

Subcommands: ``get ID...`` (JSON), ``bulk [FILE|-]`` (NDJSON per id), ``mock-server``
(runs the test double) and ``demo`` (the test double in-process, fetched twice). stdout
carries only results; progress and the summary line go to stderr. rich is imported
only when a progress display is shown on a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import queue
import shlex
import signal
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, NoReturn, Protocol

import msgspec

from . import __version__
from ._client import FanfareClient
from ._config import (
    DEFAULT_CACHE_MAXSIZE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    ENV_SECRET_KEY,
    RateLimit,
)
from ._exceptions import (
    APIError,
    AuthenticationError,
    FanfareConfigError,
    FanfareError,
    InvalidGroupIdError,
)
from ._fanout import BulkProgress
from ._ids import canonical_group_id
from ._models import Audience, encode_audiences

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PROG = "fanfare-async"

_CHUNK = 64 * 1024
_MAX_LINE = 64 * 1024  # far above the 256-character id limit
_COUNT_INLINE_BYTES = 4 * 1024 * 1024  # smaller files are counted before starting
_RATE_PERIOD = 60.0


# -- small helpers -------------------------------------------------------------------------


def _say(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def _json_str(value: str) -> bytes:
    return msgspec.json.encode(value)


def _error_info(exc: FanfareError) -> dict[str, Any]:
    """The error's type, HTTP status (or None) and message, for NDJSON and stderr."""
    info: dict[str, Any] = {"type": type(exc).__name__, "status": None, "message": str(exc)}
    if isinstance(exc, APIError):
        info["status"] = exc.status_code
        info["message"] = exc.message
        if exc.request_id:
            info["request_id"] = exc.request_id
    return info


def _describe(group_id: str, exc: FanfareError) -> str:
    info = _error_info(exc)
    if not group_id or group_id.strip() != group_id:
        group_id = repr(group_id)
    status = f" ({info['status']})" if info["status"] is not None else ""
    return f"{group_id}: {info['type']}{status}: {info['message']}"


def _rate_limit_wait(client: FanfareClient) -> float:
    """Seconds the client has spent waiting on its rate limiter.

    Uses a public ``rate_limit_wait_seconds`` when the client has one, else the
    limiter's counter.
    """
    public: Any = getattr(client, "rate_limit_wait_seconds", None)
    if public is not None:
        return float(public)
    waited: Any = getattr(getattr(client, "_limiter", None), "waited_seconds", 0.0)
    return float(waited)


def _format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


# -- argument parsing ----------------------------------------------------------------------


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


_EPILOG = f"""\
environment:
  {ENV_SECRET_KEY}   the secret key (sk_live_... or sk_test_...); required by get and bulk
  {ENV_BASE_URL}     the API root (default https://admin.fanfare.io/api)

exit codes: 0 all ok, 1 some ids failed (a rejected key included),
            2 usage or configuration error, 130 interrupted (Ctrl-C)

try it without an account:
  {PROG} demo
  {PROG} mock-server --port 8080     # then export the two variables it prints
"""


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
        default=1000,
        metavar="N",
        help="requests per minute, client-side; 0 disables (default 1000, Fanfare's limit)",
    )
    return parent


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


def _subparser(
    commands: Any, name: str, summary: str, description: str, parents: Sequence[Any] = ()
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
        "array, several give an object {id: array}. If any id fails, nothing is printed,\n"
        "each failure is reported on stderr (type, status, message) and the exit code is 1.",
        [client],
    )
    sub.add_argument("ids", nargs="+", metavar="ID", help="a group id (UUID or opaque string)")
    sub.set_defaults(handler=_cmd_get)


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
    sub.set_defaults(handler=_cmd_bulk)


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
    _add_double_options(sub, groups=1000, latency=0.0)
    sub.add_argument(
        "--rate-limit",
        type=_number(int, 0),
        default=0,
        metavar="N",
        help="enforce N requests per --rate-period with 429s and X-RateLimit-* headers "
        "(default 0: no limit)",
    )
    sub.add_argument(
        "--rate-period",
        type=_number(float, 0, strict=True),
        default=_RATE_PERIOD,
        metavar="SECONDS",
        help=f"window of --rate-limit (default {_RATE_PERIOD:g})",
    )
    sub.add_argument("--ids-file", metavar="PATH", help="also write the group ids there")
    sub.set_defaults(handler=_cmd_mock_server)


def _add_double_options(sub: argparse.ArgumentParser, *, groups: int, latency: float) -> None:
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


def _add_demo(commands: Any) -> None:
    sub = _subparser(
        commands,
        "demo",
        "bulk-fetch from an in-process test double twice: throughput and cache",
        "Start the test double in-process, fetch every group once (over HTTP), then\n"
        "again (from the cache), and report requests, time and throughput of each pass.\n"
        "Needs no key or network. Exit code 1 if the second pass made any request.",
    )
    _add_double_options(sub, groups=3000, latency=0.002)
    sub.add_argument(
        "--concurrency", type=_number(int, 1), default=64, metavar="N", help="(default 64)"
    )
    sub.set_defaults(handler=_cmd_demo)


# -- entry point ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (the console script exits with it)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED


def _make_client(args: argparse.Namespace, **options: Any) -> FanfareClient:
    """A client from the options and the environment; FanfareConfigError when unusable."""
    if not os.environ.get(ENV_SECRET_KEY):
        raise FanfareConfigError(f"no secret key: set the {ENV_SECRET_KEY} environment variable")
    if args.concurrency is not None:
        options.setdefault("max_connections", args.concurrency)
    rate = RateLimit(args.rate_limit, _RATE_PERIOD) if args.rate_limit else None
    return FanfareClient(
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.max_retries,
        rate_limit=rate,
        **options,
    )


# -- get -----------------------------------------------------------------------------------


def _cmd_get(args: argparse.Namespace) -> int:
    try:
        results = asyncio.run(_get(args))
    except FanfareConfigError as exc:
        _say(f"configuration error: {exc}")
        return EXIT_USAGE
    failures = [(gid, r) for gid, r in results.items() if isinstance(r, FanfareError)]
    for group_id, error in failures:
        _say(_describe(group_id, error))
    if failures:
        return EXIT_FAILED
    audiences = {gid: r for gid, r in results.items() if not isinstance(r, FanfareError)}
    _write_json(_get_document(audiences, single=len(args.ids) == 1))
    return EXIT_OK


async def _get(args: argparse.Namespace) -> dict[str, list[Audience] | FanfareError]:
    async with _make_client(args) as client:
        return await client.get_many_group_audiences(args.ids, concurrency=args.concurrency)


def _get_document(results: dict[str, list[Audience]], *, single: bool) -> bytes:
    if single:
        return encode_audiences(next(iter(results.values())))
    members = [_json_str(gid) + b":" + encode_audiences(a) for gid, a in results.items()]
    return b"{" + b",".join(members) + b"}"


def _write_json(document: bytes) -> None:
    stdout = sys.stdout.buffer
    if sys.stdout.isatty():
        document = msgspec.json.format(document, indent=2)
    stdout.write(document + b"\n")
    stdout.flush()


# -- bulk: input ---------------------------------------------------------------------------


class _ChunkReader:
    """Reads a file descriptor in a daemon thread, one chunk per request.

    A slow pipe or a terminal never blocks the event loop, and Ctrl-C is never stuck
    behind a read. ``os.read`` holds no Python-level lock, so a read still pending at
    exit cannot hang the interpreter's shutdown.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._requests: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[bytes]]]
        self._requests = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def read(self) -> bytes:
        """The next chunk; b"" at end of input."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="fanfare-input", daemon=True)
            self._thread.start()
        self._requests.put((loop, future))
        return await future

    def _serve(self) -> None:
        while True:
            loop, future = self._requests.get()
            try:
                result: bytes | OSError = os.read(self._fd, _CHUNK)
            except OSError as exc:
                result = exc
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # the loop is gone
                return
            if result == b"" or isinstance(result, OSError):
                return


def _settle(future: asyncio.Future[bytes], result: bytes | OSError) -> None:
    if future.done():
        return
    if isinstance(result, OSError):
        future.set_exception(result)
    else:
        future.set_result(result)


@dataclass
class _Source:
    """An opened input: its descriptor, display name, and the id count when known."""

    fd: int
    name: str
    total: int | None = None
    path: str | None = None


def _open_source(spec: str) -> _Source:
    """Open FILE or stdin; OSError when it cannot be read."""
    if spec == "-":
        if sys.stdin is None:
            raise OSError("stdin is closed")
        return _Source(sys.stdin.fileno(), "stdin")
    fd = os.open(spec, os.O_RDONLY)
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise IsADirectoryError(f"{spec} is a directory")
    source = _Source(fd, spec, path=spec)
    if stat.S_ISREG(info.st_mode) and info.st_size <= _COUNT_INLINE_BYTES:
        source.total = _count_ids(spec)
    return source


def _count_ids(path: str) -> int:
    """Lines that carry an id (not blank, not a comment), for done/total."""
    count = 0
    with open(path, "rb") as lines:
        for line in lines:
            text = line.strip()
            if text and not text.startswith(b"#"):
                count += 1
    return count


def _count_in_background(source: _Source) -> None:
    """Count a large regular file's ids in a daemon thread; the display picks it up."""

    def count() -> None:
        with contextlib.suppress(OSError):
            source.total = _count_ids(source.path or "")

    threading.Thread(target=count, name="fanfare-count", daemon=True).start()


class _LineSplitter:
    """Turns chunks into numbered lines; a line over the limit is cut off and flagged."""

    def __init__(self) -> None:
        self.lineno = 0
        self._pending = b""
        self._overlong = False

    def feed(self, chunk: bytes) -> list[tuple[int, bytes | None]]:
        """Complete lines as (number, bytes), bytes None for an overlong line; b"" flushes."""
        if not chunk:
            rest, self._pending = self._pending, b""
            return [self._number(rest)] if rest or self._overlong else []
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        out = [self._number(line) for line in lines]
        if len(self._pending) > _MAX_LINE:
            self._pending, self._overlong = b"", True
        return out

    def _number(self, line: bytes) -> tuple[int, bytes | None]:
        self.lineno += 1
        if self._overlong:
            self._overlong = False
            return self.lineno, None
        if self.lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # UTF-8 byte order mark
        return self.lineno, line


def _parse_line(line: bytes | None) -> str | InvalidGroupIdError | None:
    """The id on a line, None for a blank or comment line, or why it is invalid."""
    if line is None:
        return InvalidGroupIdError(f"line is longer than {_MAX_LINE} bytes")
    text = line.strip()
    if not text or text.startswith(b"#"):
        return None
    try:
        group_id = text.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidGroupIdError("line is not valid UTF-8")
    try:
        canonical_group_id(group_id)
    except InvalidGroupIdError as exc:
        return exc
    return group_id


# -- bulk: output and counters -------------------------------------------------------------


class _Output:
    """NDJSON records to stdout, each line written whole and flushed at once."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.echo: Callable[[str], None] | None = None

    def line(self, record: bytes) -> None:
        if self.echo is not None:
            self.echo(record.decode())
            return
        self._stream.write(record + b"\n")
        self._stream.flush()

    def ok(self, group_id: str, audiences: list[Audience]) -> None:
        self.line(
            b'{"group_id":'
            + _json_str(group_id)
            + b',"ok":true,"audiences":'
            + encode_audiences(audiences)
            + b"}"
        )

    def error(self, group_id: str, exc: FanfareError, line: int | None = None) -> None:
        record: dict[str, Any] = {"group_id": group_id}
        if line is not None:
            record["line"] = line
        record["ok"] = False
        record["error"] = _error_info(exc)
        self.line(msgspec.json.encode(record))


@dataclass
class _Snapshot:
    """What a progress display shows."""

    done: int
    total: int | None
    ok: int
    failed: int
    cache_hits: int
    wait: float
    elapsed: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate

    def status(self) -> str:
        total = "?" if self.total is None else str(self.total)
        return (
            f"{self.done}/{total} done, {self.rate:.0f}/s, ETA {_format_duration(self.eta)}, "
            f"cache hits {self.cache_hits}, errors {self.failed}, "
            f"rate-limit wait {self.wait:.1f}s"
        )


@dataclass
class _BulkRun:
    """The counters of one bulk run; they outlive the event loop, so Ctrl-C can report."""

    source: _Source
    started: float = field(default_factory=time.monotonic)
    ok: int = 0
    failed: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    progress: BulkProgress | None = None
    client: FanfareClient | None = None
    stopped: str = ""

    def count_error(self, exc: FanfareError) -> None:
        self.failed += 1
        name = type(exc).__name__
        self.error_types[name] = self.error_types.get(name, 0) + 1

    def snapshot(self) -> _Snapshot:
        duplicates = self.progress.duplicates if self.progress else 0
        return _Snapshot(
            done=self.ok + self.failed + duplicates,
            total=self.source.total,
            ok=self.ok,
            failed=self.failed,
            cache_hits=self.progress.cache_hits if self.progress else 0,
            wait=_rate_limit_wait(self.client) if self.client else 0.0,
            elapsed=time.monotonic() - self.started,
        )

    def summary(self, *, interrupted: bool = False) -> str:
        snap = self.snapshot()
        records = snap.ok + snap.failed
        rate = records / snap.elapsed if snap.elapsed > 0 else 0.0
        kinds = ", ".join(f"{n} {name}" for name, n in sorted(self.error_types.items()))
        text = (
            f"{snap.ok} ok, {snap.failed} failed{f' ({kinds})' if kinds else ''} of {records} "
            f"in {snap.elapsed:.2f}s ({rate:.0f}/s); cache hits {snap.cache_hits}; "
            f"rate-limit wait {snap.wait:.1f}s"
        )
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        if interrupted:
            text += "; interrupted"
        return text

    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed or self.stopped else EXIT_OK


# -- bulk: progress display ----------------------------------------------------------------


class _Display(Protocol):
    interval: float

    def update(self, snap: _Snapshot) -> None: ...

    def close(self) -> None: ...


class _PlainDisplay:
    """Without rich: a status line on stderr every few seconds (no escape codes)."""

    interval = 2.0

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def update(self, snap: _Snapshot) -> None:
        self._stream.write(f"{PROG}: {snap.status()}\n")
        self._stream.flush()

    def close(self) -> None:
        """Nothing to tear down."""


class _RichDisplay:
    """A rich progress bar on stderr: done/total, rate, ETA, cache hits, errors, wait."""

    interval = 0.1

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self._progress = Progress(
            SpinnerColumn(),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]}/s"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("cache hits {task.fields[hits]}"),
            TextColumn("errors {task.fields[errors]}"),
            TextColumn("rate-limit wait {task.fields[wait]}"),
            console=Console(file=stream),
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(
            "bulk", total=None, counts="0/?", rate="0", eta="?", hits=0, errors=0, wait="0.0s"
        )
        self._progress.start()
        self._closed = False

    def update(self, snap: _Snapshot) -> None:
        self._progress.update(
            self._task,
            completed=snap.done,
            total=snap.total,
            counts=f"{snap.done}/{'?' if snap.total is None else snap.total}",
            rate=f"{snap.rate:.0f}",
            eta=_format_duration(snap.eta),
            hits=snap.cache_hits,
            errors=snap.failed,
            wait=f"{snap.wait:.1f}s",
        )
        self._progress.refresh()

    def echo(self, text: str) -> None:
        """Print a result line above the display (stdout is this same terminal)."""
        self._progress.console.print(
            text, markup=False, highlight=False, emoji=False, soft_wrap=True
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._progress.stop()


def _same_terminal() -> bool:
    try:
        return sys.stdout.isatty() and os.path.samestat(os.fstat(1), os.fstat(2))
    except (OSError, ValueError):
        return False


def _open_display(args: argparse.Namespace, out: _Output) -> _Display | None:
    """The live display, only when stderr is a terminal and it was not turned off."""
    if args.no_progress or not sys.stderr.isatty():
        return None
    try:
        display = _RichDisplay(sys.stderr)
    except ImportError:
        return _PlainDisplay(sys.stderr)
    if _same_terminal():
        out.echo = display.echo
    return display


async def _refresh(display: _Display, run: _BulkRun) -> NoReturn:
    while True:
        display.update(run.snapshot())
        await asyncio.sleep(display.interval)


# -- bulk: the command ---------------------------------------------------------------------


def _cmd_bulk(args: argparse.Namespace) -> int:
    try:
        source = _open_source(args.file)
    except OSError as exc:
        _say(f"cannot read {args.file}: {exc.strerror or exc}")
        return EXIT_USAGE
    if source.total is None and source.path is not None:
        _count_in_background(source)
    if source.fd == 0 and sys.stdin.isatty():
        _say("reading ids from the terminal, one per line; end with Ctrl-D")
    run = _BulkRun(source)
    try:
        asyncio.run(_bulk(args, run, _Output(sys.stdout.buffer)))
    except FanfareConfigError as exc:
        _say(f"configuration error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say(run.summary(interrupted=True))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        run.stopped = "stdout was closed"
    finally:
        if source.path is not None:
            os.close(source.fd)
    _say(run.summary())
    return run.exit_code()


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit flush cannot fail."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


async def _bulk(args: argparse.Namespace, run: _BulkRun, out: _Output) -> None:
    async with _make_client(args) as client:
        bulk = client.iter_group_audiences(_read_ids(run, out), concurrency=args.concurrency)
        run.progress, run.client = bulk.progress, client
        display = _open_display(args, out)
        refresher = asyncio.ensure_future(_refresh(display, run)) if display else None
        try:
            async with bulk:
                async for group_id, result in bulk:
                    if _emit(out, run, group_id, result):
                        break
        finally:
            if refresher is not None and display is not None:
                refresher.cancel()
                display.update(run.snapshot())
                display.close()
                out.echo = None


def _emit(out: _Output, run: _BulkRun, group_id: str, result: Any) -> bool:
    """Write one record; True when the run must stop (the key was rejected)."""
    if not isinstance(result, FanfareError):
        out.ok(group_id, result)
        run.ok += 1
        return False
    out.error(group_id, result)
    run.count_error(result)
    if isinstance(result, AuthenticationError):
        run.stopped = "the API rejected the secret key (401)"
        return True
    return False


async def _read_ids(run: _BulkRun, out: _Output) -> AsyncIterator[str]:
    """The valid ids of the input, lazily; invalid lines are reported with their number."""
    reader = _ChunkReader(run.source.fd)
    lines = _LineSplitter()
    while True:
        chunk = await reader.read()
        for lineno, line in lines.feed(chunk):
            parsed = _parse_line(line)
            if isinstance(parsed, InvalidGroupIdError):
                raw = (line or b"")[:300].strip().decode("utf-8", "replace")
                out.error(raw, parsed, line=lineno)
                run.count_error(parsed)
            elif parsed is not None:
                yield parsed
        if not chunk:
            return


# -- mock-server ---------------------------------------------------------------------------


def _cmd_mock_server(args: argparse.Namespace) -> int:
    if args.ids_file:
        from ._fake_data import group_ids

        try:
            with open(args.ids_file, "w", encoding="utf-8") as ids:
                ids.writelines(f"{gid}\n" for gid in group_ids(args.seed, args.groups))
        except OSError as exc:
            _say(f"cannot write {args.ids_file}: {exc.strerror or exc}")
            return EXIT_USAGE
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        _say(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def _serve(args: argparse.Namespace) -> None:
    from .testing import MockFanfareServer

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
        _say(f"stopped after {count} request{'' if count == 1 else 's'}")


def _announce(server: Any, args: argparse.Namespace) -> None:
    url, key = server.url, server.secret_key
    limit = f"{args.rate_limit} per {args.rate_period:g}s" if args.rate_limit else "none"
    print(f"url: {url}")
    print(f"secret: {key}")
    print(f"groups: {len(server.group_ids)} (e.g. {server.group_ids[0]}); rate limit: {limit}")
    print(f"export {ENV_BASE_URL}={shlex.quote(url)} {ENV_SECRET_KEY}={shlex.quote(key)}")
    print("serving; Ctrl-C to stop", flush=True)


# -- demo ----------------------------------------------------------------------------------


@dataclass
class _Pass:
    """One demo pass: groups, requests made, seconds, cache hits, failures."""

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


def _cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    from .testing import MockFanfareServer

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
            first = await _demo_pass(client, server, args.concurrency)
            _print(first.line(1))
            second = await _demo_pass(client, server, args.concurrency)
            _print(second.line(2))
    return _demo_verdict(first, second)


def _pregenerate(server: Any) -> float:
    """Build every group's body up front, so the passes time the client, not the fake data."""
    started = time.perf_counter()
    for group_id in server.group_ids:
        server.set_group(group_id, server.body_for(group_id))
    return time.perf_counter() - started


async def _demo_pass(client: FanfareClient, server: Any, concurrency: int) -> _Pass:
    requests, hits = server.total_requests, client.cache_stats.hits
    started = time.perf_counter()
    results = await client.get_many_group_audiences(server.group_ids, concurrency=concurrency)
    seconds = time.perf_counter() - started
    failures = sum(isinstance(r, FanfareError) for r in results.values())
    return _Pass(
        groups=len(results),
        requests=server.total_requests - requests,
        seconds=seconds,
        hits=client.cache_stats.hits - hits,
        failures=failures,
    )


def _demo_verdict(first: _Pass, second: _Pass) -> int:
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
