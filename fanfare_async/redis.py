"""The shared tier on Redis: one cache, single-flight and invalidations across processes.

>>> from fanfare_async import FanfareClient  # doctest: +SKIP
>>> from fanfare_async.redis import RedisTier
>>> tier = RedisTier("redis://localhost:6379/0")
>>> async with FanfareClient(shared=tier) as client:
...     audiences = await client.get_group_audiences(group_id)
>>> await tier.aclose()

Needs the ``redis`` extra (redis-py 8.1 or later): ``pip install "fanfare-async[redis]"``.

What a tier keeps in Redis, per namespace (see ``_redis_codec``): one string per
group (a versioned MessagePack envelope expiring at ttl + grace), one lease key
per group being fetched, and one pub/sub channel for wake-ups and
invalidations. A tier opens two connections, whatever the number of clients,
views, lookups or waiters: one that carries every command, pipelined, and one
subscribed to the channels of its namespaces.

Every operation answers within ``timeout`` or raises SharedTierError; a timeout
or a lost connection opens the tier's circuit (``available`` is False for
``cooldown`` seconds, doubling per failed probe up to ``max_cooldown``), after
which one operation probes Redis again.

A tier is bound to the event loop it first runs in; close it with
``await tier.aclose()`` in that loop. ``await tier.connect()`` opens the
connections ahead of the first lookup (optional).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import weakref
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import redis as _redis_py
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.connection import ConnectionPool
    from redis.exceptions import NoScriptError, ResponseError
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'fanfare_async.redis needs redis-py: pip install "fanfare-async[redis]"'
    ) from exc

from . import _config
from ._exceptions import FanfareConfigError
from ._redis_budget import RedisBudget
from ._redis_circuit import Circuit
from ._redis_codec import (
    CLEAR,
    INVALIDATE,
    ORIGIN_BYTES,
    WAKE,
    Names,
    check_name,
    decode_value,
    derive_namespace,
    encode_value,
    message,
    milliseconds,
    pack,
    parse_message,
)
from ._redis_link import Link, Subscriber
from ._redis_scripts import ABANDON, CLAIM, EXTEND, FILL, FILLED, FILLED_MS, GET, Script
from ._redis_scripts import INVALIDATE as INVALIDATE_SCRIPT
from ._shared import SharedTierError, SharedValue

_found = tuple(int(part) for part in re.findall(r"\d+", _redis_py.__version__)[:2])
if _found < (8, 1):  # pragma: no cover - the dev extra pins redis>=8.1
    raise ImportError(
        f"fanfare_async.redis needs redis-py 8.1 or later, found {_redis_py.__version__}: "
        'pip install "fanfare-async[redis]"'
    )

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_COOLDOWN",
    "DEFAULT_LEASE",
    "DEFAULT_MAX_COOLDOWN",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "ENV_REDIS_URL",
    "RedisTier",
]

logger = logging.getLogger("fanfare_async")

#: The environment variable read when neither ``url`` nor ``client`` is given.
ENV_REDIS_URL: Final = _config.ENV_REDIS_URL
#: Seconds one Redis operation may take. A healthy Redis answers in well under a
#: millisecond on a LAN; a cold API lookup is an HTTPS round trip of tens of
#: milliseconds or more, and the organization's budget is one request per 60 ms.
#: 100 ms survives a full garbage collection of the client (12-18 ms), a slow
#: network hop and a busy host without tripping the circuit (8 client processes
#: sharing 2 cores with Redis and the API double missed a 50 ms deadline about
#: 100 times each over 2,000 lookups, and so made 8,775-9,904 API requests for
#: 2,000 groups; at 100 ms: none, and 2,000 requests), yet a dead or black-holed
#: Redis costs one lookup at most 100 ms before the circuit skips it.
DEFAULT_TIMEOUT: Final = 0.1
#: Seconds a process may hold a group's fetch without renewing it. The holder
#: renews every lease / 3 while it runs, so a long fetch keeps it; a process that
#: dies or is stopped blocks the others at most this long.
DEFAULT_LEASE: Final = 5.0
#: First word of every key and channel.
DEFAULT_PREFIX: Final = "fanfare"
#: Seconds the circuit stays open after a first failure...
DEFAULT_COOLDOWN: Final = 0.5
#: ...doubling per failed probe up to this, so the tier is back within 5 s of Redis
#: answering again (the longest cooldown plus one probe).
DEFAULT_MAX_COOLDOWN: Final = 4.0
#: Seconds a (re)connection may take in the background; callers never wait for it
#: longer than ``timeout``.
DEFAULT_CONNECT_TIMEOUT: Final = 1.0

_CLIENT_NAME: Final = "fanfare_async"
_SCAN_COUNT: Final = b"1000"


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def _redact(url: str) -> str:
    """The URL without its password (in the userinfo or the query)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if "password" in k.lower() else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class _Waiters:
    """The local waiters for one group's lease: one future, however many tasks."""

    __slots__ = ("count", "future")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.count = 0


