"""Helpers shared by the test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fanfare_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FanfareClient,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from fanfare_async.testing import MockFanfareServer


@asynccontextmanager
async def client_for(server: MockFanfareServer, **options: Any) -> AsyncIterator[FanfareClient]:
    """A client pointed at the test double, with its key, closed on exit."""
    options.setdefault("rate_limit", None)
    async with FanfareClient(server.secret_key, base_url=server.url, **options) as client:
        yield client


#: Every status Fanfare documents, with the exception class it must become.
STATUS_CLASSES: list[tuple[int, type[APIError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (413, APIError),
    (422, BadRequestError),
    (423, APIError),
    (429, RateLimitError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
]
