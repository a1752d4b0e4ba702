"""FanfareClient over real HTTP against the test double: lookups, errors, retries, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from email.utils import formatdate
from functools import partial
from pathlib import Path

import aiohttp
import anyio
import pytest

from fanfare_async import (
    APIError,
    Audience,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FanfareClient,
    FanfareClientClosedError,
    FanfareConfigError,
    FanfareDecodeError,
    FanfareError,
    FanfareTimeoutError,
    InvalidGroupIdError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    decode_group_audiences,
)
from fanfare_async._api_errors import api_error_text
from fanfare_async.testing import Fault, MockFanfareServer

from .helpers import STATUS_CLASSES, client_for

pytestmark = pytest.mark.anyio

EXAMPLE = (Path(__file__).parent / "data" / "endpoint_example.json").read_bytes()


async def test_lookup_returns_decoded_audiences(server: MockFanfareServer) -> None:
    """A known group decodes to exactly what the server sent."""
    group = server.group_ids[0]
    async with client_for(server) as client:
        audiences = await client.get_group_audiences(group)
    assert audiences == decode_group_audiences(server.body_for(group))
    assert audiences
    assert all(isinstance(a, Audience) for a in audiences)
    [request] = server.requests
    assert request.raw_path == f"/api/audiences/groups/{group}"
    assert request.authorized
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Authorization"] == "<redacted>"


async def test_page_example_served_and_decoded(server: MockFanfareServer) -> None:
    """The endpoint page's example body, served verbatim, decodes with type None."""
    server.set_group("example", EXAMPLE)
    async with client_for(server) as client:
        [audience] = await client.get_group_audiences("example")
    assert audience.type is None
    assert audience.name == "<string>"


async def test_uuid_object_and_upper_case_go_out_canonical(server: MockFanfareServer) -> None:
    """UUID ids are sent lower-case, whatever spelling the caller used."""
    group = server.group_ids[1]
    async with client_for(server) as client:
        await client.get_group_audiences(uuid.UUID(group), use_cache=False)
        await client.get_group_audiences(group.upper(), use_cache=False)
    assert [r.raw_path for r in server.requests] == [f"/api/audiences/groups/{group}"] * 2


@pytest.mark.parametrize(
    ("status", "cls"),
    STATUS_CLASSES,
)
async def test_each_status_raises_its_exception(
    server: MockFanfareServer, status: int, cls: type[APIError]
) -> None:
    """Every documented status becomes its class, with the response's details."""
    server.inject(status)
    async with client_for(server, max_retries=0) as client:
        with pytest.raises(cls) as info:
            await client.get_group_audiences(server.group_ids[0])
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.method == "GET"
    assert err.url.endswith(f"/audiences/groups/{server.group_ids[0]}")
    assert err.request_id is not None
    assert err.request_id.startswith("req_")
    assert api_error_text(err)
    assert str(status) in str(err)
    assert server.request_count(server.group_ids[0]) == 1


async def test_unknown_group_is_not_found_with_code(server: MockFanfareServer) -> None:
    """A real 404 from the double carries its code and readable message."""
    async with client_for(server) as client:
        with pytest.raises(NotFoundError) as info:
            await client.get_group_audiences("aud_missing")
    assert info.value.code == "GROUP_NOT_FOUND"
    assert "aud_missing" in (info.value.message or "")
    assert server.request_count("aud_missing") == 1


async def test_wrong_key_is_authentication_error(server: MockFanfareServer) -> None:
    """A rejected key raises AuthenticationError and is not retried."""
    async with FanfareClient(
        "sk_test_wrongwrongwrong1234", base_url=server.url, rate_limit=None
    ) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_group_audiences(server.group_ids[0])
    assert info.value.error == "Secret key required"
    assert info.value.message is None
    assert "Secret key required" in str(info.value)
    assert server.total_requests == 1


async def test_transient_statuses_are_retried_then_succeed(server: MockFanfareServer) -> None:
    """408, 429, 5xx are retried; the answer after them is returned."""
    group = server.group_ids[0]
    server.inject(503, 502, Fault.error(429, retry_after=0), 408, group_id=group)
    async with client_for(server, max_retries=4) as client:
        audiences = await client.get_group_audiences(group)
    assert audiences == decode_group_audiences(server.body_for(group))
    assert server.request_count(group) == 5


