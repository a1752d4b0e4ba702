"""A Starlette app serving a group's audiences, with one FanfareClient per worker process.

Run it from the repository root (``pip install -e ".[dev]"`` brings Starlette, uvicorn and
redis-py), against the test double here or the real API::

    fanfare-async mock-server --port 8080 &      # prints the `export ...` line to run next
    export FANFARE_BASE_URL=http://127.0.0.1:8080/api FANFARE_SECRET_KEY=sk_test_...  # as printed
    export FANFARE_REDIS_URL=redis://127.0.0.1:6379/0    # optional: one cache for all workers
    uvicorn examples.webapp.app:app --workers 2 --port 8000
    curl -i http://127.0.0.1:8000/groups/<group id>/audiences

Environment, read once per worker at startup:

- ``FANFARE_SECRET_KEY``, ``FANFARE_BASE_URL``: read by :class:`FanfareClient` itself.
- ``FANFARE_REDIS_URL``: when set, the workers share a :class:`fanfare_async.redis.RedisTier`
  (needs the ``redis`` extra): one cache, one request per group across workers, one rate-limit
  budget. Unset: each worker has its own in-process cache.
- ``FANFARE_REDIS_TIMEOUT``: seconds one Redis operation may take (the tier's ``timeout``).
- ``FANFARE_MAX_RETRY_WAIT``: the longest ``Retry-After`` the client waits out itself
  (``max_retry_wait``, default 60 s); a longer one answers 503 at once. A web app may want
  a few seconds, so that no request hangs on a rate limit for long.

Routes:

- ``GET /groups/{group_id}/audiences``: the audiences as the API's own JSON (camelCase).
  404 for an unknown group, 400 for an id the client refuses, 503 with ``Retry-After``
  when rate limited, 502 for any other failure of the API. Error bodies are
  ``{"error": ..., "message": ...}`` and never carry the secret key or the API's URL.
- ``GET /healthz``: ``{"status": "ok", "shared_tier": bool}``, without touching the API.

Every response carries ``X-Worker-Pid``, the worker that answered (to see the workers share
the load; drop it in a real app).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fanfare_async import (
    APIError,
    FanfareClient,
    FanfareError,
    InvalidGroupIdError,
    NotFoundError,
    RateLimitError,
)

__all__ = ["PID_HEADER", "app", "create_app", "retry_after_header"]

logger = logging.getLogger("examples.webapp")

#: The response header naming the worker process that answered.
PID_HEADER = "X-Worker-Pid"


def _enc_hook(obj: Any) -> Any:
    # The free-form JSON fields (metadata, source_data, issues) read as read-only
    # Mapping / Sequence views; msgspec encodes what the Structs store, and falls back
    # to this for a view, should one reach it.
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence):
        return list(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def _json(status: int, content: Any, headers: Mapping[str, str] | None = None) -> Response:
    all_headers = {PID_HEADER: str(os.getpid()), **(headers or {})}
    return Response(
        _encoder.encode(content), status, headers=all_headers, media_type="application/json"
    )


def _error(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return _json(status, {"error": error, "message": message}, headers)


def retry_after_header(seconds: float | None) -> str:
    """``Retry-After`` for a wait of ``seconds``: whole seconds rounded up, at least 1
    (1 when the API named no wait)."""
    if seconds is None or not math.isfinite(seconds):
        return "1"
    return str(max(1, math.ceil(seconds)))


def _env_seconds(name: str) -> float | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None


def _client(request: Request) -> FanfareClient:
    client: FanfareClient = request.app.state.client
    return client


async def group_audiences(request: Request) -> Response:
    """``GET /groups/{group_id}/audiences``."""
    group_id: str = request.path_params["group_id"]
    try:
        audiences = await _client(request).get_group_audiences(group_id)
    except InvalidGroupIdError as exc:  # refused before any I/O; the text is about the id
        return _error(400, "invalid_group_id", str(exc))
    except NotFoundError:
        return _error(404, "not_found", "no such group")
    except RateLimitError as exc:
        headers = {"Retry-After": retry_after_header(exc.retry_after)}
        return _error(503, "rate_limited", "rate limited by the API, retry later", headers)
    except FanfareError as exc:
        # str(exc) names the API's URL: log it here, answer with the kind of failure only.
        logger.warning("lookup of group %r failed: %s", group_id, exc)
        message = f"upstream answered {exc.status_code}" if isinstance(exc, APIError) else None
        return _error(502, "upstream_error", message or f"upstream failed ({type(exc).__name__})")
    return _json(200, audiences)


async def healthz(request: Request) -> Response:
    """``GET /healthz``: the worker is up (no API request)."""
    return _json(200, {"status": "ok", "shared_tier": _client(request).shared is not None})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """One client (and, with ``FANFARE_REDIS_URL``, one tier) per worker process, closed
    on shutdown: the client first, then the tier it was given."""
    options: dict[str, Any] = {}
    max_retry_wait = _env_seconds("FANFARE_MAX_RETRY_WAIT")
    if max_retry_wait is not None:
        options["max_retry_wait"] = max_retry_wait
    async with AsyncExitStack() as stack:
        tier = None
        if os.environ.get("FANFARE_REDIS_URL"):
            from fanfare_async.redis import RedisTier  # the redis extra, only when asked for

            timeout = _env_seconds("FANFARE_REDIS_TIMEOUT")
            tier = RedisTier() if timeout is None else RedisTier(timeout=timeout)
            stack.push_async_callback(tier.aclose)
        client = FanfareClient(shared=tier, **options)  # key and URL from the environment
        stack.push_async_callback(client.aclose)  # runs before the tier's aclose
        if tier is not None and not await tier.connect():
            # Not fatal: lookups go to the API until Redis answers (the tier retries by itself).
            logger.warning("Redis did not answer at startup; serving without the shared tier")
        app.state.client = client
        yield


def create_app() -> Starlette:
    """A new app; its lifespan builds the client from the environment."""
    routes = [
        Route("/groups/{group_id}/audiences", group_audiences, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


app = create_app()
