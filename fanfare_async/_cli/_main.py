"""The entry point: parse the command line and run the chosen subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ._args import build_parser
from ._exit_codes import EXIT_INTERRUPTED, EXIT_USAGE
from ._messages import say


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
        say("interrupted")
        return EXIT_INTERRUPTED