async def test_retries_are_bounded(server: MockFanfareServer) -> None:
    """After max_retries the last error is raised: 1 + max_retries requests in all."""
    server.inject(*[500] * 10)
    async with client_for(server, max_retries=2) as client:
        with pytest.raises(ServerError):
            await client.get_group_audiences(server.group_ids[0])
    assert server.total_requests == 3


async def test_non_transient_errors_are_not_retried(server: MockFanfareServer) -> None:
    """400, 403, 404, 409 fail at once."""
    server.inject(400, 403, 409)
    async with client_for(server, max_retries=3) as client:
        for cls in (BadRequestError, PermissionDeniedError, ConflictError):
            with pytest.raises(cls):
                await client.get_group_audiences(server.group_ids[0], use_cache=False)
    assert server.total_requests == 3


async def test_connection_drops_and_truncation_are_retried(server: MockFanfareServer) -> None:
    """A dropped connection and a body cut short are transport errors, retried."""
    group = server.group_ids[2]
    server.inject(Fault.drop(), Fault.truncated(), group_id=group)
    async with client_for(server, max_retries=2) as client:
        audiences = await client.get_group_audiences(group)
    assert audiences == decode_group_audiences(server.body_for(group))
    assert server.request_count(group) == 3


async def test_truncated_body_is_a_transport_error_not_decode(server: MockFanfareServer) -> None:
    """With no retries left, a cut-short body surfaces as TransportError."""
    server.inject(Fault.truncated())
    async with client_for(server, max_retries=0) as client:
        with pytest.raises(TransportError) as info:
            await client.get_group_audiences(server.group_ids[0])
    assert not isinstance(info.value, FanfareDecodeError)
    assert "cut short" in str(info.value)


async def test_retry_after_seconds_is_honoured(server: MockFanfareServer) -> None:
    """A 429 with Retry-After: 0.3 delays the retry by at least that long."""
    group = server.group_ids[0]
    server.inject(Fault.error(429, retry_after=0.3), group_id=group)
    async with client_for(server) as client:
        await client.get_group_audiences(group)
    first, second = server.requests
    assert second.time - first.time >= 0.29


async def test_retry_after_http_date_is_honoured(server: MockFanfareServer) -> None:
    """Retry-After as an HTTP date delays the retry until that date."""
    group = server.group_ids[0]
    when = time.time() + 1.0
    server.inject(Fault.error(503, retry_after=formatdate(when, usegmt=True)), group_id=group)
    async with client_for(server) as client:
        await client.get_group_audiences(group)
    _, second = server.requests
    assert second.time >= int(when) - 0.01


async def test_retry_after_longer_than_cap_fails_fast(server: MockFanfareServer) -> None:
    """A wait above max_retry_wait raises RateLimitError with retry_after, no retry."""
    server.inject(Fault.error(429, retry_after=120))
    async with client_for(server, max_retry_wait=5) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_group_audiences(server.group_ids[0])
    assert info.value.retry_after == 120
    assert server.total_requests == 1


async def test_503_with_long_retry_after_fails_fast_as_rate_limit(
    server: MockFanfareServer,
) -> None:
    """Any status whose Retry-After exceeds the cap fails fast as RateLimitError."""
    server.inject(Fault.error(503, retry_after=600))
    async with client_for(server, max_retry_wait=1) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_group_audiences(server.group_ids[0])
    assert info.value.status_code == 503
    assert info.value.retry_after == 600
    assert server.total_requests == 1


async def test_redirects_are_not_followed(server: MockFanfareServer) -> None:
    """A 3xx is an APIError; the Location is never requested."""
    server.inject(Fault.redirect(f"{server.url}/audiences/groups/{server.group_ids[1]}"))
    async with client_for(server) as client:
        with pytest.raises(APIError) as info:
            await client.get_group_audiences(server.group_ids[0])
    assert info.value.status_code == 302
    assert server.total_requests == 1


async def test_malformed_and_wrong_shape_bodies(server: MockFanfareServer) -> None:
    """Invalid JSON and a non-array body raise FanfareDecodeError, not retried."""
    server.inject(Fault.malformed(), Fault.wrong_shape())
    async with client_for(server) as client:
        with pytest.raises(FanfareDecodeError, match="not valid JSON"):
            await client.get_group_audiences(server.group_ids[0])
        with pytest.raises(FanfareDecodeError) as info:
            await client.get_group_audiences(server.group_ids[0])
    assert info.value.path == "$"
    assert "/audiences/groups/" in str(info.value)
    assert server.total_requests == 2


