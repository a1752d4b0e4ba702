"""Telling a task's own cancellation from the cancellation of what it awaits."""

from __future__ import annotations

import asyncio


def cancelling() -> bool:
    """Whether the current task has a cancellation pending (always False on 3.10)."""
    task = asyncio.current_task()
    pending = getattr(task, "cancelling", None)
    return bool(pending()) if pending is not None else False
