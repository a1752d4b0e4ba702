"""The in-process group cache: cachetools TLRU bookkeeping plus a flat read path.

``cachetools.TLRUCache`` owns the entries' lifetime: the ``cache_maxsize``
bound and removal once an entry is past any use (its freshness deadline plus
the ``stale_if_error`` window). Reads on the request path do not go through
it. They read ``fresh``, a plain dict from group id to audiences holding only
entries that stay fresh until a common horizon (the soonest freshness deadline
among them, kept with a heap), in least-recently-used order. A cached 404 sits
in the same order under the key ``(id,)``, which no lookup by id reaches, so
the hit path serves groups only. A hit is one clock read compared with that
one horizon, a move to the end of the dict and the list copy: no per-entry
expiry, no per-entry stamp. When the clock passes the horizon, the entries
gone stale leave ``fresh`` and the horizon moves on.

When the cache is full, a small batch is evicted (1/16 of ``cache_maxsize``,
at least one): first expired groups kept only for ``stale_if_error`` (the
oldest stored first), then fresh entries, least recently used first.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import math
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

    Untracked by the garbage collector (like the audiences it holds): what a full
    cache adds to a collection's work is cachetools' own per-entry item. Nothing it
    holds may refer back to it: :meth:`GroupCache.store` keeps a 404 as a copy
    without its traceback.
    """

    audiences: tuple[Audience, ...]
    expires: float
    not_found: NotFoundError | None = None
    used: int = 0  # stamp of its store: tells a deadline of this entry from older ones
    key: str = ""  # set when stored