class RedisTier:
    """A shared tier on Redis for any number of clients of this process.

    ``RedisTier(url)`` opens its own connections (a
    ``redis.asyncio.BlockingConnectionPool`` of two) and closes them in
    :meth:`aclose`; ``RedisTier(client=redis.asyncio.Redis(...))`` borrows two
    connections from the caller's pool and gives them back, never closing the
    client. With neither, the URL comes from ``FANFARE_REDIS_URL``.

    - ``namespace``: share one namespace between several secret keys of one
      organization; by default each (base URL, secret key) gets its own,
      derived by a one-way hash.
    - ``timeout`` (:data:`DEFAULT_TIMEOUT`): the most seconds one operation waits
      for Redis; ``lease`` (:data:`DEFAULT_LEASE`): the most seconds a process
      that stopped renewing keeps the others from fetching a group.
    - ``prefix`` (:data:`DEFAULT_PREFIX`): first word of every key and channel.
    - ``cooldown`` / ``max_cooldown`` (:data:`DEFAULT_COOLDOWN`,
      :data:`DEFAULT_MAX_COOLDOWN`): how long the circuit stays open.
    - ``connect_timeout`` (:data:`DEFAULT_CONNECT_TIMEOUT`): the most seconds a
      background (re)connection may take.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        namespace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        lease: float = DEFAULT_LEASE,
        prefix: str = DEFAULT_PREFIX,
        cooldown: float = DEFAULT_COOLDOWN,
        max_cooldown: float = DEFAULT_MAX_COOLDOWN,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self._timeout = _seconds("timeout", timeout)
        self._lease = _seconds("lease", lease)
        if self._lease <= self._timeout:
            raise ValueError(f"lease ({lease!r} s) must be longer than timeout ({timeout!r} s)")
        cooldown = _seconds("cooldown", cooldown)
        max_cooldown = _seconds("max_cooldown", max_cooldown)
        if max_cooldown < cooldown:
            raise ValueError(
                f"max_cooldown ({max_cooldown!r} s) must not be shorter than cooldown "
                f"({cooldown!r} s)"
            )
        self._connect_timeout = connect_timeout = _seconds("connect_timeout", connect_timeout)
        self._prefix = check_name("prefix", prefix, max_length=64)
        self._namespace = (
            None if namespace is None else check_name("namespace", namespace, max_length=100)
        )

        pool: ConnectionPool
        if client is not None:
            if url is not None:
                raise TypeError("pass url or client, not both")
            if not isinstance(client, Redis):
                raise TypeError(
                    f"client must be a redis.asyncio.Redis, not {type(client).__name__}"
                )
            pool = client.connection_pool
            self._owned_pool: ConnectionPool | None = None
            self._where = f"client={client!r}"
        else:
            source = "url"
            if url is None:
                url = os.environ.get(ENV_REDIS_URL) or None
                source = ENV_REDIS_URL
                if url is None:
                    raise FanfareConfigError(
                        f"RedisTier needs a Redis URL: pass url= or client=, or set {ENV_REDIS_URL}"
                    )
            if not isinstance(url, str):
                raise TypeError(f"url must be a str, not {type(url).__name__}")
            try:
                pool = BlockingConnectionPool.from_url(
                    url,
                    max_connections=2,  # the command connection and the pub/sub one
                    timeout=connect_timeout,
                    socket_timeout=connect_timeout,  # redis-py's own handshake reads
                    socket_connect_timeout=connect_timeout,
                    client_name=_CLIENT_NAME,
                )
            except ValueError:
                raise ValueError(f"{source} is not a Redis URL: {_redact(url)!r}") from None
            self._owned_pool = pool
            self._where = f"url={_redact(url)!r}"

        self._circuit = Circuit(cooldown, max_cooldown)
        self._subscriber = Subscriber(
            pool,
            connect_timeout=connect_timeout,
            on_message=self._on_message,
            on_resubscribed=self._on_resubscribed,
        )
        self._link = Link(
            pool,
            timeout=self._timeout,
            connect_timeout=connect_timeout,
            on_start=self._subscriber.start,
        )
        self._lease_ms = b"%d" % milliseconds(self._lease)
        self._origin = secrets.token_bytes(ORIGIN_BYTES)
        self._views: dict[bytes, list[_View]] = {}  # by channel (one per namespace)
        self._waits: dict[tuple[bytes, str], _Waiters] = {}
        self._held: weakref.WeakSet[_Lease] = weakref.WeakSet()
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        #: Fills, abandons and renewals that did not reach Redis (they never raise).
        self.lease_errors = 0

    # -- the SharedTier protocol ------------------------------------------------------

    def attach(
        self,
        *,
        base_url: str,
        secret_key: str,
        on_invalidate: Callable[[str | None], None],
    ) -> _View:
        """A view for one client, in the tier's namespace or the one derived from
        ``base_url`` and ``secret_key`` (a one-way hash: the key never reaches Redis)."""
        if self._closed:
            raise RuntimeError("this RedisTier is closed")
        if not isinstance(base_url, str) or not isinstance(secret_key, str):
            raise TypeError("base_url and secret_key must be str")
        if not callable(on_invalidate):
            raise TypeError("on_invalidate must be callable")
        namespace = self._namespace or derive_namespace(base_url, secret_key)
        view = _View(self, Names(self._prefix, namespace), on_invalidate)
        channel = view._names.channel
        self._views.setdefault(channel, []).append(view)
        self._subscriber.add(channel)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # the connections open with the first operation
        else:
            self._link.connect_soon()  # so the first lookup need not wait for it
            self._subscriber.start()
        return view

    async def connect(self) -> bool:
        """Open the connections now rather than on the first lookup (optional).

        True once the command connection is up and every attached namespace is
        subscribed, False if that took longer than ``connect_timeout``. Never raises.
        """
        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        if not await self._link.connected(self._connect_timeout):
            return False
        self._subscriber.start()
        for channel in list(self._views):
            if not await self._subscriber.ready(channel, deadline - loop.time()):
                return False
        return True

    @property
    def available(self) -> bool:
        """False while the circuit is open (or once closed)."""
        return not self._closed and self._circuit.available

    async def aclose(self) -> None:
        """Release the leases this tier holds, stop its tasks, close what it opened.

        A caller's client stays open. Idempotent; a cancelled call still closes."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        leases = list(self._held)
        if leases:  # others need not wait them out
            await asyncio.gather(*(lease.abandon() for lease in leases))
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.wait([renewer])
        for entry in self._waits.values():
            if not entry.future.done():
                entry.future.set_result(None)
        self._waits.clear()
        self._views.clear()
        await self._subscriber.aclose()
        await self._link.aclose()
        if self._owned_pool is not None:
            await self._owned_pool.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"circuit {self._circuit!r}"
        namespace = "" if self._namespace is None else f", namespace={self._namespace!r}"
        return (
            f"RedisTier({self._where}{namespace}, timeout={self._timeout}, lease={self._lease}, "
            f"prefix={self._prefix!r}; {state})"
        )

    # -- running commands -------------------------------------------------------------

    async def _run(self, packed: bytes) -> Any:
        """One command under the circuit: its reply (a ResponseError is returned)."""
        circuit = self._circuit
        if circuit.closed:
            try:
                return await self._link.send(packed)
            except SharedTierError:
                circuit.failure(probe=False)
                raise
        if self._closed:
            raise SharedTierError("the Redis tier is closed")
        if not circuit.try_probe():
            raise SharedTierError("the Redis tier's circuit is open")
        try:
            reply = await self._link.send(packed)
        except SharedTierError:
            circuit.failure(probe=True)
            raise
        except BaseException:
            circuit.probe_aborted()
            raise
        circuit.success(probe=True)
        return reply

    async def _run_always(self, packed: bytes) -> Any:
        """One command that ends or keeps a lease: sent even while the circuit is open."""
        if self._circuit.closed:
            return await self._run(packed)
        return await self._link.send(packed)

    async def _eval(
        self, script: Script, keys: tuple[bytes, ...], args: tuple[bytes, ...], *, always: bool
    ) -> Any:
        run = self._run_always if always else self._run
        count = b"%d" % len(keys)
        reply = await run(pack(b"EVALSHA", script.sha, count, *keys, *args))
        if isinstance(reply, NoScriptError):  # not run: send the source once
            reply = await run(pack(b"EVAL", script.source, count, *keys, *args))
        if isinstance(reply, ResponseError):
            raise SharedTierError(f"Redis refused a script: {reply}")
        return reply

    # -- leases -----------------------------------------------------------------------

    def _hold(self, lease: _Lease) -> None:
        self._held.add(lease)
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        """Every lease / 3: extend each held lease that is still ours (one task per tier)."""
        try:
            while True:
                await asyncio.sleep(self._lease / 3)
                leases = list(self._held)
                if not leases:
                    return
                results = await asyncio.gather(
                    *(self._extend(lease) for lease in leases), return_exceptions=True
                )
                for lease, result in zip(leases, results, strict=True):
                    if result == 0:
                        logger.debug("Redis tier: lost the lease of %r", lease._key)
                        self._held.discard(lease)
                    elif isinstance(result, BaseException):
                        self.lease_errors += 1
                        logger.debug("Redis tier: renewing %r failed: %r", lease._key, result)
        finally:
            if self._renewer is asyncio.current_task():
                self._renewer = None

    async def _extend(self, lease: _Lease) -> Any:
        names = lease._view._names
        return await self._eval(
            EXTEND, (names.lease_prefix + lease._kb,), (lease._token, self._lease_ms), always=True
        )

    # -- notifications ----------------------------------------------------------------

    def _wake(self, channel: bytes, key: str) -> None:
        entry = self._waits.pop((channel, key), None)
        if entry is not None and not entry.future.done():
            entry.future.set_result(None)

    def _deliver(self, channel: bytes, key: str | None, skip: _View | None) -> None:
        for view in list(self._views.get(channel, ())):
            if view is not skip:
                view._notify(key)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        parsed = parse_message(data)
        if parsed is None:
            return
        kind, origin, key = parsed
        if kind == WAKE:
            self._wake(channel, key)
        elif origin == self._origin:
            return  # our own invalidation: delivered in this process already
        elif kind == INVALIDATE:
            self._deliver(channel, key, None)
        elif kind == CLEAR:
            self._deliver(channel, None, None)

    def _on_resubscribed(self, channel: bytes) -> None:
        # The pub/sub connection broke and came back: whatever was published meanwhile
        # is lost, so drop every in-process copy and wake every waiter of the namespace.
        logger.debug("Redis tier: resubscribed; dropping the namespace's in-process copies")
        for ident in [ident for ident in self._waits if ident[0] == channel]:
            self._wake(*ident)
        self._deliver(channel, None, None)


