"""FanfareClient: the public entry point."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from ._cache import CacheStats, Clock, GroupCache
from ._coalesce import Coalescer
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
    DEFAULT_REFRESH_AHEAD,
    DEFAULT_STALE_IF_ERROR,
    DEFAULT_TIMEOUT,
    DEFAULT_TTL,
    MAX_REFRESHES_AT_ONCE,
    CacheConfig,
    RateLimit,
    TransportConfig,
    resolve_base_url,
    resolve_secret_key,
    secret_hint,
)
from ._exceptions import (
    FanfareClientClosedError,
    FanfareError,
    InvalidGroupIdError,
)
from ._fanout import BulkIterator, GroupIds
from ._ids import canonical_group_id
from ._loader import GroupLoader, Loaded
from ._models import Audience
from ._ratelimit import BACKGROUND, RateLimiter, RateLimitState
from ._shared import SharedCache, SharedTier
from ._transport import Transport

if TYPE_CHECKING:
    from ._otel import ClientTelemetry

logger = logging.getLogger("fanfare_async")

#: False once importing opentelemetry failed (no otel extra): not tried per client again.
_otel_available = True


def _telemetry_for(client: FanfareClient) -> ClientTelemetry | None:
    """OpenTelemetry for ``client`` when opentelemetry-api is installed, else None; the
    only place that imports :mod:`._otel` (importing fanfare_async never does)."""
    global _otel_available
    if not _otel_available:
        return None
    try:
        from ._otel import ClientTelemetry
    except ImportError:
        _otel_available = False
        return None
    telemetry = ClientTelemetry(
        client, base_url=client._base_url, cache=client._cache, limiter=client._limiter
    )
    client._transport.attempt_hook = telemetry.attempt
    return telemetry


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
        refresh_ahead: float = DEFAULT_REFRESH_AHEAD,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        shared: SharedTier | None = None,
        clock: Clock | None = None,
    ) -> None:
        key = resolve_secret_key(secret_key)
        self._key_hint = secret_hint(key)
        url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError("rate_limit must be a RateLimit or None")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError("session must be an aiohttp.ClientSession or None")
        if shared is not None and not callable(getattr(shared, "attach", None)):
            raise TypeError("shared must be a shared tier (e.g. fanfare_async.redis.RedisTier)")
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
            refresh_ahead=refresh_ahead,
        )
        self._base_url = str(url)
        self._max_connections = transport_config.max_connections
        self._limiter = RateLimiter(rate_limit)
        self._transport = Transport(
            transport_config, secret_key=key, limiter=self._limiter, session=session
        )
        self._clock: Clock = time.monotonic if clock is None else clock
        self._cache = GroupCache(self._cache_config, clock=self._clock)
        self._epoch = 0
        self._closed = False
        self._shared = shared
        self._shared_view: SharedCache | None = None
        if shared is not None:
            view = self._shared_view = shared.attach(
                base_url=self._base_url, secret_key=key, on_invalidate=self._dropped_elsewhere
            )
            self._limiter.share(view.budget, lambda: view.available)
        # The floors of a lookup below the in-process cache.
        self._loader = GroupLoader(
            transport=self._transport,
            cache=self._cache,
            config=self._cache_config,
            clock=self._clock,
            epoch=self._current_epoch,
            shared=self._shared_view,
        )
        self._flights: Coalescer[Loaded] = Coalescer(self._loader.load)
        self._runners: set[asyncio.Task[None]] = set()
        self._refresh_ahead = self._cache_config.refresh_ahead > 0
        self._refreshing = 0
        self._telemetry = _telemetry_for(self)

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
    def rate_limit_wait_seconds(self) -> float:
        """Total seconds requests of this client have waited on the rate limiter."""
        return self._limiter.waited_seconds

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
        self._cache.clear()  # hits must not outlive the client
        if self._shared_view is not None:
            self._shared_view.detach()
        runners = list(self._runners)
        for task in runners:
            task.cancel()
        await self._flights.close()
        if runners:
            await asyncio.gather(*runners, return_exceptions=True)
        await self._loader.close()
        await self._transport.aclose()

    @property
    def shared(self) -> SharedTier | None:
        """The shared tier this client was given, or None."""
        return self._shared

    def _current_epoch(self) -> int:
        return self._epoch

    def _dropped_elsewhere(self, key: str | None) -> None:
        """Some process invalidated ``key`` (None: cleared everything) on the tier."""
        self._epoch += 1
        if key is None:
            self._flights.forget_all()
            self._cache.clear()
        else:
            self._flights.forget(key)
            self._cache.invalidate(key)

    @property
    def cache_stats(self) -> CacheStats:
        """Counters of the cache: hits, misses, coalesced, stale_served, evictions, ..."""
        return self._cache.stats()

    async def invalidate(self, group_id: str | uuid.UUID) -> None:
        """Drop one group from the cache (and from the shared tier, for every client
        sharing it); a fetch already in flight will not store it."""
        key = canonical_group_id(group_id)
        self._dropped_elsewhere(key)
        view = self._shared_view
        if view is not None and view.available:
            await self._loader.tier_call(view.invalidate(key))

    async def clear_cache(self) -> None:
        """Drop every cached group, here and on the shared tier (the counters are kept)."""
        self._dropped_elsewhere(None)
        view = self._shared_view
        if view is not None and view.available:
            await self._loader.tier_call(view.clear())

    async def get_group_audiences(
        self, group_id: str | uuid.UUID, *, use_cache: bool = True
    ) -> list[Audience]:
        """The audiences of one group, from the cache when fresh; each call returns its own list.

        ``use_cache=False`` skips reading the cache but still stores the answer.

        Raises:
            TypeError: ``group_id`` is not a ``str`` or ``uuid.UUID``.
            InvalidGroupIdError: the id is empty, too long or has control characters.
            FanfareError: any failure talking to the API (see the error tree).
        """
        # The hit path: one clock read against the cache's horizon, one dict lookup
        # and a move of the key to the end of that dict (the LRU order). Only
        # canonical ids are keys, so a found key needs no validation; anything
        # else (another spelling, a UUID object, a bad id, a cached 404) takes
        # _lookup.
        if use_cache and type(group_id) is str:
            cache = self._cache
            if self._clock() < cache.horizon:
                fresh = cache.fresh
                audiences = fresh.pop(group_id, None)
                if audiences is not None:
                    fresh[group_id] = audiences
                    if type(audiences) is tuple:  # else a body not read yet: _lookup decodes it
                        cache.hits += 1
                        return [*audiences]  # a new list ([*t] skips the call list(t) makes)
        return await self._lookup(canonical_group_id(group_id), use_cache)

    async def _lookup(
        self, key: str, use_cache: bool, *, in_worker: bool = False
    ) -> list[Audience]:
        """The slow path, for a canonical id: the cache (fresh or a cached 404), then a
        load through coalescing (see :mod:`._coalesce`). A bulk worker's miss
        (``in_worker``: the worker has just found no fresh group) runs in the worker's
        own task; ``use_cache=False`` loads alone (nobody can join it)."""
        self._check_open()
        cache = self._cache
        flights = self._flights
        telemetry = self._telemetry
        if not use_cache:
            epoch = self._epoch
            load = flights.alone(key, lambda: self._loader.load_uncached(key, epoch))
            loaded = await (load if telemetry is None else telemetry.lookup(key, False, load))
            return list(loaded.audiences)
        now = self._clock()
        if not in_worker:
            audiences = cache.fresh_audiences(key, now)
            if audiences is not None:
                return [*audiences]
        if self._refresh_ahead:
            audiences = cache.due_for_refresh(key, now)
            if audiences is not None:
                self._start_refresh(key, now)
                return [*audiences]
        not_found = cache.fresh_not_found(key, now)
        if not_found is not None:
            raise not_found
        coalesced = flights.in_flight(key)
        if coalesced:
            cache.coalesced += 1
            load = flights.join(key, self._epoch)
        else:
            cache.misses += 1
            if in_worker:
                load = flights.in_caller(key, self._epoch)
            else:
                load = flights.join(key, self._epoch)
        # The lookup span (telemetry) is current while the load runs or is spawned.
        loaded = await (load if telemetry is None else telemetry.lookup(key, coalesced, load))
        if loaded.stale:
            cache.stale_served += 1
        return list(loaded.audiences)

    def _start_refresh(self, key: str, now: float) -> None:
        """Refresh ``key`` in the background, unless a load of it is in flight already
        or too many refreshes run (the next hit tries again)."""
        if self._refreshing >= MAX_REFRESHES_AT_ONCE or self._flights.in_flight(key):
            return
        fresh_for = self._cache.entries[key].expires - now
        epoch = self._epoch
        task = self._flights.start(key, lambda: self._refresh(key, epoch, fresh_for))
        self._refreshing += 1  # until its task ends, even if cancelled before it started
        task.add_done_callback(self._refresh_ended)

    def _refresh_ended(self, task: asyncio.Task[None]) -> None:
        self._refreshing -= 1

    async def _refresh(self, key: str, epoch: int, fresh_for: float) -> Loaded:
        cache = self._cache
        BACKGROUND.set(True)  # this flight's own task: its requests yield to foreground ones
        try:
            loaded = await self._loader.load(key, epoch, fresher_than=fresh_for)
        except FanfareError:
            cache.refresh_errors += 1
            raise
        if epoch == self._epoch:
            cache.refreshes += 1
        return loaded

    async def _bulk_lookup(self, group_id: Any) -> tuple[list[Audience] | FanfareError, bool]:
        """One id of a bulk run: its audiences or its error, and whether the cache answered."""
        try:
            key = canonical_group_id(group_id)
        except TypeError as exc:
            return InvalidGroupIdError(str(exc)), False
        except InvalidGroupIdError as exc:
            return exc, False
        audiences = self._cache.fresh_audiences(key, self._clock())
        if audiences is not None:
            return [*audiences], True
        try:
            return await self._lookup(key, True, in_worker=True), False
        except FanfareClientClosedError:
            raise
        except FanfareError as exc:
            return exc, False

    def _bulk_concurrency(self, concurrency: int | None) -> int:
        if concurrency is None:
            return self._max_connections
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int or None, got {concurrency!r}")
        return concurrency

    def iter_group_audiences(
        self, group_ids: GroupIds, *, concurrency: int | None = None
    ) -> BulkIterator:
        """Look up many groups; yields ``(group_id, audiences or FanfareError)`` as each
        completes.

        ``group_ids`` may be any iterable or async iterable, read lazily: at most
        ``concurrency`` lookups (default ``max_connections``) run at once and memory
        does not grow with the input. Each distinct id is answered once; one failing
        id never stops the others. Leaving the loop early stops all work. The
        iterator's ``progress`` holds live counters.
        """
        self._check_open()
        return BulkIterator(
            self._bulk_lookup,
            group_ids,
            concurrency=self._bulk_concurrency(concurrency),
            register=self._register_runner,
        )

    async def get_many_group_audiences(
        self, group_ids: GroupIds, *, concurrency: int | None = None
    ) -> dict[str, list[Audience] | FanfareError]:
        """Look up many groups: every distinct id (as given, in first-seen order) maps to
        its audiences or its own error. Invalid ids get their InvalidGroupIdError."""
        self._check_open()
        results: dict[str, list[Audience] | FanfareError] = {}
        pending = InvalidGroupIdError("not looked up")

        def on_seen(key: Any) -> None:
            results[key] = pending

        async with BulkIterator(
            self._bulk_lookup,
            group_ids,
            concurrency=self._bulk_concurrency(concurrency),
            on_seen=on_seen,
            register=self._register_runner,
        ) as bulk:
            async for key, result in bulk:
                results[key] = result
        return results

    def _register_runner(self, task: asyncio.Task[None]) -> None:
        self._runners.add(task)
        task.add_done_callback(self._runners.discard)
