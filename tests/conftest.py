"""Shared fixtures: the anyio plugin on asyncio, and a clean environment."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_fanfare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key or URL from the environment."""
    monkeypatch.delenv("FANFARE_SECRET_KEY", raising=False)
    monkeypatch.delenv("FANFARE_BASE_URL", raising=False)