async def test_body_over_the_limit_is_refused_not_retried(server: MockFanfareServer) -> None:
    """A body above max_response_bytes raises a FanfareError and is not retried."""
    server.inject(Fault.huge(200_000))
    async with client_for(server, max_response_bytes=100_000) as client:
        with pytest.raises(FanfareError, match="max_response_bytes"):
            await client.get_group_audiences(server.group_ids[0])
    assert server.total_requests == 1


async def test_slow_server_times_out(server: MockFanfareServer) -> None:
    """No answer within the timeout: FanfareTimeoutError, also a builtin TimeoutError."""
    server.inject(Fault.delayed(5.0))
    async with client_for(server, timeout=0.2, max_retries=0) as client:
        with pytest.raises(FanfareTimeoutError) as info:
            await client.get_group_audiences(server.group_ids[0])
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, TransportError)


async def test_slow_body_times_out(server: MockFanfareServer) -> None:
    """A body dribbled slower than the timeout allows also times out."""
    server.inject(Fault.slow(0.1, chunks=20))
    async with client_for(server, timeout=0.3, max_retries=0) as client:
        with pytest.raises(FanfareTimeoutError):
            await client.get_group_audiences(server.group_ids[0])


async def test_slow_body_within_timeout_arrives_whole(server: MockFanfareServer) -> None:
    """A chunked, slow body that fits the timeout decodes completely."""
    group = server.group_ids[3]
    server.inject(Fault.slow(0.01, chunks=5), group_id=group)
    async with client_for(server, timeout=5) as client:
        audiences = await client.get_group_audiences(group)
    assert audiences == decode_group_audiences(server.body_for(group))


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_transport_error() -> None:
    """Nothing listening: TransportError after the retries."""
    url = f"http://127.0.0.1:{free_port()}/api"
    async with FanfareClient("sk_test_x", base_url=url, max_retries=1, rate_limit=None) as client:
        with pytest.raises(TransportError, match="cannot connect"):
            await client.get_group_audiences("g")


@pytest.mark.parametrize(
    ("group_id", "raw_path_suffix"),
    [
        ("../x", "..%2Fx"),
        ("a/b", "a%2Fb"),
        ("?q", "%3Fq"),
        ("#f", "%23f"),
        ("%2e%2e", "%252e%252e"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("Grüße", "Gr%C3%BC%C3%9Fe"),
        ("a b", "a%20b"),
        ("x" * 256, "x" * 256),
    ],
)
async def test_hostile_ids_stay_one_path_segment(
    server: MockFanfareServer, group_id: str, raw_path_suffix: str
) -> None:
    """The server sees exactly one encoded segment, no query, and decodes the id back."""
    async with client_for(server) as client:
        with pytest.raises(NotFoundError):
            await client.get_group_audiences(group_id)
    [request] = server.requests
    assert request.raw_path == f"/api/audiences/groups/{raw_path_suffix}"
    assert request.query_string == ""
    assert request.group_id == group_id


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "tab\there", "\x85", "y" * 257])
async def test_invalid_ids_fail_before_any_io(server: MockFanfareServer, bad: str) -> None:
    """Invalid ids raise InvalidGroupIdError and send nothing."""
    async with client_for(server) as client:
        with pytest.raises(InvalidGroupIdError):
            await client.get_group_audiences(bad)
    assert server.total_requests == 0


async def test_wrong_type_is_type_error(server: MockFanfareServer) -> None:
    """Non-str, non-UUID ids raise TypeError, also for unhashable values."""
    async with client_for(server) as client:
        for bad in (123, None, b"abc", ["a"], {"a": 1}):
            with pytest.raises(TypeError):
                await client.get_group_audiences(bad)  # type: ignore[arg-type]
    assert server.total_requests == 0


# -- secrets ------------------------------------------------------------------

SECRET = "sk_live_0123456789abcdefSECRETabcd"


