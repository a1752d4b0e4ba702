"""The client behind a real nginx reverse proxy in front of the test double.

nginx is the OS package (``.ci/run`` installs it): these tests skip without it locally and
fail without it in CI. Every proxy writes its own config into a temp dir, listens on a free
127.0.0.1 port and logs each request's status, so the figures come from nginx itself.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager

import pytest
from yarl import URL

from fanfare_async import (
    Audience,
    FanfareClient,
    FanfareError,
    ServerError,
    decode_group_audiences,
)
from fanfare_async.testing import MockFanfareServer

from ._nginx import nginx_binary, nginx_proxy

pytestmark = pytest.mark.anyio

#: How many generated groups a bulk run fetches, and how many at a time.
GROUPS = 2000
CONCURRENCY = 32
#: The bare limiter of issue 13: limit_req at R requests/second, burst 50, 429 without
#: Retry-After or rate-limit headers, gzip on, client connections closed every 50 requests.
RATE = 200
BURST = 50
KEEPALIVE_REQUESTS = 50

Results = dict[str, list[Audience] | FanfareError]


@pytest.fixture(autouse=True)
def _fast_backoff() -> None:
    """Overrides conftest's: behind a real proxy the client backs off as a user's does."""


@pytest.fixture(autouse=True)
def _nginx_present() -> None:
    """Skip (locally) or fail (CI set) before any server starts when nginx is missing."""
    nginx_binary()


@asynccontextmanager
async def client_at(server: MockFanfareServer, base_url: str) -> AsyncIterator[FanfareClient]:
    """A client with the double's key at ``base_url``, without a client-side rate limit."""
    async with FanfareClient(server.secret_key, base_url=base_url, rate_limit=None) as client:
        yield client


def via(proxy_url: str, server: MockFanfareServer) -> str:
    """The client's base URL through the proxy: its origin, the double's base path."""
    return proxy_url + URL(server.url).path


async def direct_run(server: MockFanfareServer, ids: Sequence[str]) -> Results:
    """The bulk run straight against the double, checked against its own bytes."""
    async with client_at(server, server.url) as client:
        results = await client.get_many_group_audiences(ids, concurrency=CONCURRENCY)
    for group_id in ids:
        assert results[group_id] == decode_group_audiences(server.body_for(group_id)), group_id
    return results


def failures(results: Results) -> dict[str, FanfareError]:
    """The ids that got an error instead of their audiences."""
    return {gid: value for gid, value in results.items() if isinstance(value, FanfareError)}


def describe(failed: dict[str, FanfareError]) -> str:
    """A few failed ids and their errors, for an assertion message."""
    shown = "; ".join(
        f"{gid}: {type(exc).__name__}: {exc}" for gid, exc in list(failed.items())[:3]
    )
    return f"{len(failed)} id(s) failed, e.g. {shown}"


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses connections: bound (so no one else takes it), not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_bulk_run_through_gzip_and_keepalive_closes_matches_direct_run() -> None:
    """2,000 ids through nginx (gzip, connections closed every 50 requests) equal a direct run."""
    async with MockFanfareServer(groups=GROUPS) as server:
        ids = server.group_ids
        direct = await direct_run(server, ids)
        server.reset_stats()
        async with nginx_proxy(server.url, keepalive_requests=KEEPALIVE_REQUESTS) as proxy:
            async with client_at(server, via(proxy.url, server)) as client:
                proxied = await client.get_many_group_audiences(ids, concurrency=CONCURRENCY)
            await proxy.stop()
            entries = proxy.entries()

    failed = failures(proxied)
    assert not failed, describe(failed)
    assert list(proxied) == list(ids)
    assert proxied == direct
    assert server.total_requests == GROUPS  # each id once: no close cost a retry
    # nginx really compressed every answer and closed connections under the client.
    assert len(entries) == GROUPS
    assert all(entry.status == 200 and entry.gzipped for entry in entries)
    assert max(entry.connection_requests for entry in entries) == KEEPALIVE_REQUESTS
    assert len({entry.connection for entry in entries}) >= GROUPS // KEEPALIVE_REQUESTS


async def test_502_from_nginx_reads_bad_gateway_once(refused_port: int) -> None:
    """nginx's HTML 502 page (upstream down) reads as "502 Bad Gateway" once in the error."""
    async with (
        MockFanfareServer(groups=1) as server,
        nginx_proxy(f"http://127.0.0.1:{refused_port}") as proxy,
        FanfareClient(
            server.secret_key, base_url=via(proxy.url, server), rate_limit=None, max_retries=0
        ) as client,
    ):
        with pytest.raises(ServerError) as caught:
            await client.get_group_audiences(server.group_ids[0])
    assert caught.value.status_code == 502
    assert str(caught.value).count("502 Bad Gateway") == 1, str(caught.value)


async def test_bulk_run_behind_bare_429_limiter_answers_every_id(
    record_property: Callable[[str, object], None],
) -> None:
    """Behind limit_req (R=200/s, burst 50, bare 429s) 2,000 ids at 32 all answer, near R."""
    async with MockFanfareServer(groups=GROUPS) as server:
        ids = server.group_ids
        direct = await direct_run(server, ids)
        async with nginx_proxy(
            server.url, rate=RATE, burst=BURST, keepalive_requests=KEEPALIVE_REQUESTS
        ) as proxy:
            async with client_at(server, via(proxy.url, server)) as client:
                started = time.perf_counter()
                proxied = await client.get_many_group_audiences(ids, concurrency=CONCURRENCY)
                elapsed = time.perf_counter() - started
            await proxy.stop()
            statuses = proxy.statuses()

    failed = failures(proxied)
    requests = sum(statuses.values())
    rejected = statuses[429]
    throughput = GROUPS / elapsed
    figures = {
        "requests": requests,
        "rejected_429": rejected,
        "rejected_share": round(rejected / requests, 4),
        "seconds": round(elapsed, 2),
        "ids_per_second": round(throughput, 1),
        "fraction_of_R": round(throughput / RATE, 3),
        "failed_ids": len(failed),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(
        f"\nnginx limit_req R={RATE}/s burst={BURST} nodelay, concurrency {CONCURRENCY}: "
        f"{GROUPS} ids in {elapsed:.2f}s = {throughput:.1f} ids/s = {throughput / RATE:.2f} R; "
        f"{rejected} of {requests} requests answered 429 ({rejected / requests:.1%}); "
        f"{len(failed)} id(s) failed"
    )

    assert not failed, describe(failed)
    assert proxied == direct
    assert set(statuses) <= {200, 429}, statuses
    assert rejected <= requests / 4
    assert throughput >= 0.4 * RATE
