"""The test double itself (fanfare_async.testing), driven with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from yarl import URL

from fanfare_async import _fake_data
from fanfare_async.testing import Fault, MockFanfareServer, RecordedRequest

pytestmark = pytest.mark.anyio

UUID4_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
DATE_RE = re.compile(r"202[45]-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")
AUDIENCE_KEYS = {
    "archived", "createdAt", "createdBy", "id", "imports", "name", "organizationId", "rules",
    "type", "description", "groupId", "groupName", "groupType", "iconName", "lastRefreshedAt",
    "metadata", "primaryExternalId", "primaryLastSyncedAt", "primarySourceVendor",
    "primarySyncSource", "primarySyncSourceId", "refreshIntervalSeconds", "updatedAt",
    "updatedBy",
}  # fmt: skip
IMPORT_KEYS = {
    "archived", "audienceId", "createdAt", "createdBy", "errorCount", "id", "organizationId",
    "processedConsumers", "progress", "s3Key", "errors", "totalConsumers", "updatedAt",
    "updatedBy",
}  # fmt: skip
RULE_KEYS = {"audienceId", "field", "id", "organizationId", "values", "groupId", "position"}
SYNC_KEYS = {
    "archived", "createdAt", "createdBy", "id", "organizationId", "syncSource", "syncSourceId",
    "lastSyncedAt", "sourceData", "syncStatus", "updatedAt", "updatedBy",
}  # fmt: skip


class FakeClock:
    """A settable wall clock for the server."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def auth(server: MockFanfareServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.secret_key}"}


def group_url(server: MockFanfareServer, raw_segment: str) -> URL:
    """The URL of a group with ``raw_segment`` sent exactly as given (no re-encoding)."""
    return URL(f"{server.url}/audiences/groups/{raw_segment}", encoded=True)


