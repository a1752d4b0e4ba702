"""The client of ``get`` and ``bulk``, built from the client options and the environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .._client import FanfareClient
from .._config import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RATE_LIMIT,
    ENV_REDIS_URL,
    ENV_SECRET_KEY,
    RateLimit,
)
from .._exceptions import FanfareConfigError

if TYPE_CHECKING:
    from ..redis import RedisTier


@asynccontextmanager
async def make_client(args: argparse.Namespace) -> AsyncIterator[FanfareClient]:
    """A client from the options and the environment, and the Redis tier it shares when
    ``--redis`` or ``FANFARE_REDIS_URL`` names one (both closed on exit);
    FanfareConfigError when unusable."""
    if not os.environ.get(ENV_SECRET_KEY):
        raise FanfareConfigError(f"no secret key: set the {ENV_SECRET_KEY} environment variable")
    rate = RateLimit(args.rate_limit, DEFAULT_RATE_LIMIT.period) if args.rate_limit else None
    tier = _tier(getattr(args, "redis", None) or os.environ.get(ENV_REDIS_URL) or None)
    try:
        async with FanfareClient(
            base_url=args.base_url,
            timeout=args.timeout,
            max_retries=args.max_retries,
            max_connections=args.concurrency or DEFAULT_MAX_CONNECTIONS,
            rate_limit=rate,
            shared=tier,
        ) as client:
            yield client
    finally:
        if tier is not None:
            await tier.aclose()


def _tier(url: str | None) -> RedisTier | None:
    if url is None:
        return None
    try:
        from ..redis import RedisTier
    except ImportError as exc:
        raise FanfareConfigError(str(exc)) from None
    try:
        return RedisTier(url)
    except ValueError as exc:
        raise FanfareConfigError(str(exc)) from None