async def test_secret_never_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The key shows only as a hint in repr, and never in exceptions or DEBUG logs."""
    caplog.set_level(logging.DEBUG)
    errors: list[FanfareError] = []
    async with MockFanfareServer(secret_key=SECRET, groups=3) as server:
        client = FanfareClient(SECRET, base_url=server.url, rate_limit=None, max_retries=1)
        assert SECRET not in repr(client)
        assert "sk_live_…abcd" in repr(client)
        # aiohttp itself retries a dropped keep-alive connection once: four drops
        # cover both attempts of max_retries=1.
        server.inject(503, 503, 400, Fault.malformed(), *[Fault.drop()] * 4)
        async with client:
            for _ in range(4):
                try:
                    await client.get_group_audiences(server.group_ids[0], use_cache=False)
                except FanfareError as exc:
                    errors.append(exc)
        async with FanfareClient(
            "sk_live_WRONGWRONGWRONG9999", base_url=server.url, rate_limit=None
        ) as wrong:
            try:
                await wrong.get_group_audiences(server.group_ids[0])
            except FanfareError as exc:
                errors.append(exc)
    assert [type(e) for e in errors] == [
        ServerError,
        BadRequestError,
        FanfareDecodeError,
        TransportError,
        AuthenticationError,
    ]
    for error in errors:
        for text in (str(error), repr(error), str(error.__cause__), repr(error.__dict__)):
            assert SECRET not in text
            assert "WRONGWRONG" not in text
    assert caplog.records
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text


def test_missing_secret_names_the_env_var() -> None:
    """No key at all is a FanfareConfigError at construction naming FANFARE_SECRET_KEY."""
    with pytest.raises(FanfareConfigError, match="FANFARE_SECRET_KEY"):
        FanfareClient()


def test_secret_and_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """FANFARE_SECRET_KEY and FANFARE_BASE_URL are the fallbacks."""
    monkeypatch.setenv("FANFARE_SECRET_KEY", SECRET)
    monkeypatch.setenv("FANFARE_BASE_URL", "http://127.0.0.1:9/api/")
    client = FanfareClient()
    assert "http://127.0.0.1:9/api'" in repr(client)
    assert SECRET not in repr(client)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api",
        "http://127.5.6.7/api",
        "http://[::1]:80/api",
        "http://localhost/x",
    ],
)
def test_plain_http_allowed_on_loopback(url: str) -> None:
    """Loopback hosts may use http://."""
    FanfareClient(SECRET, base_url=url)


@pytest.mark.parametrize(
    "url", ["http://admin.fanfare.io/api", "http://10.0.0.1/api", "http://localhost.evil.com/"]
)
def test_plain_http_refused_elsewhere(url: str) -> None:
    """The key never goes out in clear text by accident; allow_insecure_http opts in."""
    with pytest.raises(FanfareConfigError, match="http"):
        FanfareClient(SECRET, base_url=url)
    FanfareClient(SECRET, base_url=url, allow_insecure_http=True)


@pytest.mark.parametrize(
    "url", ["ftp://x/api", "not a url", "https://", "https://u:p@host/api", "https://h/api?x=1"]
)
def test_bad_urls_are_config_errors(url: str) -> None:
    """Malformed base URLs are rejected at construction."""
    with pytest.raises(FanfareConfigError):
        FanfareClient(SECRET, base_url=url)


def test_publishable_and_blank_keys_refused() -> None:
    """pk_ keys cannot call the Admin API; keys with whitespace are typos."""
    with pytest.raises(FanfareConfigError, match="publishable"):
        FanfareClient("pk_live_abc")
    with pytest.raises(FanfareConfigError):
        FanfareClient("sk_live_abc\n")
    with pytest.raises(FanfareConfigError):
        FanfareClient("")


def test_unknown_option_is_type_error() -> None:
    """Options are keyword-only and checked like any Python call."""
    with pytest.raises(TypeError):
        FanfareClient(SECRET, max_retrys=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        FanfareClient(SECRET, "https://x")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"max_retries": -1},
        {"max_connections": 0},
        {"max_response_bytes": 0},
        {"min_ttl": 10, "max_ttl": 5},
        {"default_ttl": float("nan")},
        {"negative_ttl": -1},
    ],
)
def test_bad_option_values_are_config_errors(options: dict[str, float]) -> None:
    """Out-of-range option values are rejected with a clear FanfareConfigError."""
    with pytest.raises(FanfareConfigError):
        FanfareClient(SECRET, **options)  # type: ignore[arg-type]


# -- lifecycle ----------------------------------------------------------------


def test_construction_outside_a_loop_creates_no_session() -> None:
    """The aiohttp session is created lazily, inside the running loop."""
    client = FanfareClient(SECRET)
    assert client._transport._session is None


async def test_aclose_is_idempotent_and_closed_client_raises(server: MockFanfareServer) -> None:
    """Closing twice is fine; any call after it raises FanfareClientClosedError."""
    client = FanfareClient(server.secret_key, base_url=server.url)
    await client.get_group_audiences(server.group_ids[0])
    await client.aclose()
    await client.aclose()
    assert client.closed
    with pytest.raises(FanfareClientClosedError):
        await client.get_group_audiences(server.group_ids[0])
    with pytest.raises(FanfareClientClosedError):
        async with client:
            pass
    assert server.total_requests == 1


