"""Helpers shared by the test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fanfare_async import FanfareClient
from fanfare_async.testing import MockFanfareServer


@asynccontextmanager
async def client_for(server: MockFanfareServer, **options: Any) -> AsyncIterator[FanfareClient]:
    """A client pointed at the test double, with its key, closed on exit."""
    options.setdefault("rate_limit", None)
    async with FanfareClient(server.secret_key, base_url=server.url, **options) as client:
        yield client
