"""The client of ``get`` and ``bulk``, built from the client options and the environment."""

from __future__ import annotations

import argparse
import os

from .._client import FanfareClient
from .._config import DEFAULT_MAX_CONNECTIONS, DEFAULT_RATE_LIMIT, ENV_SECRET_KEY, RateLimit
from .._exceptions import FanfareConfigError


def make_client(args: argparse.Namespace) -> FanfareClient:
    """A client from the options and the environment; FanfareConfigError when unusable."""
    if not os.environ.get(ENV_SECRET_KEY):
        raise FanfareConfigError(f"no secret key: set the {ENV_SECRET_KEY} environment variable")
    rate = RateLimit(args.rate_limit, DEFAULT_RATE_LIMIT.period) if args.rate_limit else None
    return FanfareClient(
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_connections=args.concurrency or DEFAULT_MAX_CONNECTIONS,
        rate_limit=rate,
    )
