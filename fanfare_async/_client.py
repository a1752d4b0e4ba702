"""FanfareClient: the public entry point."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

import aiohttp

from ._cache import CacheStats, Clock, Entry, GroupCache
from ._cancellation import cancelling
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
from ._exceptions import (
    APIError,
    FanfareClientClosedError,
    FanfareDecodeError,
    FanfareError,
    InvalidGroupIdError,
    NotFoundError,
    TransportError,
)
from ._expiry import group_ttl
from ._fanout import BulkIterator, GroupIds
from ._ids import canonical_group_id, encode_path_segment
from ._models import Audience, decode_audience_tuple
from ._ratelimit import RateLimiter, RateLimitState
from ._retry import parse_http_date
from ._transport import Fetched, Transport

logger = logging.getLogger("fanfare_async")

#: Task.uncancel() (3.11+) lets aclose() interrupt a caller's own fetch cleanly.
_CAN_UNCANCEL = sys.version_info >= (3, 11)


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
        clock: Clock | None = None,
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
        self._clock: Clock = time.monotonic if clock is None else clock
        self._cache = GroupCache(self._cache_config, clock=self._clock)
        self._inflight: dict[str, _Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Callers running a use_cache=False fetch themselves -> cancelled by aclose().
        self._fetching_alone: dict[asyncio.Task[Any], bool] = {}
        self._runners: set[asyncio.Task[None]] = set()
        self._epoch = 0
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
        tasks: list[asyncio.Task[Any]] = [*self._runners, *self._tasks]
        for task in tasks:
            task.cancel()
        for caller in self._fetching_alone:  # callers' own tasks: not awaited here
            self._fetching_alone[caller] = True
            caller.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._transport.aclose()

    @property
    def cache_stats(self) -> CacheStats:
        """Counters of the cache: hits, misses, coalesced, stale_served, evictions, ..."""
        return self._cache.stats()

    async def invalidate(self, group_id: str | uuid.UUID) -> None:
        """Drop one group from the cache; a fetch already in flight will not store it."""
        key = canonical_group_id(group_id)
        self._epoch += 1
        self._inflight.pop(key, None)
        self._cache.invalidate(key)

    async def clear_cache(self) -> None:
        """Drop every cached group (the counters are kept)."""
        self._epoch += 1
        self._inflight.clear()
        self._cache.clear()

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
                    cache.hits += 1
                    return [*audiences]  # a new list ([*t] skips the call that list(t) makes)
        return await self._lookup(canonical_group_id(group_id), use_cache)

    async def _lookup(
        self, key: str, use_cache: bool, *, in_worker: bool = False
    ) -> list[Audience]:
        """The slow path, for a canonical id: the cache (fresh or a cached 404), then the
        fetch. A shared fetch (started here or joined) runs in its own task and is
        awaited on this caller's own future: cancelling one caller never cancels it for
        the others, and when the last one goes it is cancelled too. Two kinds of fetch
        run in the caller's task instead, saving the hand-off: ``use_cache=False``
        (nobody can join it) and a bulk worker's miss (``in_worker``: the worker has
        just found no fresh group; see :meth:`_fetch_in_worker` for callers that join it).
        """
        self._check_open()
        cache = self._cache
        if use_cache:
            now = self._clock()
            if not in_worker:
                audiences = cache.fresh_audiences(key, now)
                if audiences is not None:
                    return [*audiences]
            not_found = cache.fresh_not_found(key, now)
            if not_found is not None:
                raise not_found
            flight = self._inflight.get(key)
            if flight is None:
                cache.misses += 1
                if in_worker:
                    fetched = await self._fetch_in_worker(key)
                    if fetched.stale:
                        cache.stale_served += 1
                    return list(fetched.audiences)
                flight = self._inflight[key] = self._start_fetch(key)
            else:
                cache.coalesced += 1
        elif _CAN_UNCANCEL:
            return list(await self._fetch_alone(key))
        else:
            flight = self._start_fetch(key)
        waiter: asyncio.Future[_Fetched] = asyncio.get_running_loop().create_future()
        flight.waiting.append(waiter)
        try:
            fetched = await waiter
        except asyncio.CancelledError:
            if self._closed and not cancelling():  # the fetch was cancelled by aclose()
                raise FanfareClientClosedError(
                    "the client was closed while the request was in flight"
                ) from None
            raise
        finally:
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # mark retrieved, in case this caller left meanwhile
            else:  # this caller was cancelled (its future with it)
                self._leave(flight, waiter)
        if fetched.stale:
            cache.stale_served += 1
        return list(fetched.audiences)

    async def _fetch_alone(self, key: str) -> tuple[Audience, ...]:
        """A ``use_cache=False`` fetch: nobody can join it, so it runs in the caller's own
        task, with no hand-off to a fetch task. aclose() interrupts it by cancelling the
        caller, which ends here as FanfareClientClosedError."""
        task = asyncio.current_task()
        assert task is not None
        callers = self._fetching_alone
        callers[task] = False
        try:
            return (await self._fetch(key, self._epoch)).audiences
        except asyncio.CancelledError:
            if callers.get(task) and sys.version_info >= (3, 11):  # cancelled by aclose()
                task.uncancel()
                if not task.cancelling():
                    raise FanfareClientClosedError(
                        "the client was closed while the request was in flight"
                    ) from None
            raise
        finally:
            callers.pop(task, None)

    def _leave(self, flight: _Flight, waiter: asyncio.Future[_Fetched]) -> None:
        """A cancelled caller stops waiting; the last one to leave cancels the fetch."""
        if waiter in flight.waiting:
            flight.waiting.remove(waiter)
        task = flight.task  # None: a bulk worker's own fetch, which goes on for it
        if task is not None and not flight.waiting and not task.done():
            if self._inflight.get(flight.key) is flight:
                del self._inflight[flight.key]
            task.cancel()

    def _start_fetch(self, key: str) -> _Flight:
        flight = _Flight(key)
        flight.task = self._spawn(self._fly(flight, self._epoch))
        return flight

    def _spawn(self, fetch: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(fetch)
        self._tasks.add(task)
        return task

    async def _fly(self, flight: _Flight, epoch: int) -> None:
        """The shared fetch's task: fetch, then hand the outcome to every caller still
        waiting, directly from here (no done-callback round through the event loop)."""
        try:
            fetched = await self._fetch(flight.key, epoch)
        except asyncio.CancelledError:
            self._landed(flight, cancelled=True)
            raise
        except BaseException as exc:
            self._landed(flight, error=exc)
            if not isinstance(exc, Exception):
                raise
            # Not re-raised: each waiter has it, and nobody awaits this task.
        else:
            self._landed(flight, fetched)

    async def _fetch_in_worker(self, key: str) -> _Fetched:
        """A bulk worker's miss, fetched in the worker's own task (no hand-off to a fetch
        task); callers who look the group up meanwhile join it as usual. If the bulk run
        stops while some of them wait, a fetch task takes over for them."""
        flight = _Flight(key)
        self._inflight[key] = flight
        epoch = self._epoch
        try:
            fetched = await self._fetch(key, epoch)
        except asyncio.CancelledError:
            if flight.waiting and not self._closed:  # the others still get their answer
                flight.task = self._spawn(self._fly(flight, epoch))
            else:
                self._landed(flight, cancelled=True)
            raise
        except BaseException as exc:
            self._landed(flight, error=exc)
            raise
        self._landed(flight, fetched)
        return fetched

    def _landed(
        self,
        flight: _Flight,
        fetched: _Fetched | None = None,
        error: BaseException | None = None,
        *,
        cancelled: bool = False,
    ) -> None:
        """The fetch is over: no longer in flight for new callers; its answer, its error
        or its cancellation goes to every caller still waiting."""
        if flight.task is not None:
            self._tasks.discard(flight.task)
        if self._inflight.get(flight.key) is flight:
            del self._inflight[flight.key]
        for waiter in flight.waiting:
            if waiter.done():
                continue
            if cancelled:
                waiter.cancel()
            elif error is not None:
                waiter.set_exception(error)
            elif fetched is not None:
                waiter.set_result(fetched)

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

    async def _fetch(self, key: str, epoch: int) -> _Fetched:
        """One request for ``key`` (retries included) and what comes of it: decoded and
        cached, a cached 404, a stale answer, or the error."""
        try:
            response = await self._transport.fetch(encode_path_segment(key))
        except FanfareError as exc:
            return self._after_failure(key, epoch, exc)
        return self._decoded(key, epoch, response)

    def _after_failure(self, key: str, epoch: int, exc: FanfareError) -> _Fetched:
        """A failed fetch: cache a 404 (``negative_ttl``), serve stale
        (``stale_if_error``), or raise."""
        cache = self._cache
        if isinstance(exc, NotFoundError):
            negative_ttl = self._cache_config.negative_ttl
            if negative_ttl > 0 and epoch == self._epoch:
                cache.store(key, Entry((), self._clock() + negative_ttl, exc))
            raise exc
        stale = cache.stale(key, self._clock()) if _is_transient(exc) else None
        if stale is None:
            raise exc
        logger.debug("serving stale %s after %s", key, type(exc).__name__)
        return _Fetched(stale.audiences, stale=True)

    def _decoded(self, key: str, epoch: int, response: Fetched) -> _Fetched:
        """Decode a fetched body and cache it, unless the cache was invalidated since."""
        arrived = self._clock()
        try:
            audiences = decode_audience_tuple(response.body)
        except FanfareDecodeError as exc:
            url = self._transport.url_for(encode_path_segment(key))
            raise FanfareDecodeError(f"GET {url}: {exc}", path=exc.path) from exc
        config = self._cache_config
        if epoch == self._epoch and config.maxsize:  # (no expiry to work out without a cache)
            ttl = group_ttl(
                audiences,
                now=_server_now(audiences, response.date),
                default_ttl=config.default_ttl,
                min_ttl=config.min_ttl,
                max_ttl=config.max_ttl,
            )
            self._cache.store(key, Entry(audiences, arrived + ttl))
        return _Fetched(audiences, stale=False)


class _Flight:
    """One in-flight fetch and the futures of the callers waiting for it."""

    __slots__ = ("key", "task", "waiting")

    def __init__(self, key: str) -> None:
        self.key = key
        self.task: asyncio.Task[None] | None = None  # None: fetched in a bulk worker
        self.waiting: list[asyncio.Future[_Fetched]] = []


class _Fetched:
    """What a fetch task hands its waiters."""

    __slots__ = ("audiences", "stale")

    def __init__(self, audiences: tuple[Audience, ...], *, stale: bool) -> None:
        self.audiences = audiences
        self.stale = stale


def _is_transient(exc: FanfareError) -> bool:
    """Failures that stale_if_error may paper over: connection, timeout, 408, 429, 5xx."""
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, APIError) and (exc.status_code in (408, 429) or exc.status_code >= 500)


def _server_now(audiences: tuple[Audience, ...], date: str | None) -> float:
    """Server time from the Date header, else the local wall clock; only parsed when an
    audience's expiry depends on it."""
    if any(a.last_refreshed_at is not None for a in audiences):
        server = parse_http_date(date)
        if server is not None:
            return server
    return time.time()