def _fresh_key(entry: Entry) -> str | tuple[str]:
    """Where ``fresh`` keeps an entry: a group under its id, a cached 404 under ``(id,)``."""
    return entry.key if entry.not_found is None else (entry.key,)


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

    ``fresh`` is the read path: the audiences of every group that is fresh at
    least until ``horizon``, least recently used first, with each fresh cached
    404 in the same order under ``(id,)``. A reader that finds ``clock() <
    horizon`` needs no per-entry expiry check; it moves the key to the end (the
    LRU order) and counts the hit, as :meth:`fresh_audiences` does.
    """

    def __init__(self, config: CacheConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.entries: dict[str, Entry] = {}  # groups, fresh or kept for stale_if_error
        self.fresh: dict[str | tuple[str], tuple[Audience, ...]] = {}  # oldest use first
        self.horizon = math.inf  # no group of `fresh` goes stale before this
        self.not_found: dict[str, Entry] = {}  # cached 404s (negative_ttl)
        self.uses = 0  # stores: orders expired groups for eviction, identifies deadlines
        self.hits = 0
        self.misses = 0
        self.coalesced = 0
        self.stale_served = 0
        self.evictions = 0
        self.expirations = 0
        # Freshness deadlines of the entries put in `fresh`, soonest first, as
        # (deadline, the entry's `used` stamp, its key in `fresh`): an item whose
        # entry was replaced or removed since is skipped when its time comes. It
        # holds the key, not the entry, so an evicted group is freed at once.
        self._deadlines: list[tuple[float, int, str | tuple[str]]] = []
        self._lifetimes = _Lifetimes(self, max(config.maxsize, 1), clock)

    def time_to_use(self, key: str, entry: Entry, now: float) -> float:
        """cachetools' time-to-use: keep an entry through its stale window."""
        if entry.not_found is not None:
            return entry.expires
        return entry.expires + self.config.stale_if_error

    def _mirror(self, entry: Entry) -> dict[str, Entry]:
        """The dict an entry lives in."""
        return self.entries if entry.not_found is None else self.not_found

    def _drop(self, entry: Entry) -> None:
        del self._mirror(entry)[entry.key]
        self.fresh.pop(_fresh_key(entry), None)

    def forget(self, items: list[tuple[str, Entry]], *, evicted: bool) -> None:
        """Drop entries that cachetools removed."""
        dropped = 0
        for key, entry in items:
            if self._mirror(entry).get(key) is entry:  # not already replaced or counted
                self._drop(entry)
                dropped += 1
        if evicted:
            self.evictions += dropped
        else:
            self.expirations += dropped

    def fresh_audiences(self, key: str, now: float) -> tuple[Audience, ...] | None:
        """The audiences of ``key`` if fresh at ``now``, counted as a hit and made the
        most recently used (the client's read path inlines this)."""
        if not now < self.horizon:
            self._sweep(now)
        fresh = self.fresh
        audiences = fresh.pop(key, None)
        if audiences is None:
            return None
        fresh[key] = audiences
        self.hits += 1
        return audiences

    def record_hit(self, entry: Entry) -> None:
        """Count a hit on a fresh cached 404 and make it the most recently used."""
        fresh = self.fresh
        key = _fresh_key(entry)
        if fresh.pop(key, None) is not None:
            fresh[key] = ()
        self.hits += 1

    def _held(self, key: str | tuple[str]) -> Entry:
        """The entry behind a key of ``fresh`` (see :func:`_fresh_key`)."""
        return self.entries[key] if type(key) is str else self.not_found[key[0]]

    def _sweep(self, now: float) -> None:
        """Take the entries gone stale out of ``fresh``; move the horizon on."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, used, key = heapq.heappop(deadlines)
            if key in self.fresh and self._held(key).used == used:
                del self.fresh[key]
        self.horizon = deadlines[0][0] if deadlines else math.inf

    def _evict_least_recently_used(self, now: float) -> None:
        """Make room: drop a batch of entries. Those outside ``fresh`` (expired groups
        kept only for stale_if_error) go first, oldest stored first; then fresh entries,
        least recently used first."""
        batch = max(1, self.config.maxsize // 16)
        self._sweep(now)
        fresh = self.fresh
        outside = itertools.chain(self.entries.items(), self.not_found.items())
        expired = [entry for _, entry in outside if _fresh_key(entry) not in fresh]
        victims = heapq.nsmallest(batch, expired, key=_used)
        if len(victims) < batch:
            held = self._held
            victims += [held(k) for k in itertools.islice(fresh, batch - len(victims))]
        for entry in victims:
            self._drop(entry)
            self._lifetimes.pop(entry.key, None)
        self.evictions += len(victims)

    def store(self, key: str, entry: Entry) -> None:
        """Insert or replace an entry (a no-op when ``cache_maxsize`` is 0)."""
        maxsize = self.config.maxsize
        if maxsize == 0:
            return
        now = self.clock()
        self.uses += 1
        entry.used = self.uses
        entry.key = key
        previous = self.entries.pop(key, None) or self.not_found.pop(key, None)
        if previous is not None:
            if previous.expires <= now:
                self.expirations += 1  # replaced while inside its stale window
            self.fresh.pop(_fresh_key(previous), None)
            self._lifetimes.pop(key, None)
        if not now < self.time_to_use(key, entry, now):
            return  # expired on arrival (a zero TTL): nothing to keep
        if entry.not_found is not None:  # no traceback, cause or context: no cycles
            entry.not_found = copy.copy(entry.not_found)
        detach_free_form(entry.audiences)  # a cached group must not keep its whole body
        if previous is None and len(self.entries) + len(self.not_found) >= maxsize:
            self._lifetimes.expire(now)  # the expired go first; cachetools does it on insert
            if len(self.entries) + len(self.not_found) >= maxsize:
                self._evict_least_recently_used(now)
        self._mirror(entry)[key] = entry
        self._lifetimes[key] = entry
        if now < entry.expires:
            self._make_fresh(entry)

    def _make_fresh(self, entry: Entry) -> None:
        deadlines = self._deadlines
        key = _fresh_key(entry)
        self.fresh[key] = entry.audiences
        heapq.heappush(deadlines, (entry.expires, entry.used, key))
        if entry.expires < self.horizon:
            self.horizon = entry.expires
        if len(deadlines) > 2 * len(self.fresh) + 64:  # mostly replaced entries: rebuild
            deadlines[:] = [(e.expires, e.used, _fresh_key(e)) for e in map(self._held, self.fresh)]
            heapq.heapify(deadlines)

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
        self.fresh.pop(key, None)
        self.fresh.pop((key,), None)
        self.not_found.pop(key, None)
        self._lifetimes.pop(key, None)

    def clear(self) -> None:
        """Forget every group (counters are kept)."""
        self.entries.clear()
        self.fresh.clear()
        self.horizon = math.inf
        self._deadlines.clear()
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
