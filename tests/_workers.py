"""Client processes for the multi-process tests: tests/_tier_worker.py run as a script."""

from __future__ import annotations

import json
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.text import TextReceiveStream

from fanfare_async.testing import MockFanfareServer

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "_tier_worker.py"


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with the checkout importable (``tests._...``) in the child."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def worker_command(redis_url: str, server: MockFanfareServer, *args: str) -> list[str]:
    """The command of one worker against ``server`` and the Redis at ``redis_url``."""
    return [sys.executable, str(WORKER), redis_url, server.url, server.secret_key, *args]


async def run_workers(commands: list[list[str]], *, within: float = 60) -> list[dict[str, Any]]:
    """Start the workers (each started with ``--wait``), release them together once all
    are ready, and collect each one's JSON summary."""
    env = child_env()
    async with AsyncExitStack() as stack:
        processes = [
            await stack.enter_async_context(await anyio.open_process(command, env=env))
            for command in commands
        ]
        lines = [TextReceiveStream(p.stdout) for p in processes if p.stdout]
        with anyio.fail_after(within):
            for stream in lines:
                assert (await stream.receive()).strip() == "ready"
            for process in processes:
                assert process.stdin is not None
                await process.stdin.send(b"go\n")
            outputs = []
            for stream, process in zip(lines, processes, strict=True):
                await process.wait()
                outputs.append(json.loads("".join([chunk async for chunk in stream])))
    return outputs
