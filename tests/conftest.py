"""Shared fixtures: the anyio plugin on asyncio, a clean environment, the test double and
a redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from fanfare_async.testing import MockFanfareServer

if TYPE_CHECKING:
    import redis.asyncio

    from ._redis_server import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_fanfare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key or URL from the environment."""
    monkeypatch.delenv("FANFARE_SECRET_KEY", raising=False)
    monkeypatch.delenv("FANFARE_BASE_URL", raising=False)


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff steps of milliseconds, so retry tests stay fast (the rule is tested pure)."""
    monkeypatch.setattr("fanfare_async._config.BACKOFF_BASE", 0.001)
    monkeypatch.setattr("fanfare_async._config.BACKOFF_MAX", 0.01)


@pytest.fixture
async def server() -> AsyncIterator[MockFanfareServer]:
    """A running test double with 50 generated groups."""
    async with MockFanfareServer(seed=7, groups=50) as double:
        yield double


@pytest.fixture
async def srv() -> AsyncIterator[RedisServer]:
    """A fresh redis-server of the test's own (skipped without one; a failure under CI)."""
    from ._redis_server import redis_server

    async with redis_server() as server:
        yield server


@pytest.fixture
async def raw(srv: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain redis-py client on ``srv``, to look at (or tamper with) what the tier wrote."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(srv.url)
    try:
        yield client
    finally:
        await client.aclose()