async def fetch(
    session: aiohttp.ClientSession,
    server: MockFanfareServer,
    group_id: str,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    """GET one group (id sent verbatim) with the server's key; (status, body, headers)."""
    async with session.get(
        group_url(server, group_id), headers=auth(server) if headers is None else headers
    ) as resp:
        return resp.status, await resp.read(), resp.headers


# -- generated data -------------------------------------------------------------------------


async def test_same_seed_gives_same_bytes_other_seed_differs() -> None:
    """Two servers with one seed serve byte-identical groups; another seed serves others."""
    async with (
        MockFanfareServer(seed=7, groups=3) as a,
        MockFanfareServer(seed=7, groups=3) as b,
        MockFanfareServer(seed=8, groups=3) as c,
        aiohttp.ClientSession() as session,
    ):
        assert a.group_ids == b.group_ids
        assert a.group_ids != c.group_ids
        gid = a.group_ids[0]
        _, body_a, _ = await fetch(session, a, gid)
        _, body_b, _ = await fetch(session, b, gid)
        assert body_a == body_b == a.body_for(gid) == b.body_for(gid)
        assert _fake_data.encode_group(_fake_data.generate_group(8, gid)) != body_a


def test_same_bytes_across_processes() -> None:
    """Bodies do not depend on the process (no hash(), no clock): other hash seeds agree."""
    code = (
        "import hashlib\n"
        "from fanfare_async import _fake_data as f\n"
        "ids = f.group_ids(4, 3)\n"
        "data = b''.join(f.encode_group(f.generate_group(4, g)) for g in ids + ['x'])\n"
        "print(hashlib.sha256(data).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    ids = _fake_data.group_ids(4, 3)
    data = b"".join(_fake_data.encode_group(_fake_data.generate_group(4, g)) for g in [*ids, "x"])
    assert digests == {hashlib.sha256(data).hexdigest()}


def test_generated_audiences_have_every_field_of_the_schema() -> None:
    """Generated audiences carry exactly the page's camelCase fields with valid values."""
    seen_types: set[str] = set()
    seen_group_types: set[str | None] = set()
    for gid in _fake_data.group_ids(3, 40):
        group = _fake_data.generate_group(3, gid)
        assert len(group) == 8
        assert len({a["groupType"] for a in group}) == 1  # one group, one group type
        for aud in group:
            assert set(aud) == AUDIENCE_KEYS
            assert aud["groupId"] == gid
            assert aud["name"]
            assert isinstance(aud["archived"], bool)
            assert aud["type"] in ("DYNAMIC", "STATIC_LIST", "SYNCED_LIST")
            assert aud["groupType"] in ("SEGMENTED_VALUE", "RFM", None)
            assert aud["lastRefreshedAt"] is None
            assert UUID4_RE.fullmatch(aud["id"])
            assert UUID4_RE.fullmatch(aud["organizationId"])
            assert DATE_RE.fullmatch(aud["createdAt"])
            assert aud["updatedAt"] is None or DATE_RE.fullmatch(aud["updatedAt"])
            assert aud["metadata"] is None or isinstance(aud["metadata"], dict)
            if aud["type"] == "STATIC_LIST":
                assert aud["refreshIntervalSeconds"] is None
            else:
                assert aud["refreshIntervalSeconds"] in (300, 600, 900, 1800, 3600, 900.5)
            if aud["type"] == "SYNCED_LIST":
                assert set(aud["primarySyncSource"]) == SYNC_KEYS
                assert aud["primarySyncSourceId"] == aud["primarySyncSource"]["id"]
            else:
                assert aud["primarySyncSource"] is None
            for imp in aud["imports"]:
                assert set(imp) == IMPORT_KEYS
                assert imp["audienceId"] == aud["id"]
                for err in imp["errors"]:
                    assert set(err) == {"issues", "row"}
            assert aud["rules"]
            for pos, rule in enumerate(aud["rules"]):
                assert set(rule) == RULE_KEYS
                assert rule["position"] == pos
            seen_types.add(aud["type"])
            seen_group_types.add(aud["groupType"])
    assert seen_types == {"DYNAMIC", "STATIC_LIST", "SYNCED_LIST"}
    assert seen_group_types == {"SEGMENTED_VALUE", "RFM", None}


def test_generated_data_is_pure_and_id_dependent() -> None:
    """Same (seed, id) gives equal data; groupId is null for a non-UUID id."""
    assert _fake_data.generate_group(1, "g") == _fake_data.generate_group(1, "g")
    assert _fake_data.generate_group(1, "g") != _fake_data.generate_group(1, "h")
    assert all(a["groupId"] is None for a in _fake_data.generate_group(1, "aud_01HXYZ123456789"))
    assert _fake_data.generate_group(1, "g", audiences=0) == []


def test_group_ids_are_many_distinct_uuid4s() -> None:
    """group_ids yields count distinct lower-case UUID4 strings, cheaply even for 200 000."""
    start = time.perf_counter()
    ids = _fake_data.group_ids(5, 200_000)
    elapsed = time.perf_counter() - start
    assert len(ids) == len(set(ids)) == 200_000
    assert all(UUID4_RE.fullmatch(i) for i in ids[:1000])
    assert ids[:10] == _fake_data.group_ids(5, 10)
    assert elapsed < 3.0


async def test_body_sizes() -> None:
    """An 8-audience group is 18-28 KB and a 100-audience group 230-350 KB on the wire."""
    async with (
        MockFanfareServer(groups=2) as small,
        MockFanfareServer(groups=2, audiences_per_group=100) as big,
        aiohttp.ClientSession() as session,
    ):
        for gid in small.group_ids:
            _, body, _ = await fetch(session, small, gid)
            assert 18_000 <= len(body) <= 28_000
        _, body, _ = await fetch(session, big, big.group_ids[0])
        assert 230_000 <= len(body) <= 350_000
        assert len(json.loads(body)) == 100


# -- auth, routing, recording ---------------------------------------------------------------


async def test_auth_errors() -> None:
    """No Authorization gives 'Authentication required', a wrong key 'Secret key required'."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        status, body, headers = await fetch(session, server, gid, headers={})
        assert (status, json.loads(body)) == (401, {"error": "Authentication required"})
        assert headers["Content-Type"] == "application/json"
        status, body, _ = await fetch(
            session, server, gid, headers={"Authorization": "Bearer sk_test_wrong"}
        )
        assert (status, json.loads(body)) == (401, {"error": "Secret key required"})
        status, _, _ = await fetch(session, server, gid)
        assert status == 200
        assert [r.authorized for r in server.requests] == [False, False, True]
        assert [r.status for r in server.requests] == [401, 401, 200]
        assert server.requests[1].headers["authorization"] == "<redacted>"
        assert "sk_test_wrong" not in repr(server.requests)


async def test_unknown_group_is_404() -> None:
    """An unknown group is a 404 with the GROUP_NOT_FOUND body."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        status, body, headers = await fetch(session, server, "nope")
        assert status == 404
        assert json.loads(body) == {
            "error": "not_found",
            "message": "Audience group nope not found",
            "code": "GROUP_NOT_FOUND",
            "details": {},
        }
        assert headers["x-request-id"] == "req_1"


async def test_encoded_ids_and_routing() -> None:
    """Raw paths are recorded verbatim, one segment is decoded, other paths are 404/None."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        status, _, _ = await fetch(session, server, "a%2Fb%3Fc%23d?x=1")
        assert status == 404
        rec = server.requests[-1]
        assert rec.raw_path == "/api/audiences/groups/a%2Fb%3Fc%23d?x=1"
        assert (rec.group_id, rec.query_string) == ("a/b?c#d", "x=1")
        assert server.request_count("a/b?c#d") == 1

        status, body, _ = await fetch(session, server, "%2E%2E")
        assert (status, json.loads(body)["code"]) == (404, "GROUP_NOT_FOUND")
        assert server.requests[-1].raw_path == "/api/audiences/groups/%2E%2E"
        assert server.requests[-1].group_id == ".."

        for raw in ("a/b", "..", "", server.group_ids[0] + "/extra"):
            status, body, _ = await fetch(session, server, raw)
            assert (status, json.loads(body)["code"]) == (404, "ROUTE_NOT_FOUND"), raw
            assert server.requests[-1].group_id is None

        upper = server.group_ids[0].upper()
        status, body, _ = await fetch(session, server, upper)
        assert (status, body) == (200, server.body_for(server.group_ids[0]))
        assert server.request_count(upper) == 1


async def test_non_get_is_405() -> None:
    """Other methods on the route answer 405 with Allow: GET."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        url = group_url(server, server.group_ids[0])
        async with session.post(url, headers=auth(server)) as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET"
            assert (await resp.json())["code"] == "METHOD_NOT_ALLOWED"


async def test_recorded_request_fields() -> None:
    """A RecordedRequest carries method, path, id, query, auth, status, clock time, headers."""
    clock = FakeClock(1234.5)
    async with (
        MockFanfareServer(groups=1, clock=clock) as server,
        aiohttp.ClientSession() as session,
    ):
        gid = server.group_ids[0]
        await fetch(session, server, gid, headers={**auth(server), "X-Trace": "t1"})
        (rec,) = server.requests
        assert isinstance(rec, RecordedRequest)
        assert (rec.method, rec.group_id, rec.query_string) == ("GET", gid, "")
        assert (rec.authorized, rec.status, rec.time) == (True, 200, 1234.5)
        assert rec.headers["x-trace"] == "t1"
        assert rec.headers["Authorization"] == "<redacted>"


# -- faults ---------------------------------------------------------------------------------


async def test_injected_statuses_in_order_then_normal() -> None:
    """Injected faults are consumed one per request, in order, then normal answers resume."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        server.inject(500, 503, Fault.error(429, retry_after=2))
        seen = []
        for _ in range(4):
            status, body, _ = await fetch(session, server, gid)
            seen.append(status)
        assert seen == [500, 503, 429, 200]
        assert body == server.body_for(gid)
        assert server.request_count(gid) == 4
        assert [r.status for r in server.requests] == [500, 503, 429, 200]


async def test_default_error_bodies() -> None:
    """Each status gets its documented Fanfare error shape (502/504 as proxy HTML)."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        statuses = [400, 403, 409, 413, 422, 423, 429, 500, 502, 503, 504]
        server.inject(*statuses)
        results: dict[int, tuple[str, Any]] = {}
        for expected in statuses:
            status, body, headers = await fetch(session, server, gid)
            assert status == expected
            ctype = headers["Content-Type"]
            results[status] = (ctype, json.loads(body) if ctype == "application/json" else body)
        assert results[400][1]["issues"][0]["path"] == ["groupId"]
        assert results[422][1]["error"] == "validation_error"
        assert results[403][1] == {
            "error": "forbidden",
            "message": "Insufficient permissions",
            "code": "FORBIDDEN",
            "details": {},
        }
        assert results[409][1]["details"][0]["field"] == "groupId"
        assert results[413][1]["code"] == "PAYLOAD_TOO_LARGE"
        assert results[429][1] == {"error": "Rate limit exceeded"}
        assert results[500][1]["code"] == results[503][1]["code"] == "INTERNAL"
        assert results[502] == ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>")
        assert results[504][0] == "text/html"


async def test_error_fault_with_custom_body_and_headers() -> None:
    """Fault.error sends a given body verbatim and Retry-After as given."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        server.inject(
            Fault.error(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", body=b"down"),
            Fault.error(429, retry_after=1.5, headers={"X-Extra": "1"}),
        )
        status, body, headers = await fetch(session, server, gid)
        assert (status, body, headers["Content-Type"]) == (503, b"down", "text/plain")
        assert headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
        status, body, headers = await fetch(session, server, gid)
        assert (status, headers["Retry-After"], headers["X-Extra"]) == (429, "1.5", "1")
        assert json.loads(body)["retryAfter"] == 1.5


async def test_group_scoped_injection() -> None:
    """A fault injected for one group is only consumed by that group's requests."""
    async with MockFanfareServer(groups=2) as server, aiohttp.ClientSession() as session:
        a, b = server.group_ids
        server.inject(503, group_id=b.upper())
        assert (await fetch(session, server, a))[0] == 200
        assert (await fetch(session, server, b))[0] == 503
        assert (await fetch(session, server, b))[0] == 200


async def test_truncated_body_then_healthy() -> None:
    """Fault.truncated cuts the body short (ClientPayloadError) and the server stays healthy."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        server.inject(Fault.truncated())
        async with session.get(group_url(server, gid), headers=auth(server)) as resp:
            assert resp.status == 200
            assert resp.content_length == len(server.body_for(gid))
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        assert (await fetch(session, server, gid))[0] == 200
        assert [r.status for r in server.requests] == [200, 200]


async def test_drop_closes_without_response() -> None:
    """Fault.drop closes the connection; aiohttp retries a GET once, so two drops fail it."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        server.inject(Fault.drop(), Fault.drop())
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await fetch(session, server, gid)
        assert server.request_count(gid) == 2
        assert [r.status for r in server.requests] == [0, 0]
        # A single drop is retried transparently by aiohttp itself.
        server.inject(Fault.drop())
        assert (await fetch(session, server, gid))[0] == 200
        assert server.request_count(gid) == 4


async def test_malformed_and_wrong_shape() -> None:
    """Fault.malformed is invalid JSON and Fault.wrong_shape valid JSON that is not an array."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        server.inject(Fault.malformed(), Fault.wrong_shape())
        status, body, headers = await fetch(session, server, gid)
        assert (status, headers["Content-Type"]) == (200, "application/json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        status, body, _ = await fetch(session, server, gid)
        assert (status, json.loads(body)) == (200, {"not": "an array"})


async def test_huge_body() -> None:
    """Fault.huge sends exactly size bytes of valid JSON with a matching Content-Length."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        server.inject(Fault.huge(3_000_000))
        status, body, headers = await fetch(session, server, server.group_ids[0])
        assert (status, len(body), headers["Content-Length"]) == (200, 3_000_000, "3000000")
        assert json.loads(body) == []


async def test_redirect() -> None:
    """Fault.redirect answers the status with a Location header."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        server.inject(Fault.redirect("https://elsewhere.example/x", status=307))
        url = group_url(server, server.group_ids[0])
        async with session.get(url, headers=auth(server), allow_redirects=False) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == "https://elsewhere.example/x"


async def test_slow_body_arrives_complete_in_pieces() -> None:
    """Fault.slow streams the real body in chunks, delay apart, and it arrives whole."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        server.inject(Fault.slow(0.02, chunks=4))
        start = time.monotonic()
        async with session.get(group_url(server, gid), headers=auth(server)) as resp:
            pieces = [piece async for piece in resp.content.iter_any()]
        assert time.monotonic() - start >= 3 * 0.02
        assert b"".join(pieces) == server.body_for(gid)
        assert len(pieces) >= 2


async def test_delay_fault_and_latency() -> None:
    """Fault.delayed and the latency knob hold the normal answer back."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        server.inject(Fault.delayed(0.05))
        start = time.monotonic()
        status, body, _ = await fetch(session, server, gid)
        assert (status, body) == (200, server.body_for(gid))
        assert time.monotonic() - start >= 0.05
        server.latency = 0.05
        start = time.monotonic()
        assert (await fetch(session, server, gid))[0] == 200
        assert time.monotonic() - start >= 0.05


def test_fault_constructors() -> None:
    """Fault constructors set kind/status/fields."""
    assert Fault() == Fault.error(503)
    assert Fault.delayed(0.5).delay == 0.5
    assert Fault.delayed(0.5).kind == "delay"
    assert Fault.slow(0.1, chunks=3).chunks == 3
    assert Fault.drop().status == 0
    assert Fault.error(429, retry_after=3).headers == {"Retry-After": "3"}
    assert hash(Fault.truncated()) == hash(Fault.truncated())
    with pytest.raises(ValueError, match="kind"):
        Fault(kind="nope")
    with pytest.raises(ValueError, match="size"):
        Fault.huge(1)


async def test_fault_rate_is_deterministic() -> None:
    """Random faults follow fault_seed: same seed, same sequence; another seed, another one."""

    async def statuses(fault_seed: int) -> list[int]:
        async with (
            MockFanfareServer(
                groups=1, fault_rate=0.5, fault_kinds=(Fault.error(503), 500), fault_seed=fault_seed
            ) as server,
            aiohttp.ClientSession() as session,
        ):
            return [(await fetch(session, server, server.group_ids[0]))[0] for _ in range(24)]

    first = await statuses(11)
    assert first == await statuses(11)
    assert set(first) == {200, 500, 503}
    assert first != await statuses(12)


# -- headers, rate limit --------------------------------------------------------------------


async def test_date_header_modes() -> None:
    """date_header True follows the clock, False removes it, a str is sent verbatim."""
    clock = FakeClock(1_600_000_000.0)
    async with aiohttp.ClientSession() as session:
        async with MockFanfareServer(groups=1, clock=clock) as server:
            _, _, headers = await fetch(session, server, server.group_ids[0])
            assert headers["Date"] == formatdate(1_600_000_000.0, usegmt=True)
            _, _, headers = await fetch(session, server, "unknown", headers={})
            assert headers["Date"] == "Sun, 13 Sep 2020 12:26:40 GMT"
        async with MockFanfareServer(groups=1, date_header=False) as server:
            _, _, headers = await fetch(session, server, server.group_ids[0])
            assert "Date" not in headers
        async with MockFanfareServer(groups=1, date_header="not a date") as server:
            _, _, headers = await fetch(session, server, server.group_ids[0])
            assert headers.getall("Date") == ["not a date"]


async def test_rate_limit_headers_and_429() -> None:
    """Remaining counts down, then 429 + Retry-After without consuming; a new window resets."""
    clock = FakeClock(1000.25)
    async with (
        MockFanfareServer(groups=1, rate_limit=3, rate_period=10.0, clock=clock) as server,
        aiohttp.ClientSession() as session,
    ):
        gid = server.group_ids[0]
        remaining = []
        for _ in range(3):
            status, _, headers = await fetch(session, server, gid)
            assert status == 200
            assert headers["X-RateLimit-Limit"] == "3"
            assert headers["X-RateLimit-Reset"] == "1010.250"
            remaining.append(headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        clock.now = 1003.0
        for _ in range(2):
            status, body, headers = await fetch(session, server, gid)
            assert status == 429
            assert headers["Retry-After"] == "8"  # ceil(1010.25 - 1003)
            assert headers["X-RateLimit-Remaining"] == "0"
            assert json.loads(body) == {"error": "Rate limit exceeded", "retryAfter": 8}
        assert server.rate_limited == 2
        clock.now = 1010.25  # next window, full again
        status, _, headers = await fetch(session, server, gid)
        assert (status, headers["X-RateLimit-Remaining"]) == (200, "2")
        assert headers["X-RateLimit-Reset"] == "1020.250"
        # 401s and 404s are answered under the limit too, with the headers.
        status, _, headers = await fetch(session, server, "nope", headers={})
        assert (status, headers["X-RateLimit-Remaining"]) == (401, "1")
        assert server.request_count(gid) == 6


async def test_rate_limit_http_date_retry_after() -> None:
    """retry_after_format='http-date' sends Retry-After as an HTTP date at least reset away."""
    clock = FakeClock(2000.0)
    async with (
        MockFanfareServer(
            groups=1, rate_limit=1, rate_period=0.5, clock=clock, retry_after_format="http-date"
        ) as server,
        aiohttp.ClientSession() as session,
    ):
        gid = server.group_ids[0]
        assert (await fetch(session, server, gid))[0] == 200
        clock.now = 2000.1
        status, body, headers = await fetch(session, server, gid)
        assert status == 429
        assert headers["X-RateLimit-Reset"] == "2000.500"
        retry_at = parsedate_to_datetime(headers["Retry-After"]).timestamp()
        assert retry_at == math.ceil(2000.1 + 1)  # at least 1 s
        assert json.loads(body)["retryAfter"] == 1


# -- concurrency, stats, lifecycle ----------------------------------------------------------


async def test_pause_resume_in_flight_and_wait_for_requests() -> None:
    """Paused requests are counted and held; max_in_flight sees them all at once."""
    async with (
        MockFanfareServer(groups=5) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=10)) as session,
    ):
        server.pause()
        tasks = [asyncio.ensure_future(fetch(session, server, g)) for g in server.group_ids]
        await server.wait_for_requests(5)
        assert server.in_flight == 5
        assert server.total_requests == 5
        assert all(r.status == 0 for r in server.requests)
        assert not any(t.done() for t in tasks)
        server.resume()
        results = await asyncio.gather(*tasks)
        assert [status for status, _, _ in results] == [200] * 5
        assert (server.in_flight, server.max_in_flight) == (0, 5)


async def test_wait_for_requests_times_out() -> None:
    """wait_for_requests raises TimeoutError when too few requests arrive."""
    async with MockFanfareServer(groups=1) as server:
        await server.wait_for_requests(0)
        with pytest.raises(TimeoutError):
            await server.wait_for_requests(1, timeout=0.05)


async def test_counts_and_reset_stats() -> None:
    """Per-group counts, totals and records accumulate, and reset_stats zeroes them."""
    async with MockFanfareServer(groups=2) as server, aiohttp.ClientSession() as session:
        a, b = server.group_ids
        server.inject(503)
        for gid in (a, a, b):
            await fetch(session, server, gid)
        assert (server.request_count(a), server.request_count(b)) == (2, 1)
        assert server.total_requests == len(server.requests) == 3
        assert server.max_in_flight == 1
        server.reset_stats()
        assert (server.total_requests, server.requests, server.max_in_flight) == (0, [], 0)
        assert server.request_count(a) == 0
        assert server.rate_limited == 0
        await fetch(session, server, b)
        assert server.request_counts == {b: 1}


async def test_set_and_remove_group() -> None:
    """set_group serves a list encoded or bytes verbatim; remove_group makes a group 404."""
    async with MockFanfareServer(groups=1) as server, aiohttp.ClientSession() as session:
        gid = server.group_ids[0]
        server.set_group("custom", [{"id": "x"}])
        assert (await fetch(session, server, "custom"))[:2] == (200, b'[{"id":"x"}]')
        server.set_group(gid.upper(), b"[ ]")
        assert (await fetch(session, server, gid))[:2] == (200, b"[ ]")
        server.remove_group(gid)
        assert (await fetch(session, server, gid))[0] == 404
        with pytest.raises(KeyError):
            server.body_for(gid)
        server.remove_group("custom")
        assert (await fetch(session, server, "custom"))[0] == 404


def test_generated_bodies_are_cached_with_a_bound() -> None:
    """Bodies are generated lazily and kept in a bounded LRU, never all in memory."""
    server = MockFanfareServer(groups=3000, audiences_per_group=0)
    for gid in server.group_ids:
        assert server.body_for(gid) == b"[]"
    assert len(server._lru) <= 2048


async def test_lifecycle() -> None:
    """url needs a running server; close is idempotent and final."""
    server = MockFanfareServer(groups=0, port=0)
    with pytest.raises(RuntimeError):
        _ = server.url
    await server.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api", server.url)
    assert server.url.rsplit(":", 1)[1] != "0/api"
    server.pause()  # a paused server still closes promptly
    await server.close()
    await server.close()
    with pytest.raises(RuntimeError):
        await server.start()


async def test_close_with_a_request_held() -> None:
    """Closing while a request is paused releases it and leaves nothing behind."""
    server = await MockFanfareServer(groups=1).start()
    async with aiohttp.ClientSession() as session:
        server.pause()
        task = asyncio.ensure_future(fetch(session, server, server.group_ids[0]))
        await server.wait_for_requests(1)
        await server.close()
        status, _, _ = await task
        assert status == 200
    assert server.in_flight == 0


async def test_custom_base_path() -> None:
    """base_path sets where the route lives."""
    async with (
        MockFanfareServer(groups=1, base_path="/v2/") as server,
        aiohttp.ClientSession() as session,
    ):
        assert server.url.endswith("/v2")
        assert (await fetch(session, server, server.group_ids[0]))[0] == 200


async def test_close_cuts_simulated_slowness_short() -> None:
    """Closing during a slow body finishes it at once instead of waiting out the delays."""
    server = await MockFanfareServer(groups=1).start()
    gid = server.group_ids[0]
    async with aiohttp.ClientSession() as session:
        server.inject(Fault.slow(30.0, chunks=3))
        async with session.get(group_url(server, gid), headers=auth(server)) as resp:
            first = await resp.content.readany()
            await server.close()
            rest = await resp.read()
        assert first + rest == server.body_for(gid)


async def test_record_requests_off() -> None:
    """record_requests=False keeps no RecordedRequest but still counts."""
    async with (
        MockFanfareServer(groups=1, record_requests=False) as server,
        aiohttp.ClientSession() as session,
    ):
        await fetch(session, server, server.group_ids[0])
        assert server.requests == []
        assert (server.total_requests, server.request_count(server.group_ids[0])) == (1, 1)
