"""The cache against a plain reference model, over random sequences of operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from fanfare_async import Audience, NotFoundError
from fanfare_async._cache import Entry, GroupCache
from fanfare_async._config import CacheConfig
from fanfare_async._models import decode_audience_tuple

EXAMPLE = (Path(__file__).parent / "data" / "endpoint_example.json").read_bytes()
[AUDIENCE] = decode_audience_tuple(EXAMPLE)
NOT_FOUND = "404"  # what a lookup of a cached 404 gives, in the model and the test


@dataclass
class _Kept:
    audiences: tuple[Audience, ...] | str  # NOT_FOUND for a cached 404
    expires: float
    stored: int
    used: int


@dataclass
class Model:
    """What the cache must do, written the obvious way. Expired groups are kept for
    ``stale_if_error`` seconds (cached 404s are not) and dropped when an entry is
    stored or looked up after that. A full cache evicts expired groups first (in the
    order they expired), then fresh entries, groups and 404s alike, in exact LRU
    order."""

    maxsize: int
    stale_if_error: float
    now: float = 0.0
    uses: int = 0
    kept: dict[int, _Kept] = field(default_factory=dict)
    hits: int = 0
    evictions: int = 0
    expirations: int = 0

    def _expire(self) -> None:
        for key in [k for k, v in self.kept.items() if v.expires + self._window(v) <= self.now]:
            del self.kept[key]
            self.expirations += 1

    def _window(self, kept: _Kept) -> float:
        return 0.0 if kept.audiences is NOT_FOUND else self.stale_if_error

    def store(self, key: int, audiences: tuple[Audience, ...] | str, ttl: float) -> None:
        self.uses += 1
        previous = self.kept.pop(key, None)
        if previous is not None and previous.expires <= self.now:
            self.expirations += 1
        kept = _Kept(audiences, self.now + ttl, self.uses, self.uses)
        if not self.now < kept.expires + self._window(kept):
            return
        if previous is None and len(self.kept) >= self.maxsize:
            self._expire()
            if len(self.kept) >= self.maxsize:  # batch of one below maxsize 32
                del self.kept[min(self.kept, key=self._eviction_order)]
                self.evictions += 1
        self.kept[key] = kept
        self._expire()

    def _eviction_order(self, key: int) -> tuple[bool, float, int]:
        kept = self.kept[key]
        if kept.expires <= self.now:
            return (False, kept.expires, kept.stored)
        return (True, 0.0, kept.used)

    def get(self, key: int) -> tuple[Audience, ...] | str | None:
        self._expire()
        kept = self.kept.get(key)
        if kept is None or not self.now < kept.expires:
            return None
        self.uses += 1
        kept.used = self.uses
        self.hits += 1
        return kept.audiences


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# Mostly stores and lookups over a few keys, with TTLs long next to most clock steps,
# so that full caches, LRU evictions after hits and expiries all come up often.
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["store", "store", "store404", "get", "get", "get", "advance", "invalidate"]
        ),
        st.integers(0, 4),
        st.sampled_from([0.0, 3.0, 10.0, 10.0, 100.0]),
    ),
    max_size=80,
)


@example(  # an expired group kept for stale_if_error goes before an older fresh one
    maxsize=2,
    window=5.0,
    ops=[("store", 1, 100.0), ("store", 0, 3.0), ("advance", 0, 10.0), ("store", 2, 10.0)],
)
@example(  # the classic case: a hit makes the older group the more recently used one
    maxsize=2,
    window=0.0,
    ops=[("store", 0, 9.0), ("store", 1, 9.0), ("get", 0, 0.0), ("store", 2, 9.0)],
)
@settings(max_examples=400, deadline=None)
@given(maxsize=st.integers(1, 4), window=st.sampled_from([0.0, 5.0]), ops=operations)
def test_cache_behaves_like_the_reference_model(
    maxsize: int, window: float, ops: list[tuple[str, int, float]]
) -> None:
    """Hits, misses, evictions and expirations match the model after every step."""
    clock = Clock()
    cache = GroupCache(CacheConfig(maxsize=maxsize, stale_if_error=window), clock=clock)
    model = Model(maxsize, window)
    for op, key, number in ops:
        name = f"g{key}"
        if op == "store":
            audiences = (AUDIENCE,)  # a new tuple each time: identity tells stores apart
            cache.store(name, Entry(audiences, clock() + number))
            model.store(key, audiences, number)
        elif op == "store404":
            missing = NotFoundError("no such group", status_code=404)
            cache.store(name, Entry((), clock() + number, missing))
            model.store(key, NOT_FOUND, number)
        elif op == "get":  # as the client's lookup does it
            found: tuple[Audience, ...] | str | None = cache.fresh_audiences(name, clock())
            if found is None and cache.fresh_not_found(name, clock()) is not None:
                found = NOT_FOUND
            assert found is model.get(key), (op, key)
        elif op == "advance":
            clock.now += number / 4 + 0.5
            model.now = clock.now
        else:
            cache.invalidate(name)
            model.kept.pop(key, None)
        stats = cache.stats()
        assert stats.size == len(model.kept), (op, key)
        assert (stats.hits, stats.evictions) == (model.hits, model.evictions), (op, key)
        assert stats.expirations == model.expirations, (op, key)
        # `fresh` lists the fresh groups least recently used first (stale ones may
        # linger until the horizon), and none is stale while the horizon is ahead:
        # what the client's inline hit path relies on.
        by_use = sorted((v.used, k) for k, v in model.kept.items() if clock.now < v.expires)
        held = [cache.entries[k if isinstance(k, str) else k[0]] for k in cache.fresh]
        listed = [entry.key for entry in held if clock.now < entry.expires]
        assert listed == [f"g{k}" for _, k in by_use], (op, key)
        if clock.now < cache.horizon:
            assert len(listed) == len(cache.fresh), (op, key)
