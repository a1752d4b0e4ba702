"""fanfare_async.redis against a real redis-server (tests/_redis_server.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest
import redis.asyncio

from fanfare_async._exceptions import FanfareConfigError, FanfareError
from fanfare_async._redis_circuit import Circuit
from fanfare_async._redis_codec import (
    check_name,
    decode_value,
    derive_namespace,
    encode_value,
    pack,
)
from fanfare_async._shared import Lease, SharedCache, SharedTier, SharedTierError
from fanfare_async.redis import (
    DEFAULT_COOLDOWN,
    DEFAULT_LEASE,
    DEFAULT_MAX_COOLDOWN,
    DEFAULT_TIMEOUT,
    ENV_REDIS_URL,
    RedisTier,
)

from ._redis_server import RedisServer

pytestmark = pytest.mark.anyio

BASE_URL = "https://admin.fanfare.io/api"
KEY = "sk_test_0123456789abcdef"
OTHER_KEY = "sk_test_fedcba9876543210"


class Recorder:
    """An on_invalidate callback that remembers what it got, awaitable."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []
        self._event = asyncio.Event()

    def __call__(self, key: str | None) -> None:
        self.keys.append(key)
        self._event.set()

    async def next(self, within: float = 1.0) -> str | None:
        """The next key delivered, waiting at most ``within`` seconds."""
        with anyio.fail_after(within):
            while not self.keys:
                self._event.clear()
                await self._event.wait()
        return self.keys.pop(0)


@asynccontextmanager
async def open_tier(srv: RedisServer, **options: Any) -> AsyncIterator[RedisTier]:
    tier = RedisTier(srv.url, **options)
    try:
        yield tier
    finally:
        await tier.aclose()


def view_of(
    tier: RedisTier,
    key: str = KEY,
    on_invalidate: Callable[[str | None], None] | None = None,
) -> SharedCache:
    return tier.attach(
        base_url=BASE_URL, secret_key=key, on_invalidate=on_invalidate or (lambda _: None)
    )


async def ready(tier: RedisTier) -> None:
    assert await tier.connect()


async def all_keys(raw: redis.asyncio.Redis) -> list[bytes]:
    return [key async for key in raw.scan_iter(count=1000)]


async def tier_connections(raw: redis.asyncio.Redis) -> int:
    return sum(1 for client in await raw.client_list() if client.get("name") == "fanfare_async")


async def commands_run(raw: redis.asyncio.Redis) -> int:
    """Commands Redis has run so far, except INFO and CLIENT (the looking itself) and
    PING (the pub/sub heartbeat: one per tier, not per waiter)."""
    stats = await raw.info("commandstats")
    return sum(
        entry["calls"]
        for name, entry in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_client", "cmdstat_ping"))
    )


# -- values -------------------------------------------------------------------------------


