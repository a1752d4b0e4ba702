"""``get ID...``: print the audiences of the given groups as one JSON document.

The document holds every id that succeeded; each failure goes to stderr, and any
failure makes the exit code 1. When no id succeeded, stdout stays empty.
"""

from __future__ import annotations

import argparse
import asyncio

from .._exceptions import FanfareConfigError, FanfareError
from .._models import Audience
from ._client_factory import make_client
from ._exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ._messages import say
from ._output import audiences_document, error_info, write_json


def run(args: argparse.Namespace) -> int:
    """Print the document of the ids that succeeded, then each failure on stderr."""
    try:
        results = asyncio.run(_look_up(args))
    except FanfareConfigError as exc:
        say(f"configuration error: {exc}")
        return EXIT_USAGE
    audiences: dict[str, list[Audience]] = {}
    failures: list[tuple[str, FanfareError]] = []
    for group_id, result in results.items():
        if isinstance(result, FanfareError):
            failures.append((group_id, result))
        else:
            audiences[group_id] = result
    if audiences:
        write_json(audiences_document(audiences, single=len(args.ids) == 1))
    for group_id, error in failures:
        say(_describe_failure(group_id, error))
    return EXIT_FAILED if failures else EXIT_OK


async def _look_up(args: argparse.Namespace) -> dict[str, list[Audience] | FanfareError]:
    async with make_client(args) as client:
        return await client.get_many_group_audiences(args.ids, concurrency=args.concurrency)


def _describe_failure(group_id: str, exc: FanfareError) -> str:
    """``ID: Type (status): message``, the id quoted when blank or padded."""
    info = error_info(exc)
    if not group_id or group_id.strip() != group_id:
        group_id = repr(group_id)
    status = f" ({info['status']})" if info["status"] is not None else ""
    return f"{group_id}: {info['type']}{status}: {info['message']}"
