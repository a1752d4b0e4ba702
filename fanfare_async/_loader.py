"""Loading one group that the in-process cache could not answer.

The floors below coalescing, in the order data flows: the shared tier when
there is one (its value, or its lease so that one process fetches for all),
then the transport, then decode; and the failure policy, in one place that
sees both the error and the caches: a 404 is cached for ``negative_ttl``, a
transient failure serves a stale group within ``stale_if_error``.

Whatever a load learns goes into the in-process cache (unless the cache was
invalidated meanwhile: the epoch moved) and, with a tier, into the tier.
A failing tier never fails a load: each failed operation is counted in
``shared_errors`` and the load goes on as if there were no tier.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from ._api_errors import build_api_error
from ._cache import Clock, Entry, GroupCache
from ._config import CacheConfig
from ._exceptions import (
    APIError,
    FanfareDecodeError,
    FanfareError,
    NotFoundError,
    TransportError,
)
from ._expiry import group_ttl
from ._ids import encode_path_segment
from ._models import Audience, decode_audience_tuple
from ._retry import parse_http_date
from ._shared import Lease, SharedCache, SharedTierError, SharedValue
from ._transport import Fetched, Transport

logger = logging.getLogger("fanfare_async")

T = TypeVar("T")

#: A waiter re-reads the tier this long after the holder's lease should have run out.
_LEASE_SLACK = 0.05
#: After this many waits for other processes a load fetches by itself.
_MAX_WAITS = 20


class Loaded:
    """What a load hands its callers: the audiences, and whether they are stale."""

    __slots__ = ("audiences", "stale")

    def __init__(self, audiences: tuple[Audience, ...], *, stale: bool = False) -> None:
        self.audiences = audiences
        self.stale = stale


class GroupLoader:
    """``load(key, epoch)``: shared tier -> transport -> decode, then the caches."""

    def __init__(
        self,
        *,
        transport: Transport,
        cache: GroupCache,
        config: CacheConfig,
        clock: Clock,
        epoch: Callable[[], int],
        shared: SharedCache | None,
    ) -> None:
        self._transport = transport
        self._cache = cache
        self._config = config
        self._clock = clock
        self._epoch = epoch
        self._shared = shared
        self._background: set[asyncio.Task[None]] = set()

    async def load(self, key: str, epoch: int, fresher_than: float = 0.0) -> Loaded:
        """The group ``key`` from the tier or the API, stored; raises its FanfareError.

        A refresh-ahead passes ``fresher_than``, the seconds its cached copy is still
        fresh for: a value of the tier counts only if it is fresher than that (another
        process refreshed it already), else the API is asked (under the tier's lease,
        so one process refreshes for all).
        """
        shared = self._shared
        if shared is None or not shared.available:
            return await self._from_api(key, epoch)
        return await self._through_tier(key, epoch, shared, fresher_than)

    async def load_uncached(self, key: str, epoch: int) -> Loaded:
        """A ``use_cache=False`` load: from the API, stored in both caches."""
        return await self._from_api(key, epoch, put=True)

    async def close(self) -> None:
        """Wait for the lease releases still running in the background."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- the shared tier -------------------------------------------------------------------

    async def tier_call(self, operation: Awaitable[T]) -> T | SharedTierError:
        """Run one tier operation; a failure is counted and returned, never raised."""
        try:
            return await operation
        except SharedTierError as exc:
            self._cache.shared_errors += 1
            logger.debug("shared tier unavailable: %s", exc)
            return exc

    async def _through_tier(
        self, key: str, epoch: int, shared: SharedCache, fresher_than: float
    ) -> Loaded:
        """Read the tier; on a miss, fetch under its lease, or wait for the process that
        holds it and read again."""
        stale: SharedValue | None = None
        for _ in range(_MAX_WAITS):
            value = await self.tier_call(shared.get(key))
            if isinstance(value, SharedTierError):
                return await self._from_api(key, epoch, stale=stale)
            if value is not None:
                if value.fresh_for > fresher_than:
                    loaded = self._from_shared(key, epoch, value)
                    if loaded is not None:
                        self._cache.shared_hits += 1
                        return loaded
                elif value.fresh_for <= 0:
                    stale = value
            claim = await self.tier_call(shared.claim(key))
            if isinstance(claim, SharedTierError):
                return await self._from_api(key, epoch, stale=stale)
            if isinstance(claim, float):  # another process fetches it: wait for it
                if claim <= 0.0:  # ... or has just stored it: the newest there is
                    fresher_than = 0.0
                await shared.wait(key, claim + _LEASE_SLACK)
                if not shared.available:
                    break
                continue
            self._cache.shared_misses += 1
            return await self._from_api(key, epoch, lease=claim, stale=stale)
        self._cache.shared_misses += 1
        return await self._from_api(key, epoch, stale=stale)

    def _from_shared(self, key: str, epoch: int, value: SharedValue) -> Loaded | None:
        """A fresh value of the tier, kept in-process for what is left of its TTL; None
        when its body does not decode (a miss)."""
        now = self._clock()
        expires = now + value.fresh_for
        if value.not_found:
            error = self._not_found(key, value.body)
            if epoch == self._epoch():
                self._cache.store(key, Entry((), expires, error))
            raise error
        try:
            audiences = decode_audience_tuple(value.body)
        except FanfareDecodeError:
            return None
        if epoch == self._epoch():
            refresh_at = self._refresh_at(now, value.fresh_for)
            self._cache.store(key, Entry(value.body, expires, refresh_at=refresh_at))
        return Loaded(audiences)

    def _refresh_at(self, now: float, ttl: float) -> float:
        ahead = self._config.refresh_ahead
        return now + ahead * ttl if ahead else math.inf

    def _not_found(self, key: str, body: bytes) -> NotFoundError:
        error = build_api_error(
            status=404,
            reason="Not Found",
            headers={},
            body=body,
            method="GET",
            url=self._transport.url_for(encode_path_segment(key)),
            retry_after=None,
        )
        assert isinstance(error, NotFoundError)
        return error

    def _release_later(self, lease: Lease) -> None:
        """Abandon a lease from a load that was cancelled (it cannot await any more)."""
        task = asyncio.get_running_loop().create_task(lease.abandon())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the API ---------------------------------------------------------------------------

    async def _from_api(
        self,
        key: str,
        epoch: int,
        *,
        lease: Lease | None = None,
        stale: SharedValue | None = None,
        put: bool = False,
    ) -> Loaded:
        """One request for ``key`` (retries included) and what comes of it."""
        try:
            response = await self._transport.fetch(encode_path_segment(key))
        except FanfareError as exc:
            return await self._after_failure(key, epoch, exc, lease, stale)
        except BaseException:  # cancelled: it cannot await the release any more
            if lease is not None:
                self._release_later(lease)
            raise
        try:
            audiences, ttl = self._decoded(key, epoch, response)
        except FanfareDecodeError:
            if lease is not None:
                await lease.abandon()
            raise
        grace = self._config.stale_if_error
        if lease is not None:
            await lease.fill(response.body, not_found=False, ttl=ttl, grace=grace)
        elif put and self._shared is not None and self._shared.available:
            shared_put = self._shared.put(key, response.body, not_found=False, ttl=ttl, grace=grace)
            await self.tier_call(shared_put)
        return Loaded(audiences)

    async def _after_failure(
        self,
        key: str,
        epoch: int,
        exc: FanfareError,
        lease: Lease | None,
        stale: SharedValue | None,
    ) -> Loaded:
        """A failed fetch: cache a 404 (``negative_ttl``), serve stale
        (``stale_if_error``), or raise."""
        cache = self._cache
        config = self._config
        if isinstance(exc, NotFoundError):
            negative_ttl = config.negative_ttl
            if negative_ttl > 0:
                if epoch == self._epoch():
                    cache.store(key, Entry((), self._clock() + negative_ttl, exc))
                if lease is not None:
                    body = _raw_body(exc)
                    await lease.fill(body, not_found=True, ttl=negative_ttl, grace=0.0)
                    raise exc
        if lease is not None:
            await lease.abandon()
        if not _is_transient(exc):
            raise exc
        kept = cache.stale(key, self._clock())
        if kept is not None:
            logger.debug("serving stale %s after %s", key, type(exc).__name__)
            return Loaded(kept, stale=True)
        if stale is not None and not stale.not_found and -stale.fresh_for < config.stale_if_error:
            try:
                audiences = decode_audience_tuple(stale.body)
            except FanfareDecodeError:
                raise exc from None
            logger.debug("serving stale %s from the shared tier after %s", key, exc)
            return Loaded(audiences, stale=True)
        raise exc

    def _decoded(
        self, key: str, epoch: int, response: Fetched
    ) -> tuple[tuple[Audience, ...], float]:
        """Decode a fetched body and cache it (unless the cache was invalidated since);
        the audiences and their TTL."""
        arrived = self._clock()
        try:
            audiences = decode_audience_tuple(response.body)
        except FanfareDecodeError as exc:
            url = self._transport.url_for(encode_path_segment(key))
            raise FanfareDecodeError(f"GET {url}: {exc}", path=exc.path) from exc
        config = self._config
        ttl = 0.0
        if config.maxsize or self._shared is not None:
            ttl = group_ttl(
                audiences,
                now=_server_now(audiences, response.date),
                default_ttl=config.default_ttl,
                min_ttl=config.min_ttl,
                max_ttl=config.max_ttl,
            )
            if epoch == self._epoch():
                refresh_at = self._refresh_at(arrived, ttl)
                # Kept as the body until read again (see _cache): the caller has its own.
                entry = Entry(response.body, arrived + ttl, refresh_at=refresh_at)
                self._cache.store(key, entry)
        return audiences, ttl


def _raw_body(exc: APIError) -> bytes:
    """An error's body as bytes again (parsed JSON re-encoded, text as UTF-8)."""
    body = exc.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    return msgspec.json.encode(body)


def _is_transient(exc: FanfareError) -> bool:
    """Failures that stale_if_error may paper over: connection, timeout, 408, 429, 5xx."""
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, APIError) and (exc.status_code in (408, 429) or exc.status_code >= 500)


#: The Date header changes once a second: one parse per value seen, not per response.
_parse_date = functools.lru_cache(maxsize=8)(parse_http_date)


def _server_now(audiences: tuple[Audience, ...], date: str | None) -> float:
    """Server time from the Date header, else the local wall clock; only parsed when an
    audience's expiry depends on it."""
    for audience in audiences:  # a plain loop: any(<generator>) costs 3x as much here
        if audience.last_refreshed_at is not None:
            server = _parse_date(date)
            return time.time() if server is None else server
    return time.time()