class _View:
    """One client's view of the tier (the SharedCache protocol)."""

    __slots__ = ("_attached", "_get_head", "_names", "_on_invalidate", "_tier", "budget")

    def __init__(
        self, tier: RedisTier, names: Names, on_invalidate: Callable[[str | None], None]
    ) -> None:
        self._tier = tier
        self._names = names
        self._on_invalidate = on_invalidate
        self._attached = True
        #: The namespace's one request budget (the SharedBudget protocol).
        self.budget = RedisBudget(tier, names.value_prefix[: -len(b"v:")])
        # EVALSHA <sha> 1, waiting for its key: the hot path packs one bulk string.
        self._get_head = b"*4\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n" % GET.sha

    @property
    def available(self) -> bool:
        return self._tier.available

    async def get(self, key: str) -> SharedValue | None:
        vkey = self._names.value_prefix + key.encode()
        reply = await self._tier._run(b"%s$%d\r\n%s\r\n" % (self._get_head, len(vkey), vkey))
        if type(reply) is bytes:
            return decode_value(reply)
        if isinstance(reply, NoScriptError):
            reply = await self._tier._run(pack(b"EVAL", GET.source, b"1", vkey))
        if isinstance(reply, ResponseError):
            raise SharedTierError(f"Redis refused a read: {reply}")
        return decode_value(reply)

    async def put(
        self, key: str, body: bytes, *, not_found: bool, ttl: float, grace: float
    ) -> None:
        grace_ms = milliseconds(grace)
        px = milliseconds(ttl) + grace_ms
        if px <= 0:
            return
        value = encode_value(body, not_found=not_found, grace_ms=grace_ms)
        vkey = self._names.value_prefix + key.encode()
        reply = await self._tier._run(pack(b"SET", vkey, value, b"PX", b"%d" % px))
        if isinstance(reply, ResponseError):
            raise SharedTierError(f"Redis refused a write: {reply}")

    async def claim(self, key: str) -> _Lease | float:
        """A lease, or the seconds left of the holder's (0.0: just filled, read it)."""
        tier = self._tier
        names = self._names
        kb = key.encode()
        token = secrets.token_hex(8).encode()
        reply = await tier._eval(
            CLAIM,
            (names.lease_prefix + kb, names.value_prefix + kb),
            (token, tier._lease_ms),
            always=False,
        )
        if reply == -1:
            lease = _Lease(self, key, kb, token)
            tier._hold(lease)
            return lease
        if type(reply) is not int:
            raise SharedTierError(f"unexpected reply to a claim: {reply!r}")
        return max(reply, 0) / 1000

    async def wait(self, key: str, timeout: float) -> None:
        if not timeout > 0:
            return
        tier = self._tier
        if tier._closed:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        channel = self._names.channel
        ident = (channel, key)
        entry = tier._waits.get(ident)
        first = entry is None
        if entry is None:
            entry = tier._waits[ident] = _Waiters(loop.create_future())
        entry.count += 1
        try:
            # The first local waiter makes sure the lease is still held once the
            # subscription is live: a fill before that check is seen by it, one after
            # it by the subscription. Later waiters share its future.
            if first and not await self._still_held(key, deadline):
                tier._wake(channel, key)
                return
            remaining = deadline - loop.time()
            if remaining > 0 and not entry.future.done():
                await asyncio.wait([entry.future], timeout=remaining)
        finally:
            entry.count -= 1
            if entry.count == 0 and tier._waits.get(ident) is entry:
                del tier._waits[ident]

    async def _still_held(self, key: str, deadline: float) -> bool:
        tier = self._tier
        subscriber = tier._subscriber
        channel = self._names.channel
        if not subscriber.is_live(channel):
            subscriber.start()
            remaining = deadline - asyncio.get_running_loop().time()
            if not await subscriber.ready(channel, remaining):
                return True  # no notifications: wait out the timeout
        try:
            reply = await tier._run(pack(b"GET", self._names.lease_prefix + key.encode()))
        except SharedTierError:
            return False  # the tier is failing: go on without it
        return isinstance(reply, bytes) and reply != FILLED

    async def invalidate(self, key: str) -> None:
        tier = self._tier
        names = self._names
        tier._deliver(names.channel, key, self)
        kb = key.encode()
        await tier._eval(
            INVALIDATE_SCRIPT,
            (names.value_prefix + kb, names.lease_prefix + kb),
            (names.channel, message(INVALIDATE, tier._origin, kb)),
            always=False,
        )

    async def clear(self) -> None:
        """Unlink every key of the namespace (SCAN in batches, each under the timeout)."""
        tier = self._tier
        names = self._names
        tier._deliver(names.channel, None, self)
        cursor = b"0"
        while True:
            reply = await tier._run(
                pack(b"SCAN", cursor, b"MATCH", names.pattern, b"COUNT", _SCAN_COUNT)
            )
            if not (isinstance(reply, list) and len(reply) == 2):
                raise SharedTierError(f"unexpected reply to SCAN: {reply!r}")
            cursor, keys = reply
            if keys:
                unlinked = await tier._run(pack(b"UNLINK", *keys))
                if isinstance(unlinked, ResponseError):
                    raise SharedTierError(f"Redis refused UNLINK: {unlinked}")
            if cursor == b"0":
                break
        await tier._run(pack(b"PUBLISH", names.channel, message(CLEAR, tier._origin)))

    def detach(self) -> None:
        if not self._attached:
            return
        self._attached = False
        tier = self._tier
        channel = self._names.channel
        views = tier._views.get(channel)
        if views is not None and self in views:
            views.remove(self)
            if not views:
                del tier._views[channel]
                tier._subscriber.remove(channel)

    def _notify(self, key: str | None) -> None:
        try:
            self._on_invalidate(key)
        except Exception:
            logger.warning("Redis tier: an on_invalidate callback failed", exc_info=True)

    def __repr__(self) -> str:
        return f"<RedisTier view {self._names.channel.decode()!r}>"