async def test_caller_session_is_left_open(server: MockFanfareServer) -> None:
    """A session passed in is used and never closed by the client."""
    async with aiohttp.ClientSession() as session:
        async with client_for(server, session=session) as client:
            await client.get_group_audiences(server.group_ids[0])
        assert not session.closed
        async with session.get(server.url + "/audiences/groups/x") as response:
            assert response.status == 401


async def test_closing_fails_calls_in_flight_promptly(server: MockFanfareServer) -> None:
    """aclose() during a request ends that call with FanfareClientClosedError, no hang."""
    server.pause()
    client = FanfareClient(server.secret_key, base_url=server.url, rate_limit=None)
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await client.get_group_audiences(server.group_ids[0])
        except FanfareError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await server.wait_for_requests(1)
        with anyio.fail_after(5):
            await client.aclose()
    server.resume()
    assert len(outcome) == 1
    assert isinstance(outcome[0], FanfareClientClosedError)


@pytest.mark.parametrize("own_session", [False, True])
async def test_closing_fails_uncached_calls_in_flight_promptly(
    server: MockFanfareServer, own_session: bool
) -> None:
    """use_cache=False calls fetch in the caller's own task; aclose() still ends them
    with FanfareClientClosedError, even when the aiohttp session is the caller's."""
    server.pause()
    session = aiohttp.ClientSession() if own_session else None
    client = FanfareClient(server.secret_key, base_url=server.url, rate_limit=None, session=session)
    outcome: list[BaseException] = []

    async def call(group: str) -> None:
        try:
            await client.get_group_audiences(group, use_cache=False)
        except FanfareError as exc:
            outcome.append(exc)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, server.group_ids[0])
            tg.start_soon(call, server.group_ids[1])
            await server.wait_for_requests(2)
            with anyio.fail_after(5):
                await client.aclose()
        assert [type(exc) for exc in outcome] == [FanfareClientClosedError] * 2
        assert not client._flights._alone
    finally:
        server.resume()
        if session is not None:
            await session.close()


async def test_cancelling_an_uncached_call_is_a_plain_cancellation(
    server: MockFanfareServer,
) -> None:
    """A cancelled use_cache=False call raises CancelledError, even if aclose() follows at
    once; nothing is left registered."""
    server.pause()
    client = FanfareClient(server.secret_key, base_url=server.url, rate_limit=None)
    task = asyncio.ensure_future(client.get_group_audiences(server.group_ids[0], use_cache=False))
    await server.wait_for_requests(1)
    task.cancel()
    await client.aclose()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not client._flights._alone
    server.resume()


async def test_uncached_calls_are_not_shared(server: MockFanfareServer) -> None:
    """use_cache=False never joins or is joined: three calls make three requests."""
    group = server.group_ids[0]
    server.pause()
    async with client_for(server) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get_group_audiences, group)
            for _ in range(2):
                tg.start_soon(partial(client.get_group_audiences, group, use_cache=False))
            await server.wait_for_requests(3)
            server.resume()
        assert client.cache_stats.coalesced == 0
    assert server.request_count(group) == 3


async def test_cancelling_a_caller_leaves_no_task_or_warning(server: MockFanfareServer) -> None:
    """A cancelled call raises CancelledError; closing afterwards leaves nothing pending."""
    server.pause()
    async with client_for(server) as client:
        task = asyncio.ensure_future(client.get_group_audiences(server.group_ids[0]))
        await server.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.resume()
    assert not client._flights._tasks


async def test_garbage_http_response_is_transport_error_without_secret() -> None:
    """A peer that is not speaking HTTP gives TransportError; no chained object holds the key."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n[]")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with FanfareClient(
            SECRET, base_url=f"http://127.0.0.1:{port}/api", max_retries=0, rate_limit=None
        ) as client:
            with pytest.raises(TransportError) as info:
                await client.get_group_audiences("g")
    finally:
        server.close()
        await server.wait_closed()
    exc: BaseException | None = info.value
    while exc is not None:
        assert SECRET not in repr(exc)
        assert SECRET not in repr(vars(exc)) if hasattr(exc, "__dict__") else True
        request_info = getattr(exc, "request_info", None)
        assert request_info is None or SECRET not in repr(request_info)
        exc = exc.__cause__ or exc.__context__
