"""FanfareClient: the public entry point."""

from __future__ import annotations

import asyncio
import functools
import uuid
from types import TracebackType

import aiohttp

from ._config import (
    DEFAULT_CACHE_MAXSIZE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_MAX_TTL,
    DEFAULT_MIN_TTL,
    DEFAULT_NEGATIVE_TTL,
    DEFAULT_RATE_LIMIT,
    DEFAULT_STALE_IF_ERROR,
    DEFAULT_TIMEOUT,
    DEFAULT_TTL,
    CacheConfig,
    RateLimit,
    TransportConfig,
    resolve_base_url,
    resolve_secret_key,
    secret_hint,
)
from ._exceptions import FanfareClientClosedError, FanfareDecodeError
from ._ids import canonical_group_id, encode_path_segment
from ._models import Audience, decode_group_audiences
from ._ratelimit import RateLimiter, RateLimitState
from ._transport import Transport


def _cancelling() -> bool:
    """Whether the current task has a cancellation pending (best effort on 3.10)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


class FanfareClient:
    """Async client for the Fanfare Admin API's group audiences.

    Use it as ``async with FanfareClient() as client:`` or call :meth:`aclose`.
    The secret key comes from ``secret_key`` or ``FANFARE_SECRET_KEY``; the API
    root from ``base_url`` or ``FANFARE_BASE_URL``.
    """

    def __init__(
        self,
        secret_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        cache_maxsize: int = DEFAULT_CACHE_MAXSIZE,
        default_ttl: float = DEFAULT_TTL,
        min_ttl: float = DEFAULT_MIN_TTL,
        max_ttl: float = DEFAULT_MAX_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        stale_if_error: float = DEFAULT_STALE_IF_ERROR,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        key = resolve_secret_key(secret_key)
        self._key_hint = secret_hint(key)
        url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError("rate_limit must be a RateLimit or None")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError("session must be an aiohttp.ClientSession or None")
        transport_config = TransportConfig.build(
            base_url=url,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
        )
        self._cache_config = CacheConfig.build(
            maxsize=cache_maxsize,
            default_ttl=default_ttl,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            negative_ttl=negative_ttl,
            stale_if_error=stale_if_error,
        )
        self._base_url = str(url)
        self._max_connections = transport_config.max_connections
        self._limiter = RateLimiter(rate_limit)
        self._transport = Transport(
            transport_config, secret_key=key, limiter=self._limiter, session=session
        )
        self._inflight: dict[str, asyncio.Task[list[Audience]]] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<FanfareClient {state} base_url={self._base_url!r} key={self._key_hint!r}>"

    async def __aenter__(self) -> FanfareClient:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    @property
    def rate_limit_state(self) -> RateLimitState:
        """The rate-limit headers as last seen, and whether the client is holding requests."""
        return self._limiter.state

    def _check_open(self) -> None:
        if self._closed:
            raise FanfareClientClosedError("the client is closed")

    async def aclose(self) -> None:
        """Close the client: calls in flight end with FanfareClientClosedError; idempotent.

        A session passed in by the caller is left open.
        """
        if self._closed:
            return
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._transport.aclose()

    async def get_group_audiences(
        self, group_id: str | uuid.UUID, *, use_cache: bool = True
    ) -> list[Audience]:
        """The audiences of one group; each call returns its own list.

        Raises:
            TypeError: ``group_id`` is not a ``str`` or ``uuid.UUID``.
            InvalidGroupIdError: the id is empty, too long or has control characters.
            FanfareError: any failure talking to the API (see the error tree).
        """
        key = canonical_group_id(group_id)
        self._check_open()
        return list(await self._fetch_shared(key))

    async def _fetch_shared(self, key: str) -> list[Audience]:
        """Single-flight: callers of one key share one fetch task, which a
        cancelled caller never cancels."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(key))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._fetch_done, key))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and self._closed and not _cancelling():
                raise FanfareClientClosedError(
                    "the client was closed while the request was in flight"
                ) from None
            raise

    def _fetch_done(self, key: str, task: asyncio.Task[list[Audience]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: waiters may all have gone

    async def _fetch(self, key: str) -> list[Audience]:
        segment = encode_path_segment(key)
        fetched = await self._transport.fetch(segment)
        try:
            return decode_group_audiences(fetched.body)
        except FanfareDecodeError as exc:
            raise FanfareDecodeError(
                f"GET {self._transport.url_for(segment)}: {exc}", path=exc.path
            ) from exc
