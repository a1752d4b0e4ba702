"""The shared tier as the client sees it: a protocol, and nothing of Redis.

A shared tier (``fanfare_async.redis.RedisTier``) sits behind each client's
in-process cache. The client reaches it only through these protocols, so the
base install never imports Redis and a test can hand the client a tier that
fails on purpose.

One tier may serve several clients; each client :meth:`SharedTier.attach`-es
to it and gets its own :class:`SharedCache`, bound to a namespace (derived by
a one-way hash of base URL and secret key unless the tier names one).

Failure contract: every awaitable below either completes within the tier's
per-operation timeout or raises :class:`SharedTierError`; it never raises
anything else for a Redis failure. While :attr:`SharedCache.available` is
False (the tier's circuit is open) the client does not call it at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ._exceptions import FanfareError


class SharedTierError(FanfareError):
    """One operation on the shared tier failed or took longer than its timeout.

    Never reaches a caller of the client: the client counts it in
    ``cache_stats.shared_errors`` and carries on without the tier.
    """


@dataclass(frozen=True, slots=True)
class SharedValue:
    """What the tier holds for one group.

    ``body`` is the API's response body as received (the JSON array of a 200,
    or the error body of a 404 when ``not_found``). ``fresh_for`` is how many
    seconds of freshness are left, measured on the tier's own clock: a value
    written with a TTL of 60 s and read 20 s later has ``fresh_for`` near 40.
    It is <= 0 for a value kept only for ``stale_if_error`` (``stale_for``
    seconds of that grace are left).
    """

    body: bytes
    not_found: bool
    fresh_for: float
    stale_for: float


class Lease(Protocol):
    """The right to fetch one group for every process of the namespace.

    The tier keeps the lease alive while the holder's process runs (a holder
    that dies or hangs loses it once ``lease`` seconds pass without renewal).
    Exactly one of :meth:`fill` / :meth:`abandon` ends it; both wake every
    process waiting for this group, and neither raises.
    """

    async def fill(self, body: bytes, *, not_found: bool, ttl: float, grace: float) -> None:
        """Store the fetched group (fresh for ``ttl`` s, then kept ``grace`` s more
        for stale_if_error), end the lease and wake the waiters."""
        ...

    async def abandon(self) -> None:
        """End the lease without a value (the fetch failed); the waiters wake and retry."""
        ...


class SharedBudget(Protocol):
    """The namespace's one request budget, kept by the tier on its own clock.

    Durations go both ways, never timestamps: hosts whose clocks disagree still
    share one correct rate. Every call raises :class:`SharedTierError` when the
    tier fails (a timed-out call may have counted; it is never retried).
    """

    @property
    def members(self) -> int | None:
        """How many processes drew from the budget lately (None: not known yet)."""
        ...

    async def take(self, rate: float, burst: int) -> float:
        """Draw one request from a bucket of ``rate`` requests/second holding ``burst``
        (``rate`` 0: no bucket, only the holds and the adapted rate below): 0.0 when
        granted, else the seconds to wait before asking again."""
        ...

    async def hold(self, seconds: float) -> None:
        """No process of the namespace draws for ``seconds`` (never shortens a hold)."""
        ...

    async def adapt(self, rate: float, seconds: float) -> None:
        """Every process draws at most ``rate`` requests/second for ``seconds``."""
        ...


class SharedCache(Protocol):
    """One client's view of a shared tier, bound to its namespace."""

    @property
    def budget(self) -> SharedBudget:
        """The namespace's request budget."""
        ...

    @property
    def available(self) -> bool:
        """False while the tier's circuit is open: skip it, do not call it."""
        ...

    async def get(self, key: str) -> SharedValue | None:
        """The group stored under ``key`` (fresh or within its grace), or None.

        A value that cannot be decoded (corrupt, another format version) is None.
        """
        ...

    async def put(
        self, key: str, body: bytes, *, not_found: bool, ttl: float, grace: float
    ) -> None:
        """Store a group fetched without a lease (``ttl``/``grace`` as in :meth:`Lease.fill`)."""
        ...

    async def claim(self, key: str) -> Lease | float:
        """Become the one process that fetches ``key``: a :class:`Lease`, or, when
        another process holds it, the seconds until that lease runs out."""
        ...

    async def wait(self, key: str, timeout: float) -> None:
        """Return when the holder of ``key``'s lease fills or abandons it, or after
        ``timeout`` seconds, whichever comes first. No polling; never raises
        :class:`SharedTierError` (a lost notification only costs the timeout)."""
        ...

    async def invalidate(self, key: str) -> None:
        """Drop ``key`` from the tier and from every attached client's in-process cache."""
        ...

    async def clear(self) -> None:
        """Drop every group of this namespace, everywhere."""
        ...

    def detach(self) -> None:
        """The client is closing: stop delivering its invalidations (idempotent)."""
        ...


class SharedTier(Protocol):
    """A tier shared by processes; ``FanfareClient(shared=tier)``."""

    def attach(
        self,
        *,
        base_url: str,
        secret_key: str,
        on_invalidate: Callable[[str | None], None],
    ) -> SharedCache:
        """A view for one client. ``on_invalidate(key)`` runs in the client's event
        loop when any process invalidates ``key`` (None: the whole namespace was
        cleared); the secret key only feeds the namespace's one-way hash."""
        ...
