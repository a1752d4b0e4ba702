"""The in-process group cache: a bounded cachetools store plus a flat read path.

The entries (groups and cached 404s, by id) live in a ``cachetools.Cache``
bounded by ``cache_maxsize``; when it is full, cachetools asks its ``popitem``
for room and the eviction policy below answers.

A group is kept as the body it arrived in until it is read a second time: the
caller of the lookup that fetched it got its own decoded audiences, and a group
nobody reads again (most of a bulk run's) costs the cache one bytes object,
about the size of its JSON, with nothing in it for the garbage collector and
nothing to decode or detach when it is stored or freed. The first hit decodes
it once and keeps the audiences from then on.

Reads on the request path do not go through the store. They read ``fresh``, a
plain dict from group id to what is kept for it (audiences, or the body not
read yet), holding only entries that stay fresh until a common horizon (the
soonest time at which some entry changes state), in least-recently-used order.
A cached 404 sits in the same order under the key ``(id,)``, which no lookup by
id reaches. A hit is one clock read compared with that one horizon, a move to
the end of the dict and the list copy: no per-entry expiry, no per-entry stamp.

When each entry changes state (leaves ``fresh``; later, past its
``stale_if_error`` window, leaves the cache) is kept in a timeline. Work is
spread out so that no single step holds the event loop: due changes are
handled a small batch at a time, a full cache evicts a small batch, and the
timeline is split in shards so that clearing out the times of entries let go
since never touches more than a shard's worth.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from cachetools import Cache

from ._config import CacheConfig
from ._exceptions import NotFoundError
from ._models import Audience, decode_audience_tuple, prepare_to_keep

Clock = Callable[[], float]
#: What is kept for a group: its audiences, or (not read since it arrived) its body.
Kept = tuple[Audience, ...] | bytes

#: Due state changes handled per step (when more are due, the next step goes on).
_SWEEP_BATCH = 64
#: The most entries one eviction drops (1/16 of cache_maxsize when that is fewer).
_EVICT_BATCH = 16
#: Timeline shards (a power of two); see _Timeline.
_SHARDS = 16


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
    """A cached group: what is kept of it (or a 404) and the monotonic time it stops
    being fresh.

    Untracked by the garbage collector, like the audiences it holds; so is a body.
    Nothing an entry holds may refer back to it: :meth:`GroupCache.store` keeps a
    404 as a copy without its traceback.
    """

    audiences: Kept
    expires: float
    not_found: NotFoundError | None = None
    refresh_at: float = math.inf  # refresh-ahead: a hit from then on starts a refresh
    used: int = 0  # stamp of its store: tells this entry's timeline item from older ones
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


class _Due(msgspec.Struct, order=True, gc=False):
    """A timeline item: ordered by time, then store stamp. A struct the collector never
    tracks (a tuple is tracked until a collection looks at it, and a full cache keeps
    one item per entry)."""

    when: float
    used: int
    key: str


class _Timeline:
    """The time of each entry's next state change, as items (time, the entry's store
    stamp, its id), split by id over shards, each a heap.

    An entry let go early (replaced, evicted, invalidated) leaves its item behind, to
    be skipped by its stamp when it comes up; a shard holding more such items than
    current ones is rebuilt from its current ones, which costs a shard's worth of
    work, never the whole timeline's. Items hold ids, not entries, so a group let
    go is freed at once.
    """

    def __init__(self, current: Callable[[str, int], bool]) -> None:
        self.shards: list[list[_Due]] = [[] for _ in range(_SHARDS)]
        self._stale = [0] * _SHARDS  # items of entries let go, per shard
        self._current = current

    def add(self, when: float, used: int, key: str) -> None:
        heapq.heappush(self.shards[hash(key) & (_SHARDS - 1)], _Due(when, used, key))

    def let_go(self, key: str) -> None:
        """The entry of ``key`` left before its item came up."""
        index = hash(key) & (_SHARDS - 1)
        self._stale[index] += 1
        shard = self.shards[index]
        if 2 * self._stale[index] > len(shard) + 32:
            current = self._current
            shard[:] = [item for item in shard if current(item.key, item.used)]
            heapq.heapify(shard)
            self._stale[index] = 0

    def pop_due(self, now: float) -> tuple[int, str] | None:
        """Take out the soonest item if its time is at or before ``now``: (stamp, id)."""
        soonest: list[_Due] | None = None
        for shard in self.shards:
            if shard and (soonest is None or shard[0].when < soonest[0].when):
                soonest = shard
        if soonest is None or soonest[0].when > now:
            return None
        item = heapq.heappop(soonest)
        return item.used, item.key

    def skipped(self, key: str) -> None:
        """An item taken out was of an entry let go: one fewer to clear out."""
        index = hash(key) & (_SHARDS - 1)
        if self._stale[index]:
            self._stale[index] -= 1

    def soonest(self) -> float:
        return min((shard[0].when for shard in self.shards if shard), default=math.inf)

    def clear(self) -> None:
        for shard in self.shards:
            shard.clear()
        self._stale = [0] * _SHARDS


class GroupCache:
    """Entries by canonical group id, with the counters of :class:`CacheStats`.

    ``fresh`` is the read path: what is kept for every group that is fresh at
    least until ``horizon``, least recently used first, with each fresh cached
    404 in the same order under ``(id,)``. A reader that finds ``clock() <
    horizon`` needs no per-entry expiry check; it moves the key to the end (the
    LRU order) and counts the hit, as :meth:`fresh_audiences` does; a value that
    is not a tuple is a body not read yet, which :meth:`fresh_audiences` decodes.
    """

    def __init__(self, config: CacheConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.entries = _Entries(self, max(config.maxsize, 1))  # fresh or kept for stale_if_error
        self.fresh: dict[str | tuple[str], Kept] = {}  # oldest use first
        # Entries held but no longer fresh (past their refresh-ahead point, or expired
        # and kept for stale_if_error), in the order they left `fresh`.
        self.outside: dict[str, None] = {}
        self.horizon = math.inf  # no entry changes state before this
        self.uses = 0  # stores: stamps each entry's timeline items
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
        self._timeline = _Timeline(self._is_current)
        self._evict_batch = max(1, min(_EVICT_BATCH, config.maxsize // 16))

    def _is_current(self, key: str, used: int) -> bool:
        return self._holds(key, used) is not None

    def _end_of_use(self, entry: Entry) -> float:
        """When an entry leaves: a group keeps its stale window, a 404 has none."""
        if entry.not_found is not None:
            return entry.expires
        return entry.expires + self.config.stale_if_error

    def _holds(self, key: str, used: int) -> Entry | None:
        """The entry stored for ``key`` by the store stamped ``used``, if still there."""
        entry = self.entries.get(key)
        return entry if entry is not None and entry.used == used else None

    def _drop(self, entry: Entry) -> None:
        """Let an entry go before its timeline item comes up."""
        del self.entries[entry.key]
        self.fresh.pop(_fresh_key(entry), None)
        self.outside.pop(entry.key, None)
        self._timeline.let_go(entry.key)

    def _sweep(self, now: float) -> None:
        """Apply the state changes due at ``now``, a batch at most (the next step goes
        on: the horizon stays behind ``now`` until none is due); move the horizon on."""
        timeline = self._timeline
        for _ in range(_SWEEP_BATCH):
            due = timeline.pop_due(now)
            if due is None:
                break
            used, key = due
            entry = self._holds(key, used)
            if entry is None:
                timeline.skipped(key)
                continue
            self.fresh.pop(_fresh_key(entry), None)  # any item due means it left fresh
            end = self._end_of_use(entry)
            if now < end:
                self.outside[key] = None
                timeline.add(end, used, key)
            else:
                del self.entries[key]
                self.outside.pop(key, None)
                self.expirations += 1
        self.horizon = timeline.soonest()

    def _is_fresh(self, key: str, now: float) -> bool:
        """Whether ``fresh`` may serve ``key`` at ``now``: always while the horizon is
        ahead; behind it (changes still due) the entry's own deadline decides."""
        if now < self.horizon:
            return True
        self._sweep(now)
        if now < self.horizon:
            return True
        entry = self.entries.get(key)
        return entry is not None and now < _leaves_fresh(entry)

    def fresh_audiences(self, key: str, now: float) -> tuple[Audience, ...] | None:
        """The audiences of ``key`` if fresh at ``now``, counted as a hit and made the
        most recently used; a body not read yet is decoded and kept decoded (the
        client's read path inlines the rest)."""
        if not self._is_fresh(key, now):
            return None
        fresh = self.fresh
        kept = fresh.pop(key, None)
        if kept is None:
            return None
        audiences = kept if isinstance(kept, tuple) else self._decoded(self.entries[key])
        fresh[key] = audiences
        self.hits += 1
        return audiences

    def fresh_not_found(self, key: str, now: float) -> NotFoundError | None:
        """A copy of the cached 404 of ``key`` if fresh at ``now``, counted as a hit and
        made the most recently used."""
        if not self._is_fresh(key, now):
            return None
        fresh = self.fresh
        if fresh.pop((key,), None) is None:
            return None
        fresh[(key,)] = ()
        self.hits += 1
        return copy.copy(self.entries[key].not_found)

    @staticmethod
    def _decoded(entry: Entry) -> tuple[Audience, ...]:
        """The audiences of a group; a body is decoded (it decoded when it arrived)
        and kept decoded, its free-form JSON copied out so the body can go."""
        kept = entry.audiences
        if isinstance(kept, tuple):
            return kept
        audiences = decode_audience_tuple(kept)
        prepare_to_keep(audiences)
        entry.audiences = audiences
        return audiences

    def evict(self, now: float) -> list[Entry]:
        """Make room: drop a batch of entries and return them. Those no longer fresh go
        first, in the order they left ``fresh``; then fresh entries, least recently
        used first."""
        self._sweep(now)
        batch = self._evict_batch
        entries = self.entries
        victims = [entries[key] for key in itertools.islice(self.outside, batch)]
        if len(victims) < batch:
            for key in itertools.islice(self.fresh, batch - len(victims)):
                victims.append(entries[key if type(key) is str else key[0]])
        for entry in victims:
            self._drop(entry)
        self.evictions += len(victims)
        return victims

    def store(self, key: str, entry: Entry) -> None:
        """Insert or replace an entry (a no-op when ``cache_maxsize`` is 0). A group
        may be kept as its body (bytes), decoded on its first hit."""
        if self.config.maxsize == 0:
            return
        now = self.clock()
        self.uses += 1
        entry.used = self.uses
        entry.key = key
        previous = self.entries.get(key)
        if previous is not None:
            if previous.expires <= now:
                self.expirations += 1  # replaced while inside its stale window
            self._drop(previous)
        end = self._end_of_use(entry)
        if not now < end:
            return  # expired on arrival (a zero TTL): nothing to keep
        if entry.not_found is not None:  # no traceback, cause or context: no cycles
            entry.not_found = copy.copy(entry.not_found)
        if not now < self.horizon:
            self._sweep(now)  # the expired go before anything is evicted
        self.entries[key] = entry  # when full, cachetools calls popitem: see evict()
        leaves = _leaves_fresh(entry)
        if now < leaves:
            self.fresh[_fresh_key(entry)] = entry.audiences
        else:
            self.outside[key] = None
            leaves = end
        self._timeline.add(leaves, entry.used, key)
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
        return self._decoded(entry)

    def stale(self, key: str, now: float) -> tuple[Audience, ...] | None:
        """The audiences of the expired group ``key`` if it is inside its stale window."""
        entry = self.entries.get(key)
        window = self.config.stale_if_error
        if entry is None or entry.not_found is not None or window <= 0:
            return None
        if not entry.expires <= now < entry.expires + window:
            return None
        return self._decoded(entry)

    def invalidate(self, key: str) -> None:
        """Forget one group."""
        entry = self.entries.get(key)
        if entry is not None:
            self._drop(entry)

    def clear(self) -> None:
        """Forget every group (counters are kept)."""
        self.entries = _Entries(self, max(self.config.maxsize, 1))
        self.fresh.clear()
        self.outside.clear()
        self.horizon = math.inf
        self._timeline.clear()

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
