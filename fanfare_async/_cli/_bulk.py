"""``bulk [FILE|-]``: look up the ids of a file or stdin, one NDJSON record per distinct id."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from .._exceptions import AuthenticationError, FanfareConfigError, FanfareError
from .._models import Audience
from ._bulk_run import BulkRun
from ._client_factory import make_client
from ._exit_codes import EXIT_INTERRUPTED, EXIT_USAGE
from ._input import open_source, read_ids
from ._messages import say
from ._output import RecordWriter
from ._progress import live_progress


def run(args: argparse.Namespace) -> int:
    """Run the command; a summary line goes to stderr whatever happens."""
    try:
        source = open_source(args.file)
    except OSError as exc:
        say(f"cannot read {args.file}: {exc.strerror or exc}")
        return EXIT_USAGE
    if source.fd == 0 and sys.stdin.isatty():
        say("reading ids from the terminal, one per line; end with Ctrl-D")
    bulk_run = BulkRun(source)
    try:
        asyncio.run(_look_up(args, bulk_run, RecordWriter(sys.stdout.buffer)))
    except FanfareConfigError as exc:
        say(f"configuration error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say(bulk_run.summary(interrupted=True))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        bulk_run.stopped = "stdout was closed"
    finally:
        source.close()
    say(bulk_run.summary())
    return bulk_run.exit_code()


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit flush cannot fail."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


async def _look_up(args: argparse.Namespace, bulk_run: BulkRun, out: RecordWriter) -> None:
    def on_invalid(shown: str, exc: FanfareError, lineno: int) -> None:
        out.error(shown, exc, line=lineno)
        bulk_run.count_error(exc)

    async with make_client(args) as client:
        ids = read_ids(bulk_run.source, on_invalid)
        bulk = client.iter_group_audiences(ids, concurrency=args.concurrency)
        bulk_run.progress, bulk_run.client = bulk.progress, client
        async with (
            live_progress(bulk_run.snapshot, out, enabled=not args.no_progress),
            bulk,
        ):
            async for group_id, result in bulk:
                if _emit(out, bulk_run, group_id, result):
                    break


def _emit(
    out: RecordWriter, bulk_run: BulkRun, group_id: str, result: list[Audience] | FanfareError
) -> bool:
    """Write one record; True when the run must stop (the key was rejected)."""
    if not isinstance(result, FanfareError):
        out.ok(group_id, result)
        bulk_run.ok += 1
        return False
    out.error(group_id, result)
    bulk_run.count_error(result)
    if isinstance(result, AuthenticationError):
        bulk_run.stopped = "the API rejected the secret key (401)"
        return True
    return False
