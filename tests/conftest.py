"""Shared fixtures: the anyio plugin on asyncio, and a clean environment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fanfare_async.testing import MockFanfareServer


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
