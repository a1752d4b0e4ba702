"""The in-process group cache: cachetools TLRU bookkeeping plus a flat read path.

``cachetools.TLRUCache`` owns the entries' lifetime: the ``cache_maxsize``
bound and removal once an entry is past any use (its freshness deadline plus
the ``stale_if_error`` window). Reads on the request path do not go through
it: a plain dict mirrors its entries, so a hit is one dict lookup, one clock
comparison and a use stamp on the entry it already holds. When the cache is
full, the least recently used entries by those stamps are evicted, a small
batch at a time (1/16 of ``cache_maxsize``, at least one), so a full cache
pays one ordering pass per batch instead of recency bookkeeping on every hit.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from cachetools import TLRUCache

from ._config import CacheConfig
from ._exceptions import NotFoundError
from ._models import Audience, detach_free_form

Clock = Callable[[], float]

_used = operator.attrgetter("used")


@dataclass(frozen=True)
class CacheStats:
    """Counters of the client's cache since it was created (a snapshot)."""

    hits: int
    misses: int
    coalesced: int
    stale_served: int
    evictions: int
    expirations: int
    size: int
    maxsize: int


class Entry(msgspec.Struct, gc=False):
    """A cached group: audiences (or a 404) and the monotonic time it stops being fresh.

    Untracked by the garbage collector (like the audiences it holds), so a full
    cache adds nothing to a collection's work. Nothing it holds may refer back to
    it: :meth:`GroupCache.store` keeps a 404 as a copy without its traceback.
    """

    audiences: tuple[Audience, ...]
    expires: float
    not_found: NotFoundError | None = None
    used: int = 0  # position in the cache's sequence of uses: the LRU order
    key: str = ""  # set when stored


class _Lifetimes(TLRUCache[str, Entry]):
    """TLRUCache that reports expirations and evictions to its owner."""

    def __init__(self, owner: GroupCache, maxsize: int, timer: Clock) -> None:
        super().__init__(maxsize, owner.time_to_use, timer=timer)
        self._owner = owner

    def expire(self, time: float | None = None) -> list[tuple[str, Entry]]:
        expired: list[tuple[str, Entry]] = list(super().expire(time))
        if expired:
            self._owner.forget(expired, evicted=False)
        return expired

    def popitem(self) -> tuple[str, Entry]:
        item: tuple[str, Entry] = super().popitem()
        self._owner.forget([item], evicted=True)
        return item


class GroupCache:
    """Entries by canonical group id, with the counters of :class:`CacheStats`.

    ``entries`` is the read path's dict; callers check ``Entry.expires``
    against ``clock()`` themselves and call :meth:`record_hit` on a hit.
    """

    def __init__(self, config: CacheConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.entries: dict[str, Entry] = {}  # groups with audiences
        self.not_found: dict[str, Entry] = {}  # cached 404s (negative_ttl)
        self.uses = 0  # stores + hits: the sequence that orders entries for LRU
        self.stores = 0
        self.misses = 0
        self.coalesced = 0
        self.stale_served = 0
        self.evictions = 0
        self.expirations = 0
        self._lifetimes = _Lifetimes(self, max(config.maxsize, 1), clock)

    def time_to_use(self, key: str, entry: Entry, now: float) -> float:
        """cachetools' time-to-use: keep an entry through its stale window."""
        if entry.not_found is not None:
            return entry.expires
        return entry.expires + self.config.stale_if_error

    def _mirror(self, entry: Entry) -> dict[str, Entry]:
        """The read-path dict an entry lives in."""
        return self.entries if entry.not_found is None else self.not_found

    def forget(self, items: list[tuple[str, Entry]], *, evicted: bool) -> None:
        """Drop entries that cachetools removed from the read path."""
        dropped = 0
        for key, entry in items:
            mirror = self._mirror(entry)
            if mirror.get(key) is entry:  # not already replaced or counted by store()
                del mirror[key]
                dropped += 1
        if evicted:
            self.evictions += dropped
        else:
            self.expirations += dropped

    def record_hit(self, entry: Entry) -> None:
        """Count a hit and stamp the entry's use (the client's read path inlines this)."""
        self.uses += 1
        entry.used = self.uses

    @property
    def hits(self) -> int:
        """Lookups answered from the cache."""
        return self.uses - self.stores

    def _evict_least_recently_used(self) -> None:
        """Make room: drop the least recently used batch of entries."""
        batch = max(1, self.config.maxsize // 16)
        candidates = itertools.chain(self.entries.values(), self.not_found.values())
        victims = heapq.nsmallest(batch, candidates, key=_used)
        for entry in victims:
            del self._mirror(entry)[entry.key]
            self._lifetimes.pop(entry.key, None)
        self.evictions += len(victims)

    def store(self, key: str, entry: Entry) -> None:
        """Insert or replace an entry (a no-op when ``cache_maxsize`` is 0)."""
        maxsize = self.config.maxsize
        if maxsize == 0:
            return
        now = self.clock()
        self.uses += 1
        self.stores += 1
        entry.used = self.uses
        entry.key = key
        previous = self.entries.pop(key, None) or self.not_found.pop(key, None)
        if previous is not None:
            if previous.expires <= now:
                self.expirations += 1  # replaced while inside its stale window
            self._lifetimes.pop(key, None)
        if not now < self.time_to_use(key, entry, now):
            return  # expired on arrival (a zero TTL): nothing to keep
        if entry.not_found is not None:  # no traceback, cause or context: no cycles
            entry.not_found = copy.copy(entry.not_found)
        detach_free_form(entry.audiences)  # a cached group must not keep its whole body
        if previous is None and len(self.entries) + len(self.not_found) >= maxsize:
            self._lifetimes.expire(now)  # the expired go first; cachetools does it on insert
            if len(self.entries) + len(self.not_found) >= maxsize:
                self._evict_least_recently_used()
        self._mirror(entry)[key] = entry
        self._lifetimes[key] = entry

    def stale(self, key: str, now: float) -> Entry | None:
        """The expired entry for ``key`` if it is still inside its stale window."""
        entry = self.entries.get(key)
        window = self.config.stale_if_error
        if entry is None or window <= 0 or not entry.expires <= now < entry.expires + window:
            return None
        return entry

    def invalidate(self, key: str) -> None:
        """Forget one group."""
        self.entries.pop(key, None)
        self.not_found.pop(key, None)
        self._lifetimes.pop(key, None)

    def clear(self) -> None:
        """Forget every group (counters are kept)."""
        self.entries.clear()
        self.not_found.clear()
        self._lifetimes.clear()

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        return CacheStats(
            hits=self.hits,
            misses=self.misses,
            coalesced=self.coalesced,
            stale_served=self.stale_served,
            evictions=self.evictions,
            expirations=self.expirations,
            size=len(self.entries) + len(self.not_found),
            maxsize=self.config.maxsize,
        )