class _Lease:
    """One claim won (the Lease protocol): renewed by the tier until it ends."""

    __slots__ = ("__weakref__", "_kb", "_key", "_open", "_token", "_view")

    def __init__(self, view: _View, key: str, kb: bytes, token: bytes) -> None:
        self._view = view
        self._key = key
        self._kb = kb
        self._token = token
        self._open = True

    def _end(self) -> bool:
        if not self._open:
            return False
        self._open = False
        self._view._tier._held.discard(self)
        return True

    async def fill(self, body: bytes, *, not_found: bool, ttl: float, grace: float) -> None:
        if not self._end():
            return
        view = self._view
        tier = view._tier
        names = view._names
        ttl_ms = milliseconds(ttl)
        grace_ms = milliseconds(grace)
        value = encode_value(body, not_found=not_found, grace_ms=grace_ms)
        try:
            outcome = await tier._eval(
                FILL,
                (names.value_prefix + self._kb, names.lease_prefix + self._kb),
                (
                    self._token,
                    value,
                    b"%d" % (ttl_ms + grace_ms),
                    b"%d" % min(ttl_ms, FILLED_MS),
                    names.channel,
                    message(WAKE, tier._origin, self._kb),
                ),
                always=True,
            )
        except SharedTierError as exc:
            tier.lease_errors += 1
            logger.debug("Redis tier: filling %r failed: %s", self._key, exc)
        else:
            if outcome == 0:
                logger.debug("Redis tier: the lease of %r was lost; not stored", self._key)
            elif outcome == 2:
                tier.lease_errors += 1
                logger.debug("Redis tier: Redis refused the value of %r", self._key)
        finally:
            tier._wake(names.channel, self._key)

    async def abandon(self) -> None:
        if not self._end():
            return
        view = self._view
        tier = view._tier
        names = view._names
        try:
            await tier._eval(
                ABANDON,
                (names.lease_prefix + self._kb,),
                (self._token, names.channel, message(WAKE, tier._origin, self._kb)),
                always=True,
            )
        except SharedTierError as exc:
            tier.lease_errors += 1
            logger.debug("Redis tier: abandoning %r failed: %s", self._key, exc)
        finally:
            tier._wake(names.channel, self._key)

    def __repr__(self) -> str:
        state = "held" if self._open else "ended"
        return f"<RedisTier lease {self._key!r} {state}>"
