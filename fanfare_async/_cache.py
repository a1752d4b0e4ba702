"""The in-process group cache: a bounded cachetools store plus a flat read path.

The entries (groups and cached 404s, by id) live in a ``cachetools.Cache``
bounded by ``cache_maxsize``; when it is full, cachetools asks its
``popitem`` for room and the eviction policy below answers. An entry leaves
once it is past any use (its freshness deadline plus the ``stale_if_error``
window), found with a heap of those ends that each store checks first.

Reads on the request path do not go through the store. They read ``fresh``,
a plain dict from group id to audiences holding only entries that stay
fresh until a common horizon (the soonest freshness deadline
among them, kept with a heap), in least-recently-used order. A cached 404 sits
in the same order under the key ``(id,)``, which no lookup by id reaches, so
the hit path serves groups only. A hit is one clock read compared with that
one horizon, a move to the end of the dict and the list copy: no per-entry
expiry, no per-entry stamp. When the clock passes the horizon, the entries
gone stale leave ``fresh`` and the horizon moves on.

When the store is full, a small batch is evicted (1/16 of ``cache_maxsize``,
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec
from cachetools import Cache

from ._config import CacheConfig
from ._exceptions import NotFoundError
from ._models import Audience, detach_free_form

Clock = Callable[[], float]
K = TypeVar("K")

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
    shared_hits: int = 0
    shared_misses: int = 0
    shared_errors: int = 0
    refreshes: int = 0
    refresh_errors: int = 0


class Entry(msgspec.Struct, gc=False):
    """A cached group: audiences (or a 404) and the monotonic time it stops being fresh.

    Untracked by the garbage collector, like the audiences it holds; the cache's
    own bookkeeping per entry is heap items of a float, an int and a key, which
    the collector stops tracking after one pass. So a full cache adds almost
    nothing to a collection's work. Nothing an entry holds may refer back to it:
    :meth:`GroupCache.store` keeps a 404 as a copy without its traceback.
    """

    audiences: tuple[Audience, ...]
    expires: float
    not_found: NotFoundError | None = None
    refresh_at: float = math.inf  # refresh-ahead: a hit from then on starts a refresh
    used: int = 0  # stamp of its store: tells a deadline of this entry from older ones
    key: str = ""  # set when stored


def _leaves_fresh(entry: Entry) -> float:
    """When an entry leaves the read path: when it expires, or earlier, at its
    refresh-ahead point (from then on a hit takes the slow path, which refreshes it)."""
    return entry.refresh_at if entry.refresh_at < entry.expires else entry.expires


def _fresh_key(entry: Entry) -> str | tuple[str]:
    """Where ``fresh`` keeps an entry: a group under its id, a cached 404 under ``(id,)``."""
    return entry.key if entry.not_found is None else (entry.key,)


class _Entries(Cache[str, Entry]):
    """The entries by id, bounded by ``cache_maxsize``; its owner picks what to evict."""

    def __init__(self, owner: GroupCache, maxsize: int) -> None:
        super().__init__(maxsize)
        self._owner = owner

    def popitem(self) -> tuple[str, Entry]:
        """Called by cachetools when full: evict a batch by the owner's policy and
        return the first entry evicted."""
        owner = self._owner
        victims = owner.evict(owner.clock())
        if not victims:
            raise KeyError("the cache is empty")
        return victims[0].key, victims[0]


class _Timeline(Generic[K]):
    """Times at which entries change state, soonest first, as (time, the entry's store
    stamp, its key). An item whose entry was replaced or removed since stays until its
    time comes, and its reader skips it by the stamp. It holds keys, not entries, so a
    group let go is freed at once."""

    def __init__(self, current: Callable[[], list[tuple[float, int, K]]]) -> None:
        self.items: list[tuple[float, int, K]] = []
        self._current = current  # the items of the entries held now

    def add(self, when: float, used: int, key: K, held: int) -> None:
        """Add an item; rebuild from the entries held (``held`` of them) when most items
        are of entries replaced since."""
        items = self.items
        heapq.heappush(items, (when, used, key))
        if len(items) > 2 * held + 64:
            items[:] = self._current()
            heapq.heapify(items)

    def due(self, now: float) -> Iterator[tuple[int, K]]:
        """Take out the items whose time is at or before ``now``: (stamp, key) each."""
        items = self.items
        while items and items[0][0] <= now:
            _, used, key = heapq.heappop(items)
            yield used, key

    def soonest(self) -> float:
        return self.items[0][0] if self.items else math.inf


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
        self.entries = _Entries(self, max(config.maxsize, 1))  # fresh or kept for stale_if_error
        self.fresh: dict[str | tuple[str], tuple[Audience, ...]] = {}  # oldest use first
        self.horizon = math.inf  # no group of `fresh` goes stale before this
        self.uses = 0  # stores: orders expired groups for eviction, identifies deadlines
        self.hits = 0
        self.misses = 0
        self.coalesced = 0
        self.stale_served = 0
        self.evictions = 0
        self.expirations = 0
        # The shared tier's share of this client's lookups (0 without a tier).
        self.shared_hits = 0
        self.shared_misses = 0
        self.shared_errors = 0
        self.refreshes = 0
        self.refresh_errors = 0
        # When each entry put in `fresh` goes stale (keyed as in `fresh`), and when
        # each entry is past any use (see _end_of_use).
        self._deadlines: _Timeline[str | tuple[str]] = _Timeline(self._current_deadlines)
        self._ends: _Timeline[str] = _Timeline(self._current_ends)

    def _current_deadlines(self) -> list[tuple[float, int, str | tuple[str]]]:
        return [(_leaves_fresh(e), e.used, _fresh_key(e)) for e in map(self._held, self.fresh)]

    def _current_ends(self) -> list[tuple[float, int, str]]:
        return [(self._end_of_use(e), e.used, e.key) for e in self.entries.values()]

    def _end_of_use(self, entry: Entry) -> float:
        """When an entry leaves: a group keeps its stale window, a 404 has none."""
        if entry.not_found is not None:
            return entry.expires
        return entry.expires + self.config.stale_if_error

    def _drop(self, entry: Entry) -> None:
        del self.entries[entry.key]
        self.fresh.pop(_fresh_key(entry), None)

    def _holds(self, key: str, used: int) -> Entry | None:
        """The entry stored for ``key`` by the store stamped ``used``, if still there."""
        entry = self.entries.get(key)
        return entry if entry is not None and entry.used == used else None

    def expire(self, now: float) -> None:
        """Drop the entries past any use at ``now`` (counted as expirations)."""
        for used, key in self._ends.due(now):
            entry = self._holds(key, used)
            if entry is not None:
                self._drop(entry)
                self.expirations += 1

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

    def fresh_not_found(self, key: str, now: float) -> NotFoundError | None:
        """A copy of the cached 404 of ``key`` if fresh at ``now``, counted as a hit and
        made the most recently used."""
        if not now < self.horizon:
            self._sweep(now)
        fresh = self.fresh
        if fresh.pop((key,), None) is None:
            return None
        fresh[(key,)] = ()
        self.hits += 1
        return copy.copy(self.entries[key].not_found)

    def _held(self, key: str | tuple[str]) -> Entry:
        """The entry behind a key of ``fresh`` (see :func:`_fresh_key`)."""
        return self.entries[key if type(key) is str else key[0]]

    def _sweep(self, now: float) -> None:
        """Take the entries gone stale out of ``fresh``; move the horizon on."""
        for used, key in self._deadlines.due(now):
            if key in self.fresh and self._held(key).used == used:
                del self.fresh[key]
        self.horizon = self._deadlines.soonest()

    def evict(self, now: float) -> list[Entry]:
        """Make room: drop a batch of entries and return them. Those outside ``fresh``
        (expired groups kept only for stale_if_error) go first, oldest stored first;
        then fresh entries, least recently used first."""
        batch = max(1, self.config.maxsize // 16)
        self._sweep(now)
        entries, fresh = self.entries, self.fresh
        victims: list[Entry] = []
        if len(entries) > len(fresh):  # some are outside: only stale_if_error keeps them
            outside = [k for k in entries if k not in fresh and (k,) not in fresh]
            victims = heapq.nsmallest(batch, map(entries.__getitem__, outside), key=_used)
        if len(victims) < batch:
            held = self._held
            victims += [held(k) for k in itertools.islice(fresh, batch - len(victims))]
        for entry in victims:
            self._drop(entry)
        self.evictions += len(victims)
        return victims

    def store(self, key: str, entry: Entry) -> None:
        """Insert or replace an entry (a no-op when ``cache_maxsize`` is 0)."""
        if self.config.maxsize == 0:
            return
        now = self.clock()
        self.uses += 1
        entry.used = self.uses
        entry.key = key
        previous = self.entries.pop(key, None)
        if previous is not None:
            if previous.expires <= now:
                self.expirations += 1  # replaced while inside its stale window
            self.fresh.pop(_fresh_key(previous), None)
        end = self._end_of_use(entry)
        if not now < end:
            return  # expired on arrival (a zero TTL): nothing to keep
        if entry.not_found is not None:  # no traceback, cause or context: no cycles
            entry.not_found = copy.copy(entry.not_found)
        detach_free_form(entry.audiences)  # a cached group must not keep its whole body
        self.expire(now)  # the expired go before anything is evicted
        self.entries[key] = entry  # when full, cachetools calls popitem: see evict()
        self._ends.add(end, entry.used, key, len(self.entries))
        leaves = _leaves_fresh(entry)
        if now < leaves:
            fresh_key = _fresh_key(entry)
            self.fresh[fresh_key] = entry.audiences
            self._deadlines.add(leaves, entry.used, fresh_key, len(self.fresh))
            if leaves < self.horizon:
                self.horizon = leaves

    def due_for_refresh(self, key: str, now: float) -> tuple[Audience, ...] | None:
        """The audiences of ``key`` if still fresh but past their refresh-ahead point
        (counted as a hit); the caller starts the refresh."""
        entry = self.entries.get(key)
        if entry is None or entry.not_found is not None:
            return None
        if not entry.refresh_at <= now < entry.expires:
            return None
        self.hits += 1
        return entry.audiences

    def stale(self, key: str, now: float) -> Entry | None:
        """The expired group for ``key`` if it is still inside its stale window."""
        entry = self.entries.get(key)
        window = self.config.stale_if_error
        if entry is None or entry.not_found is not None or window <= 0:
            return None
        return entry if entry.expires <= now < entry.expires + window else None

    def invalidate(self, key: str) -> None:
        """Forget one group."""
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.fresh.pop(_fresh_key(entry), None)

    def clear(self) -> None:
        """Forget every group (counters are kept)."""
        self.entries = _Entries(self, max(self.config.maxsize, 1))
        self.fresh.clear()
        self.horizon = math.inf
        self._deadlines.items.clear()
        self._ends.items.clear()

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        return CacheStats(
            hits=self.hits,
            misses=self.misses,
            coalesced=self.coalesced,
            stale_served=self.stale_served,
            evictions=self.evictions,
            expirations=self.expirations,
            size=len(self.entries),
            maxsize=self.config.maxsize,
            shared_hits=self.shared_hits,
            shared_misses=self.shared_misses,
            shared_errors=self.shared_errors,
            refreshes=self.refreshes,
            refresh_errors=self.refresh_errors,
        )