async def test_put_get_round_trip_on_redis_clock(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """A stored group reads back whole, its freshness measured by Redis's TTL."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b'[{"id": 1}]', not_found=False, ttl=60.0, grace=0.0)
        value = await view.get("g1")
        assert value is not None
        assert value.body == b'[{"id": 1}]'
        assert value.not_found is False
        assert 59.0 < value.fresh_for <= 60.0
        assert value.stale_for == 0.0
        # Redis's clock, not ours: shorten the TTL on the server and read again.
        (key,) = await all_keys(raw)
        await raw.pexpire(key, 20_000)
        later = await view.get("g1")
        assert later is not None
        assert 19.0 < later.fresh_for <= 20.0 < value.fresh_for
        assert await view.get("missing") is None


async def test_grace_keeps_a_stale_value(srv: RedisServer, raw: redis.asyncio.Redis) -> None:
    """Within its grace a value reads back stale: fresh_for <= 0, stale_for what is left."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b"[]", not_found=False, ttl=5.0, grace=30.0)
        value = await view.get("g1")
        assert value is not None
        assert 4.0 < value.fresh_for <= 5.0
        assert value.stale_for == 30.0
        (key,) = await all_keys(raw)
        assert 34_000 < await raw.pttl(key) <= 35_000  # Redis expires it at ttl + grace
        await raw.pexpire(key, 10_000)  # 20 s into the grace
        stale = await view.get("g1")
        assert stale is not None
        assert -20.5 < stale.fresh_for <= -20.0
        assert 9.5 < stale.stale_for <= 10.0


async def test_not_found_round_trip(srv: RedisServer) -> None:
    """A cached 404 keeps its flag and its error body."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        await view.put("gone", b'{"error": "not found"}', not_found=True, ttl=10.0, grace=0.0)
        value = await view.get("gone")
        assert value is not None
        assert value.not_found is True
        assert value.body == b'{"error": "not found"}'


async def test_nothing_kept_without_lifetime(srv: RedisServer, raw: redis.asyncio.Redis) -> None:
    """A put with no ttl and no grace writes nothing."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b"[]", not_found=False, ttl=0.0, grace=0.0)
        assert await all_keys(raw) == []


@pytest.mark.parametrize(
    "store",
    [
        pytest.param(lambda r, k: r.set(k, b"\x00garbage", px=60_000), id="garbage"),
        pytest.param(
            lambda r, k: r.set(k, msgspec.msgpack.encode([2, False, 0, b"[]"]), px=60_000),
            id="another-version",
        ),
        pytest.param(
            lambda r, k: r.set(k, msgspec.msgpack.encode([1, "no", 0, b"[]"]), px=60_000),
            id="wrong-field-type",
        ),
        pytest.param(
            lambda r, k: r.set(k, encode_value(b"[]", not_found=False, grace_ms=0)),
            id="no-expiry",
        ),
        pytest.param(lambda r, k: r.hset(k, "a", "b"), id="a-hash"),
        pytest.param(lambda r, k: r.set(k, b"\xc1", px=60_000), id="msgpack-reserved-byte"),
    ],
)
async def test_undecodable_value_is_a_miss(
    srv: RedisServer, raw: redis.asyncio.Redis, store: Callable[..., Any]
) -> None:
    """Whatever else sits under a value key reads as a miss, and the circuit stays closed."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b"[]", not_found=False, ttl=60.0, grace=0.0)
        (key,) = await all_keys(raw)
        await raw.delete(key)
        await store(raw, key)
        assert await view.get("g1") is None
        assert view.available


# -- namespaces -----------------------------------------------------------------------


async def test_namespaces_isolate_secret_keys(srv: RedisServer, raw: redis.asyncio.Redis) -> None:
    """Two secret keys never read each other's groups; an explicit namespace shares."""
    async with open_tier(srv) as tier, open_tier(srv, namespace="acme") as shared:
        mine, theirs = view_of(tier, KEY), view_of(tier, OTHER_KEY)
        await ready(tier)
        await mine.put("g1", b"[1]", not_found=False, ttl=60.0, grace=0.0)
        assert await theirs.get("g1") is None
        assert (await mine.get("g1")) is not None

        one, two = view_of(shared, KEY), view_of(shared, OTHER_KEY)
        await ready(shared)
        await one.put("g2", b"[2]", not_found=False, ttl=60.0, grace=0.0)
        value = await two.get("g2")
        assert value is not None
        assert value.body == b"[2]"
        assert b"fanfare:{acme}:v:g2" in await all_keys(raw)


async def test_keys_live_under_prefix_and_one_hash_tag(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """Every key is <prefix>:{<namespace>}:..., the namespace hashed from URL and key."""
    async with open_tier(srv, prefix="acme-cache") as tier:
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b"[]", not_found=False, ttl=60.0, grace=0.0)
        lease = await view.claim("g2")
        assert not isinstance(lease, float)
        namespace = derive_namespace(BASE_URL, KEY)
        assert sorted(await all_keys(raw)) == [
            f"acme-cache:{{{namespace}}}:l:g2".encode(),
            f"acme-cache:{{{namespace}}}:v:g1".encode(),
        ]
        await lease.abandon()


async def test_secret_key_appears_nowhere_in_redis(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """No key, value or channel in Redis contains the secret key."""
    secret = "sk_live_TOPSECRET_42"
    async with open_tier(srv) as tier, open_tier(srv) as other:
        view, peer = view_of(tier, secret), view_of(other, secret)
        await ready(tier)
        await ready(other)
        await view.put("g1", b"[]", not_found=False, ttl=60.0, grace=5.0)
        lease = await view.claim("g2")
        assert not isinstance(lease, float)
        assert isinstance(await peer.claim("g2"), float)
        await lease.fill(b"[1]", not_found=False, ttl=60.0, grace=0.0)
        await view.put("g3", b"[]", not_found=True, ttl=60.0, grace=0.0)
        await view.invalidate("g3")
        keys = await all_keys(raw)
        assert len(keys) == 3  # g1, g2 and the marker of g2's fill
        channels = await raw.pubsub_channels()
        assert channels
        for name in [*keys, *channels]:
            assert secret.encode() not in name
        for key in keys:
            assert await raw.type(key) == b"string"
            value = await raw.get(key)
            assert isinstance(value, bytes)
            assert secret.encode() not in value


# -- leases ---------------------------------------------------------------------------


async def test_one_claimer_wins_among_processes(srv: RedisServer) -> None:
    """Of many concurrent claims from several tiers, one gets the lease; the others the
    seconds left of it."""
    async with (
        open_tier(srv) as a,
        open_tier(srv) as b,
        open_tier(srv) as c,
        open_tier(srv) as d,
    ):
        views = [view_of(t) for t in (a, b, c, d) for _ in range(3)]
        for tier in (a, b, c, d):
            await ready(tier)
        results = await asyncio.gather(*(view.claim("g1") for view in views))
        leases = [r for r in results if not isinstance(r, float)]
        waits = [r for r in results if isinstance(r, float)]
        assert len(leases) == 1
        assert len(waits) == len(views) - 1
        assert all(0 < left <= DEFAULT_LEASE for left in waits)
        await leases[0].abandon()


async def test_claim_right_after_a_fill_says_read_it(srv: RedisServer) -> None:
    """A claim just after a fill answers 0.0 (read the group), not a second lease."""
    async with open_tier(srv) as a, open_tier(srv) as b:
        va, vb = view_of(a), view_of(b)
        await ready(a)
        await ready(b)
        lease = await va.claim("g1")
        assert not isinstance(lease, float)
        await lease.fill(b"[1]", not_found=False, ttl=60.0, grace=0.0)
        assert await vb.claim("g1") == 0.0
        value = await vb.get("g1")
        assert value is not None
        assert value.body == b"[1]"


async def test_fill_wakes_waiters_on_another_tier_without_polling(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """Twenty waiters in another process share one subscription and one check; while they
    wait Redis runs no command at all, and the fill wakes them at once."""
    async with open_tier(srv) as a, open_tier(srv) as b:
        va, vb = view_of(a), view_of(b)
        await ready(a)
        await ready(b)
        lease = await va.claim("g1")
        assert not isinstance(lease, float)
        left = await vb.claim("g1")
        assert isinstance(left, float)

        waiters = [asyncio.ensure_future(vb.wait("g1", left)) for _ in range(20)]
        await anyio.sleep(0.1)  # let the first waiter's one check run
        before = await commands_run(raw)
        await anyio.sleep(0.3)  # a window: pollers would show here
        assert await commands_run(raw) == before
        assert not any(w.done() for w in waiters)
        assert await tier_connections(raw) == 4  # two per tier, however many waiters

        await lease.fill(b"[1]", not_found=False, ttl=60.0, grace=0.0)
        with anyio.fail_after(1.0):
            await asyncio.gather(*waiters)
        value = await vb.get("g1")
        assert value is not None
        assert value.body == b"[1]"


async def test_local_waiter_wakes_on_local_fill(srv: RedisServer) -> None:
    """Two clients of one tier: the loser's wait ends when the winner fills."""
    async with open_tier(srv) as tier:
        first, second = view_of(tier), view_of(tier)
        await ready(tier)
        lease = await first.claim("g1")
        assert not isinstance(lease, float)
        left = await second.claim("g1")
        assert isinstance(left, float)
        waiter = asyncio.ensure_future(second.wait("g1", left))
        await lease.fill(b"[]", not_found=False, ttl=60.0, grace=0.0)
        with anyio.fail_after(1.0):
            await waiter


async def test_abandon_wakes_and_frees_the_lease(srv: RedisServer) -> None:
    """An abandoned lease wakes the waiters, and the next claim wins it."""
    async with open_tier(srv) as a, open_tier(srv) as b:
        va, vb = view_of(a), view_of(b)
        await ready(a)
        await ready(b)
        lease = await va.claim("g1")
        assert not isinstance(lease, float)
        left = await vb.claim("g1")
        assert isinstance(left, float)
        waiter = asyncio.ensure_future(vb.wait("g1", left))
        await anyio.sleep(0.05)
        await lease.abandon()
        with anyio.fail_after(1.0):
            await waiter
        taken = await vb.claim("g1")
        assert not isinstance(taken, float)
        await taken.abandon()
        await lease.abandon()  # a second end is a no-op


async def test_wait_without_a_lease_returns_at_once(srv: RedisServer) -> None:
    """Waiting for a group nobody fetches returns as soon as that is known."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        with anyio.fail_after(1.0):
            await view.wait("nobody", 30.0)


async def test_renewal_keeps_a_long_holder(srv: RedisServer) -> None:
    """A holder that runs for several lease periods keeps its lease."""
    async with open_tier(srv, lease=0.3) as a, open_tier(srv, lease=0.3) as b:
        va, vb = view_of(a), view_of(b)
        await ready(a)
        await ready(b)
        lease = await va.claim("g1")
        assert not isinstance(lease, float)
        start = time.monotonic()
        while time.monotonic() - start < 1.2:  # four lease periods
            left = await vb.claim("g1")
            assert isinstance(left, float), "the holder lost its lease"
            await vb.wait("g1", left)
        await lease.fill(b"[]", not_found=False, ttl=60.0, grace=0.0)


async def test_closing_a_tier_releases_its_leases(srv: RedisServer) -> None:
    """aclose abandons the leases the tier holds, so other processes go on at once."""
    async with open_tier(srv) as b:
        vb = view_of(b)
        await ready(b)
        a = RedisTier(srv.url)
        va = view_of(a)
        await ready(a)
        lease: Lease | float = await va.claim("g1")
        assert not isinstance(lease, float)
        left = await vb.claim("g1")
        assert isinstance(left, float)
        waiter = asyncio.ensure_future(vb.wait("g1", left))
        await anyio.sleep(0.05)
        await a.aclose()
        with anyio.fail_after(1.0):
            await waiter
        assert not isinstance(await vb.claim("g1"), float)


async def test_dropped_lease_stops_renewing(srv: RedisServer) -> None:
    """A lease its holder drops without ending (a bug) is no longer renewed and runs out."""
    async with open_tier(srv, lease=0.3) as a, open_tier(srv, lease=0.3) as b:
        va, vb = view_of(a), view_of(b)
        await ready(a)
        await ready(b)
        lease: object = await va.claim("g1")
        assert not isinstance(lease, float)
        del lease
        gc.collect()
        start = time.monotonic()
        while isinstance(left := await vb.claim("g1"), float):
            await vb.wait("g1", left)
            assert time.monotonic() - start < 0.3 + 1.0
        await left.abandon()


HOLDER = """
import asyncio, sys
from fanfare_async.redis import RedisTier
from fanfare_async._shared import SharedTierError

async def main():
    tier = RedisTier(sys.argv[1], lease=float(sys.argv[2]))
    view = tier.attach(base_url=sys.argv[3], secret_key=sys.argv[4], on_invalidate=print)
    # A cold process's first operations (connect, SCRIPT LOAD) may outlast the
    # 0.1 s operation timeout on a loaded machine: connect first, retry a timeout.
    assert await tier.connect()
    for _ in range(50):
        try:
            lease = await view.claim("g1")
            break
        except SharedTierError:
            await asyncio.sleep(0.1)
    assert not isinstance(lease, float), lease
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
async def test_dead_or_stopped_holder_loses_its_lease(
    srv: RedisServer, how: signal.Signals
) -> None:
    """A holder process killed or SIGSTOPped loses its lease within lease + 1 s."""
    lease_s = 0.5
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, srv.url, str(lease_s), BASE_URL, KEY,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        with anyio.fail_after(30):
            assert await holder.stdout.readline() == b"held\n"
        async with open_tier(srv, lease=lease_s) as tier:
            view = view_of(tier)
            await ready(tier)
            assert isinstance(await view.claim("g1"), float)
            os.kill(holder.pid, how)
            start = time.monotonic()
            while isinstance(left := await view.claim("g1"), float):
                await view.wait("g1", left)
            assert time.monotonic() - start < lease_s + 1.0
            await left.fill(b"[]", not_found=False, ttl=60.0, grace=0.0)
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


async def test_invalidate_during_a_fetch_revokes_its_fill(srv: RedisServer) -> None:
    """A group invalidated while it is fetched is not stored by that fetch."""
    async with open_tier(srv) as a, open_tier(srv) as b:
        va, vb = view_of(a), view_of(b)
        await ready(a)
        await ready(b)
        lease = await va.claim("g1")
        assert not isinstance(lease, float)
        await vb.invalidate("g1")
        await lease.fill(b"[old]", not_found=False, ttl=60.0, grace=0.0)
        assert await vb.get("g1") is None
        assert not isinstance(await vb.claim("g1"), float)


# -- invalidation -----------------------------------------------------------------------


async def test_invalidate_and_clear_reach_other_processes(srv: RedisServer) -> None:
    """invalidate and clear drop the value in Redis and reach every other client promptly."""
    here, there, local = Recorder(), Recorder(), Recorder()
    async with open_tier(srv) as a, open_tier(srv) as b:
        va = view_of(a, on_invalidate=here)
        va_neighbour = view_of(a, on_invalidate=local)
        vb = view_of(b, on_invalidate=there)
        await ready(a)
        await ready(b)
        await va.put("g1", b"[]", not_found=False, ttl=60.0, grace=0.0)
        await va.put("g2", b"[]", not_found=False, ttl=60.0, grace=0.0)

        await va.invalidate("g1")
        assert await there.next() == "g1"
        assert await local.next() == "g1"  # another client of the same tier
        assert await vb.get("g1") is None
        assert await vb.get("g2") is not None

        await vb.clear()
        assert await here.next() is None
        assert await local.next() is None
        assert await va.get("g2") is None

        va_neighbour.detach()
        va_neighbour.detach()
        await vb.invalidate("g3")
        assert await here.next() == "g3"
        assert here.keys == there.keys == local.keys == []  # nothing else, no echo


async def test_clear_unlinks_many_keys_in_batches(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """clear removes every key of its namespace, across several SCAN batches, and no other."""
    async with open_tier(srv) as tier:
        view, other = view_of(tier), view_of(tier, OTHER_KEY)
        await ready(tier)
        for i in range(2500):
            await view.put(f"g{i}", b"[]", not_found=False, ttl=60.0, grace=0.0)
        await other.put("kept", b"[]", not_found=False, ttl=60.0, grace=0.0)
        await view.clear()
        assert len(await all_keys(raw)) == 1
        assert await other.get("kept") is not None


async def test_failing_callback_is_logged_and_others_still_hear(
    srv: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_invalidate that raises is logged; the other clients still get theirs."""

    def broken(_: str | None) -> None:
        raise RuntimeError("boom")

    fine = Recorder()
    async with open_tier(srv) as a, open_tier(srv) as b:
        view_of(a, on_invalidate=broken)
        view_of(a, on_invalidate=fine)
        vb = view_of(b)
        await ready(a)
        await ready(b)
        with caplog.at_level(logging.WARNING, logger="fanfare_async"):
            await vb.invalidate("g1")
            assert await fine.next() == "g1"
        assert "on_invalidate callback failed" in caplog.text


async def test_broken_subscription_comes_back_and_drops_local_copies(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """When the pub/sub connection breaks the tier resubscribes, tells its clients to
    drop everything (messages were lost), and hears invalidations again."""
    heard = Recorder()
    async with open_tier(srv) as a, open_tier(srv) as b:
        view_of(a, on_invalidate=heard)
        vb = view_of(b)
        await ready(a)
        await ready(b)
        await raw.client_kill_filter(_type="pubsub")
        assert await heard.next(within=3.0) is None
        await ready(b)
        await vb.invalidate("g1")
        assert await heard.next(within=3.0) == "g1"


# -- failures -----------------------------------------------------------------------------


async def wait_until_back(tier: RedisTier, view: SharedCache, within: float) -> float:
    """Seconds until the tier answers again, trying only while it says it is available."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if view.available:
            try:
                await view.get("g1")
            except SharedTierError:
                pass
            else:
                return time.monotonic() - start
        await anyio.sleep(0.02)
    raise AssertionError(f"the tier was not back within {within} s: {tier!r}")


async def test_killed_redis_fails_fast_and_the_tier_comes_back(srv: RedisServer) -> None:
    """With Redis gone an operation fails at once and the circuit opens; after a
    restart the tier is back within 5 s by itself."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b"[]", not_found=False, ttl=60.0, grace=0.0)
        srv.kill()
        start = time.monotonic()
        with pytest.raises(SharedTierError):
            await view.get("g1")
        with pytest.raises(SharedTierError):  # the reconnection is refused, just as fast
            await view.get("g1")
        assert time.monotonic() - start < 0.5
        assert not view.available
        await srv.restart()
        assert await wait_until_back(tier, view, within=5.0) <= 5.0
        assert view.available


async def test_paused_redis_costs_one_timeout_not_a_stall(srv: RedisServer) -> None:
    """A SIGSTOPped Redis fails an operation after the timeout, and the tier returns
    after SIGCONT."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        srv.pause()
        start = time.monotonic()
        with pytest.raises(SharedTierError, match="did not answer"):
            await view.get("g1")
        assert time.monotonic() - start < DEFAULT_TIMEOUT + 0.25
        assert not view.available
        srv.resume()
        assert await wait_until_back(tier, view, within=5.0) <= 5.0


async def test_circuit_refuses_while_open(srv: RedisServer) -> None:
    """While the circuit is open the tier refuses at once instead of trying Redis."""
    async with open_tier(srv, cooldown=30.0, max_cooldown=30.0) as tier:
        view = view_of(tier)
        await ready(tier)
        srv.pause()
        with pytest.raises(SharedTierError):
            await view.get("g1")
        srv.resume()
        with pytest.raises(SharedTierError, match="circuit is open"):
            await view.get("g1")
        assert not view.available


async def test_script_flush_is_survived(srv: RedisServer, raw: redis.asyncio.Redis) -> None:
    """After SCRIPT FLUSH (NOSCRIPT), every script is sent again and works."""
    async with open_tier(srv) as a, open_tier(srv) as b:
        va, vb = view_of(a), view_of(b)
        await ready(a)
        await ready(b)
        await va.put("g1", b"[1]", not_found=False, ttl=60.0, grace=0.0)
        await raw.script_flush()
        assert (await va.get("g1")) is not None
        await raw.script_flush()
        lease = await va.claim("g2")
        assert not isinstance(lease, float)
        await raw.script_flush()
        assert isinstance(await vb.claim("g2"), float)
        await raw.script_flush()
        await lease.fill(b"[2]", not_found=False, ttl=60.0, grace=0.0)
        assert await vb.get("g2") is not None
        assert a.lease_errors == 0
        assert va.available


async def test_cancelled_lookups_leave_the_connection_in_step(srv: RedisServer) -> None:
    """Cancelling lookups in flight costs no reconnection and no mixed-up replies."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        for i in range(20):
            await view.put(f"g{i}", b"[%d]" % i, not_found=False, ttl=60.0, grace=0.0)
        tasks = [asyncio.ensure_future(view.get(f"g{i % 20}")) for i in range(200)]
        await asyncio.sleep(0)  # every command is written; no reply is read yet
        for task in tasks[::2]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for i, result in enumerate(results):
            if i % 2:
                assert result is not None
                assert not isinstance(result, BaseException)
                assert result.body == b"[%d]" % (i % 20)
            else:
                assert isinstance(result, asyncio.CancelledError)
        value = await view.get("g7")
        assert value is not None
        assert value.body == b"[7]"
        assert tier._link.connects == 1


async def test_a_busy_event_loop_is_not_a_redis_timeout(srv: RedisServer) -> None:
    """Replies that arrived while the event loop was blocked past the timeout still
    count: no dropped connection, no open circuit."""
    async with open_tier(srv) as tier:
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b"[1]", not_found=False, ttl=60.0, grace=0.0)
        task = asyncio.ensure_future(view.get("g1"))
        await asyncio.sleep(0)  # the command is written
        time.sleep(DEFAULT_TIMEOUT * 3)  # noqa: ASYNC251 - a loop blocked by other work
        value = await task
        assert value is not None
        assert value.body == b"[1]"
        assert view.available
        assert tier._link.connects == 1


# -- configuration and lifecycle -----------------------------------------------------------


def test_missing_url_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without url, client or FANFARE_REDIS_URL the error says what to set."""
    monkeypatch.delenv(ENV_REDIS_URL, raising=False)
    with pytest.raises(FanfareConfigError, match=ENV_REDIS_URL):
        RedisTier()


async def test_url_from_the_environment(srv: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """FANFARE_REDIS_URL is the default URL."""
    monkeypatch.setenv(ENV_REDIS_URL, srv.url)
    tier = RedisTier()
    try:
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b"[]", not_found=False, ttl=60.0, grace=0.0)
        assert await view.get("g1") is not None
    finally:
        await tier.aclose()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": -1.0}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": "0.05"}, TypeError),
        ({"timeout": True}, TypeError),
        ({"lease": float("inf")}, ValueError),
        ({"lease": 0.05, "timeout": 0.05}, ValueError),
        ({"cooldown": 0}, ValueError),
        ({"cooldown": 2.0, "max_cooldown": 1.0}, ValueError),
        ({"connect_timeout": 0}, ValueError),
        ({"prefix": ""}, ValueError),
        ({"prefix": "a{b"}, ValueError),
        ({"prefix": "a b"}, ValueError),
        ({"prefix": 3}, TypeError),
        ({"namespace": "acme*"}, ValueError),
        ({"namespace": "x" * 101}, ValueError),
        ({"max_connections": 4}, TypeError),  # not an option: the tier opens two
        ({"client": object()}, TypeError),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    """Wrong values and unknown options fail at construction with a clear error."""
    with pytest.raises(error):
        RedisTier("redis://127.0.0.1:1/0", **options)


def test_url_and_client_together_are_refused() -> None:
    """One of url and client, not both."""
    client = redis.asyncio.Redis()
    with pytest.raises(TypeError, match="not both"):
        RedisTier("redis://127.0.0.1:1/0", client=client)


def test_bad_url_is_refused_without_showing_its_password() -> None:
    """A URL redis-py cannot use is refused, and the message hides its password."""
    with pytest.raises(ValueError, match="not a Redis URL") as caught:
        RedisTier("http://user:hunter2@host:6379/0")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@localhost:6379/0",
        "redis://admin:hunter2@localhost:6379/0",
        "rediss://hunter2@localhost:6380/1",
        "redis://localhost:6379/0?password=hunter2",
    ],
)
def test_repr_never_shows_the_password(url: str) -> None:
    """The tier's repr names the server but never the password."""
    text = repr(RedisTier(url))
    assert "hunter2" not in text
    assert "localhost" in text


async def test_caller_client_is_borrowed_not_closed(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """A tier on the caller's client gives its connections back and leaves it open;
    aclose twice is fine."""
    client = redis.asyncio.Redis.from_url(srv.url, decode_responses=True, client_name="mine")
    try:
        tier: SharedTier = RedisTier(client=client)  # the protocol the client holds
        assert isinstance(tier, RedisTier)
        view = view_of(tier)
        await ready(tier)
        await view.put("g1", b"\xff\x00binary", not_found=False, ttl=60.0, grace=0.0)
        value = await view.get("g1")  # decode_responses does not reach the tier's reads
        assert value is not None
        assert value.body == b"\xff\x00binary"
        assert "client=" in repr(tier)
        await tier.aclose()
        await tier.aclose()
        assert not view.available
        with pytest.raises(SharedTierError):
            await view.get("g1")
        assert await client.ping() is True
        assert await client.set("still", "open") is True
    finally:
        await client.aclose()


async def test_aclose_closes_what_the_tier_opened(
    srv: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """Two connections per tier whatever the number of clients; none after aclose."""
    tier = RedisTier(srv.url)
    for key in (KEY, OTHER_KEY, "sk_test_third"):
        view_of(tier, key)
    await ready(tier)
    assert await tier_connections(raw) == 2
    await tier.aclose()
    await tier.aclose()
    assert await tier_connections(raw) == 0
    with pytest.raises(RuntimeError):
        view_of(tier)


async def test_cancelled_aclose_still_closes(srv: RedisServer, raw: redis.asyncio.Redis) -> None:
    """An aclose cancelled halfway (here while releasing a lease) finishes anyway."""
    tier = RedisTier(srv.url)
    view = view_of(tier)
    await ready(tier)
    lease = await view.claim("g1")
    assert not isinstance(lease, float)
    closing = asyncio.ensure_future(tier.aclose())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await tier.aclose()
    assert await tier_connections(raw) == 0
    assert await all_keys(raw) == []  # the lease was released


async def test_tier_attached_outside_a_loop_starts_with_its_first_operation(
    srv: RedisServer,
) -> None:
    """A view attached before the loop runs works once operations begin."""
    tier = RedisTier(srv.url)
    heard = Recorder()
    view = view_of(tier, on_invalidate=heard)  # in the loop here, but nothing sent yet
    try:
        async with open_tier(srv) as other:
            peer = view_of(other)
            await ready(tier)
            await ready(other)
            await peer.invalidate("g1")
            assert await heard.next() == "g1"
            assert await view.get("g1") is None
    finally:
        await tier.aclose()


def test_import_without_redis_names_the_extra() -> None:
    """Without redis-py, importing fanfare_async.redis says which extra to install, and
    fanfare_async itself still imports."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'redis' or name.startswith('redis.'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import fanfare_async\n"
        "try:\n"
        "    import fanfare_async.redis\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "fanfare-async[redis]"' in out.stdout


def test_shared_tier_error_is_a_fanfare_error() -> None:
    """SharedTierError is a FanfareError (the client counts it, users never see it)."""
    assert issubclass(SharedTierError, FanfareError)


# -- pure rules ---------------------------------------------------------------------------


def up(circuit: Circuit) -> bool:
    """circuit.available, read through a call (so mypy does not narrow it between reads)."""
    return circuit.available


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_circuit_cooldown_doubles_to_its_cap_and_one_probe_closes_it() -> None:
    """Closed until a failure; one probe after each cooldown, doubling up to the cap."""
    clock = FakeClock()
    circuit = Circuit(DEFAULT_COOLDOWN, DEFAULT_MAX_COOLDOWN, clock=clock)
    assert circuit.closed and up(circuit)
    circuit.failure(probe=False)
    circuit.failure(probe=False)  # a second operation of the same outage
    assert not up(circuit)
    waits = []
    for _ in range(6):
        waits.append(circuit.cooldown)
        clock.now += circuit.cooldown - 0.001
        assert not up(circuit)
        assert not circuit.try_probe()
        clock.now += 0.001
        assert up(circuit)
        assert circuit.try_probe()
        assert not up(circuit)  # one probe at a time
        assert not circuit.try_probe()
        circuit.failure(probe=True)
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert DEFAULT_MAX_COOLDOWN + DEFAULT_TIMEOUT < 5.0  # back within 5 s of Redis answering
    clock.now += circuit.cooldown
    assert circuit.try_probe()
    circuit.success(probe=True)
    assert circuit.closed
    assert circuit.cooldown == DEFAULT_COOLDOWN


def test_circuit_cancelled_probe_lets_the_next_operation_probe() -> None:
    """A probe cancelled before its answer does not keep the circuit shut."""
    clock = FakeClock()
    circuit = Circuit(0.5, 4.0, clock=clock)
    circuit.failure(probe=False)
    clock.now += 0.5
    assert circuit.try_probe()
    circuit.probe_aborted()
    assert circuit.try_probe()


def test_decode_value_uses_the_remaining_lifetime() -> None:
    """fresh_for = remaining - grace, stale_for = min(grace, remaining); no TTL is a miss."""
    raw = encode_value(b"[]", not_found=False, grace_ms=10_000)
    value = decode_value(b"25000:" + raw)
    assert value is not None
    assert (value.fresh_for, value.stale_for) == (15.0, 10.0)
    stale = decode_value(b"4000:" + raw)
    assert stale is not None
    assert (stale.fresh_for, stale.stale_for) == (-6.0, 4.0)
    for reply in [b"-1:" + raw, b"0:" + raw, b"25000:junk", b"junk", b":" + raw, None, 7]:
        assert decode_value(reply) is None


def test_namespace_is_a_stable_one_way_hash() -> None:
    """The namespace depends on URL and key, ignores a trailing slash, hides the key."""
    one = derive_namespace(BASE_URL, KEY)
    assert one == derive_namespace(BASE_URL + "/", KEY)
    assert one != derive_namespace(BASE_URL, OTHER_KEY)
    assert one != derive_namespace("https://other.example/api", KEY)
    assert len(one) == 32
    assert KEY not in one
    assert check_name("namespace", one, max_length=100) == one


def test_pack_is_the_redis_protocol() -> None:
    """Commands are arrays of bulk strings."""
    assert pack(b"GET", b"k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert pack(b"SET", b"", b"\x00\r\n") == b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$3\r\n\x00\r\n\r\n"
