"""A real-HTTP test double for the Fanfare Admin API ``GET /audiences/groups/{groupId}``.

::

    from fanfare_async import FanfareClient
    from fanfare_async.testing import Fault, MockFanfareServer

    async with MockFanfareServer(seed=1, groups=100) as server:
        server.inject(503, Fault.truncated())          # next two requests fail, then normal
        async with FanfareClient(server.secret_key, base_url=server.url) as client:
            audiences = await client.get_group_audiences(server.group_ids[0])
        assert server.request_count(server.group_ids[0]) == 3

The server runs on 127.0.0.1 (an ephemeral port by default) with aiohttp. Groups are generated
deterministically from ``seed`` (see :mod:`fanfare_async._fake_data`): the same seed gives the
same bytes in every process. Each request goes through, in this order: recording and counting,
the pause gate (:meth:`MockFanfareServer.pause`), ``latency``, rate-limit enforcement (when
``rate_limit`` is set), authentication, routing (404 for other paths, 405 for other methods),
one scripted fault (:meth:`MockFanfareServer.inject`) or a random one (``fault_rate``), and
finally the group (404 when unknown).

Default error bodies follow the shapes of Fanfare's documentation: 400/422 ``validation_error``
with ``issues``; 401 ``{"error": "Authentication required"}`` or ``{"error": "Secret key
required"}``; 403/404/413/423 and other 4xx ``{"error", "message", "code", "details": {}}``;
409 with a ``details`` list; 429 ``{"error": "Rate limit exceeded", "retryAfter": n}``; 500, 503
and other 5xx ``{"error": "internal_error", "message", "code": "INTERNAL"}``; 502 and 504, as a
proxy would send them, an HTML page with ``Content-Type: text/html``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hmac
import http
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import unquote

import msgspec
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ._fake_data import encode_group, generate_group, group_ids, is_uuid_shaped

__all__ = ["Fault", "MockFanfareServer", "RecordedRequest"]

_KINDS: Final = frozenset(
    {"status", "malformed", "truncated", "slow", "drop", "huge", "delay", "wrong_shape"}
)
_JSON: Final = "application/json"
_MALFORMED_BODY: Final = b'[{"id": "x",]'
_WRONG_SHAPE_BODY: Final = b'{"not": "an array"}'
_HUGE_CHUNK: Final = 256 * 1024
_LRU_ENTRIES: Final = 2048
_LRU_BYTES: Final = 64 * 1024 * 1024
_SHUTDOWN_TIMEOUT: Final = 0.5

_S = TypeVar("_S", bound="MockFanfareServer")


def _format_retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Fault:
    """One scripted response, queued with :meth:`MockFanfareServer.inject`.

    Build it with the class methods (``Fault.error(503)``, ``Fault.truncated()``,
    ``Fault.delayed(2.0)``, ...).
    """

    status: int = 503
    body: bytes | None = None
    """Body to send; ``None`` means a Fanfare-style error body for ``status``."""
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    kind: str = "status"
    """One of status, malformed, truncated, slow, drop, huge, delay, wrong_shape."""
    delay: float = 0.0
    """slow: pause between chunks; delay: extra pause before the normal answer."""
    size: int = 0
    """huge: body size in bytes."""
    chunks: int = 10
    """slow: number of pieces the body is written in."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(_KINDS)}")
        if self.kind == "huge" and self.size < 2:
            raise ValueError("a huge fault needs size >= 2")
        if self.kind == "slow" and self.chunks < 1:
            raise ValueError("a slow fault needs chunks >= 1")

    @classmethod
    def error(
        cls,
        status: int,
        *,
        retry_after: float | str | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """A ``status`` response; ``retry_after`` (seconds, or a str verbatim) sets Retry-After."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = _format_retry_after(retry_after)
        return cls(status=status, body=body, headers=hdrs, kind="status")

    @classmethod
    def malformed(cls) -> Fault:
        """A 200 ``application/json`` response whose body is not valid JSON."""
        return cls(status=200, body=_MALFORMED_BODY, kind="malformed")

    @classmethod
    def wrong_shape(cls) -> Fault:
        """A 200 response with valid JSON that is not an array of audiences."""
        return cls(status=200, body=_WRONG_SHAPE_BODY, kind="wrong_shape")

    @classmethod
    def truncated(cls) -> Fault:
        """A 200 announcing the group's full Content-Length, cut after half the bytes."""
        return cls(status=200, kind="truncated")

    @classmethod
    def slow(cls, delay: float, chunks: int = 10) -> Fault:
        """A 200 with the real body written in ``chunks`` pieces, ``delay`` seconds apart."""
        return cls(status=200, kind="slow", delay=delay, chunks=chunks)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without any response."""
        return cls(status=0, kind="drop")

    @classmethod
    def huge(cls, size: int) -> Fault:
        """A 200 whose body is ``size`` bytes (an empty JSON array padded with spaces)."""
        return cls(status=200, kind="huge", size=size)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Fault:
        """A redirect to ``location`` with an empty body."""
        return cls(status=status, body=b"", headers={"Location": location}, kind="status")

    @classmethod
    def delayed(cls, seconds: float) -> Fault:
        """The normal response after an extra pause of ``seconds``."""
        return cls(status=200, kind="delay", delay=seconds)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    raw_path: str
    """Exactly as on the request line, e.g. ``/api/audiences/groups/%2E%2E?x``."""
    group_id: str | None
    """The percent-decoded path segment, or ``None`` when the path is not the route."""
    query_string: str
    authorized: bool
    """Whether the bearer secret matched."""
    status: int
    """Status answered; 0 for a dropped connection and while the request is in flight."""
    time: float
    """The server's ``clock()`` when the request arrived."""
    headers: Mapping[str, str]
    """Request headers (case-insensitive) with Authorization replaced by ``<redacted>``."""


def _json(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _code(status: int) -> str:
    return _phrase(status).upper().replace(" ", "_").replace("-", "_")


def _retry_after_seconds(headers: Mapping[str, str]) -> int | float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return int(seconds) if seconds.is_integer() else seconds


_OTHER_4XX: Final[dict[int, tuple[str, str, str]]] = {
    413: ("payload_too_large", "Request entity too large", "PAYLOAD_TOO_LARGE"),
    423: ("locked", "Audience group is locked", "LOCKED"),
}


def _error_body(
    status: int, group_id: str | None, headers: Mapping[str, str]
) -> tuple[bytes, str | None]:
    """A Fanfare-style default body and its Content-Type for ``status``."""
    if status < 200 or status in (204, 304) or 300 <= status < 400:
        return b"", None
    if status in (400, 422):
        issue: dict[str, Any] = {"kind": "schema", "type": "string", "message": "Invalid group id"}
        issue["path"] = ["groupId"]
        return _json({"error": "validation_error", "issues": [issue]}), _JSON
    if status == 401:
        return _json({"error": "Authentication required"}), _JSON
    if status == 403:
        obj: dict[str, Any] = {
            "error": "forbidden",
            "message": "Insufficient permissions",
            "code": "FORBIDDEN",
            "details": {},
        }
        return _json(obj), _JSON
    if status == 404:
        return _json(_not_found(group_id or "")), _JSON
    if status == 409:
        message = "Audience group is being modified"
        obj = {
            "error": "conflict",
            "message": message,
            "details": [{"field": "groupId", "message": message}],
        }
        return _json(obj), _JSON
    if status == 429:
        obj = {"error": "Rate limit exceeded"}
        retry_after = _retry_after_seconds(headers)
        if retry_after is not None:
            obj["retryAfter"] = retry_after
        return _json(obj), _JSON
    if status in _OTHER_4XX:
        error, message, code = _OTHER_4XX[status]
        obj = {"error": error, "message": message, "code": code, "details": {}}
        return _json(obj), _JSON
    if status in (502, 504):
        line = f"{status} {_phrase(status)}"
        return f"<html><body><h1>{line}</h1></body></html>".encode(), "text/html"
    if status >= 500:
        obj = {"error": "internal_error", "message": _phrase(status), "code": "INTERNAL"}
        return _json(obj), _JSON
    obj = {
        "error": _code(status).lower(),
        "message": _phrase(status),
        "code": _code(status),
        "details": {},
    }
    return _json(obj), _JSON


def _not_found(group_id: str) -> dict[str, Any]:
    return {
        "error": "not_found",
        "message": f"Audience group {group_id} not found",
        "code": "GROUP_NOT_FOUND",
        "details": {},
    }


def _redact(headers: Mapping[str, str]) -> CIMultiDictProxy[str]:
    copy: CIMultiDict[str] = CIMultiDict(headers)
    if "Authorization" in copy:
        copy["Authorization"] = "<redacted>"
    return CIMultiDictProxy(copy)


def _format_reset(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


class MockFanfareServer:
    """A real aiohttp server implementing ``GET {base_path}/audiences/groups/{groupId}``.

    Use it as ``async with MockFanfareServer() as server`` (or ``await start()`` and
    ``await close()``); ``server.url`` is then the base URL to give a client. Knobs:
    ``latency`` (seconds, mutable), ``rate_limit`` per ``rate_period`` seconds (fixed windows
    from the start time, with the ``X-RateLimit-*`` headers and 429 + ``Retry-After``; with
    ``rate_limit_headers=False`` a proxy's bare 429s instead), ``response_headers`` added to
    every response (e.g. frozen rate-limit headers),
    ``date_header`` (True: from ``clock``; False or None: none; a str: verbatim), random faults
    (``fault_rate`` drawn from ``fault_kinds`` with ``random.Random(fault_seed)``) and
    scripted ones (:meth:`inject`). ``record_requests=False`` stops keeping
    :attr:`requests` (counters still work), for long benchmarks.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        groups: int = 1000,
        audiences_per_group: int = 8,
        secret_key: str = "sk_test_mockfanfare0000000000000000",  # noqa: S107
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limit: int | None = None,
        rate_period: float = 60.0,
        retry_after_format: str = "seconds",
        date_header: str | bool | None = True,
        clock: Callable[[], float] = time.time,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[Fault | int] = (Fault.error(503), Fault.drop()),
        fault_seed: int = 0,
        base_path: str = "/api",
        record_requests: bool = True,
        rate_limit_headers: bool = True,
        response_headers: Mapping[str, str] | None = None,
    ) -> None:
        if groups < 0 or audiences_per_group < 0:
            raise ValueError("groups and audiences_per_group must be >= 0")
        if rate_limit is not None and rate_limit < 1:
            raise ValueError("rate_limit must be a positive int or None")
        if not rate_period > 0:
            raise ValueError("rate_period must be > 0")
        if retry_after_format not in ("seconds", "http-date"):
            raise ValueError("retry_after_format must be 'seconds' or 'http-date'")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        kinds = tuple(_as_fault(f) for f in fault_kinds)
        if fault_rate > 0 and not kinds:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        base_path = base_path.strip().rstrip("/")
        if base_path and not base_path.startswith("/"):
            base_path = "/" + base_path

        self.secret_key: str = secret_key
        """The bearer secret the server accepts."""
        self.latency: float = latency
        """Seconds every request waits before being answered (read per request)."""
        self.rate_limit: int | None = rate_limit
        self.rate_period: float = rate_period
        self.retry_after_format: str = retry_after_format
        self.date_header: str | bool | None = date_header
        self.rate_limit_headers: bool = rate_limit_headers
        """False: the limiter answers like a proxy's (a bare 429: no Retry-After, no
        ``X-RateLimit-*`` headers, an HTML body)."""
        self.response_headers: dict[str, str] = dict(response_headers or {})
        """Headers added to every response, replacing the server's own (e.g. frozen
        ``X-RateLimit-*`` values, as a caching gateway sends them)."""
        self.fault_rate: float = fault_rate
        self.group_ids: list[str] = group_ids(seed, groups)
        """The generated group ids (not changed by :meth:`set_group` / :meth:`remove_group`)."""
        self.request_counts: collections.Counter[str] = collections.Counter()
        """Requests per decoded group id, faults and 429s included."""
        self.requests: list[RecordedRequest] = []
        """Every request in arrival order (unless ``record_requests`` is False)."""

        self._seed = seed
        self._audiences = audiences_per_group
        self._host = host
        self._port = port
        self._clock = clock
        self._fault_kinds = kinds
        self._fault_rng = random.Random(fault_seed)
        self._prefix = base_path + "/audiences/groups/"
        self._base_path = base_path
        self._record = record_requests
        self._known = frozenset(self.group_ids)
        self._custom: dict[str, bytes] = {}
        self._removed: set[str] = set()
        self._lru: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._lru_bytes = 0
        self._faults: collections.deque[tuple[str | None, Fault]] = collections.deque()
        self._total = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._rate_limited = 0
        self._request_seq = 0
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._sleepers: set[asyncio.Future[None]] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._runner: web.AppRunner | None = None
        self._closed = False
        self._start_time = 0.0
        self._window = -1
        self._window_used = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self: _S) -> _S:
        """Start listening (idempotent while running); returns the server."""
        if self._closed:
            raise RuntimeError("MockFanfareServer is closed; create a new one")
        if self._runner is not None:
            return self
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(self._on_response_prepare)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._start_time = self._clock()
        return self

    async def close(self) -> None:
        """Stop the server; paused handlers are released first. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._unpaused.set()
        for sleeper in self._sleepers:  # cut simulated latency and slowness short
            if not sleeper.done():
                sleeper.set_result(None)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self: _S) -> _S:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Base URL for a client, e.g. ``http://127.0.0.1:43123/api`` (once started)."""
        if self._runner is None:
            raise RuntimeError("MockFanfareServer is not running")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}{self._base_path}"

    def __repr__(self) -> str:
        where = self.url if self._runner is not None else "not running"
        return f"<MockFanfareServer {where} groups={len(self.group_ids)} seed={self._seed}>"

    # -- content ---------------------------------------------------------------------------

    @staticmethod
    def _key(group_id: str) -> str:
        return group_id.lower() if is_uuid_shaped(group_id) else group_id

    def _lookup(self, group_id: str) -> bytes | None:
        key = self._key(group_id)
        custom = self._custom.get(key)
        if custom is not None:
            return custom
        if key in self._removed or key not in self._known:
            return None
        return self._generated(key)

    def _generated(self, key: str) -> bytes:
        body = self._lru.get(key)
        if body is not None:
            self._lru.move_to_end(key)
            return body
        body = encode_group(generate_group(self._seed, key, self._audiences))
        self._lru[key] = body
        self._lru_bytes += len(body)
        while len(self._lru) > _LRU_ENTRIES or (
            self._lru_bytes > _LRU_BYTES and len(self._lru) > 1
        ):
            _, old = self._lru.popitem(last=False)
            self._lru_bytes -= len(old)
        return body

    def body_for(self, group_id: str) -> bytes:
        """The exact bytes a 200 for ``group_id`` carries; KeyError for an unknown group.

        UUID-shaped ids are matched case-insensitively, other ids exactly.
        """
        body = self._lookup(group_id)
        if body is None:
            raise KeyError(group_id)
        return body

    def set_group(self, group_id: str, audiences: list[dict[str, Any]] | bytes) -> None:
        """Add or override a group; ``bytes`` are sent verbatim, a list is JSON-encoded."""
        key = self._key(group_id)
        body = audiences if isinstance(audiences, bytes) else encode_group(audiences)
        self._custom[key] = body
        self._removed.discard(key)

    def remove_group(self, group_id: str) -> None:
        """Make ``group_id`` unknown (404) from now on."""
        key = self._key(group_id)
        self._custom.pop(key, None)
        self._removed.add(key)

    # -- stats -----------------------------------------------------------------------------

    def request_count(self, group_id: str) -> int:
        """Requests received for ``group_id`` (as decoded from the path, exact spelling)."""
        return self.request_counts[group_id]

    @property
    def total_requests(self) -> int:
        """Requests received since the start (or the last :meth:`reset_stats`)."""
        return self._total

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The peak of :attr:`in_flight`."""
        return self._max_in_flight

    @property
    def rate_limited(self) -> int:
        """How many 429s the rate-limit enforcement sent."""
        return self._rate_limited

    def reset_stats(self) -> None:
        """Zero the counters, the recorded requests and the in-flight peak.

        The peak restarts from the current :attr:`in_flight` (0 when idle); rate-limit windows,
        queued faults and groups are kept.
        """
        self.request_counts.clear()
        self.requests = []
        self._total = 0
        self._max_in_flight = self._in_flight
        self._rate_limited = 0

    # -- control ---------------------------------------------------------------------------

    def inject(self, *faults: Fault | int, group_id: str | None = None) -> None:
        """Queue scripted responses, consumed one per matching request, in order.

        With ``group_id`` only requests for that group consume them; without, any group's
        request does. An int means ``Fault.error(status)``. Requests to other paths never
        consume faults.
        """
        scope = None if group_id is None else self._key(group_id)
        self._faults.extend((scope, _as_fault(f)) for f in faults)

    def pause(self) -> None:
        """Hold new and waiting requests (received, recorded and counted) until :meth:`resume`."""
        self._unpaused.clear()

    def resume(self) -> None:
        """Let paused requests proceed."""
        self._unpaused.set()

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        """Return once :attr:`total_requests` >= ``n``; TimeoutError after ``timeout`` s."""
        if self._total >= n:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self._total} request(s) after {timeout}s, waiting for {n}"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    # -- request handling ------------------------------------------------------------------

    def _route(self, raw_path: str) -> str | None:
        path = raw_path.split("?", 1)[0].split("#", 1)[0]
        if not path.startswith(self._prefix):
            return None
        segment = path[len(self._prefix) :]
        # A raw dot-segment is what URL normalisers collapse: it cannot name a group.
        if not segment or "/" in segment or segment in (".", ".."):
            return None
        return unquote(segment)

    def _authorize(self, header: str | None) -> bool:
        if header is None:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.secret_key.encode())

    def _notify(self) -> None:
        for n, future in self._waiters:
            if self._total >= n and not future.done():
                future.set_result(None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._request_seq += 1
        request_id = f"req_{self._request_seq}"
        group_id = self._route(request.raw_path)
        auth = request.headers.get("Authorization")
        record = RecordedRequest(
            method=request.method,
            raw_path=request.raw_path,
            group_id=group_id,
            query_string=request.query_string,
            authorized=self._authorize(auth),
            status=0,
            time=self._clock(),
            headers=_redact(request.headers),
        )
        log = self.requests
        index = len(log)
        if self._record:
            log.append(record)
        if group_id is not None:
            self.request_counts[group_id] += 1
        self._total += 1
        self._notify()
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        status = 0
        try:
            response, status = await self._answer(request, record, request_id)
            return response
        finally:
            self._in_flight -= 1
            if self._record and log is self.requests and index < len(log) and log[index] is record:
                log[index] = dataclasses.replace(record, status=status)

    async def _answer(
        self, request: web.Request, record: RecordedRequest, request_id: str
    ) -> tuple[web.StreamResponse, int]:
        """The response for one request and the status it answered (0: dropped)."""
        if not self._unpaused.is_set():
            await self._unpaused.wait()
        await self._sleep(self.latency)
        headers: CIMultiDict[str] = CIMultiDict({"x-request-id": request_id})

        if self.rate_limit is not None:
            # A bare limiter keeps its counts to itself.
            retry_after = self._rate_limit(headers if self.rate_limit_headers else CIMultiDict())
            if retry_after is not None:
                self._rate_limited += 1
                if not self.rate_limit_headers:
                    bare: CIMultiDict[str] = CIMultiDict({"Content-Type": "text/html"})
                    return self._response(429, _BARE_429_PAGE, None, bare), 429
                body = _json({"error": "Rate limit exceeded", "retryAfter": retry_after})
                return self._response(429, body, _JSON, headers), 429

        auth = request.headers.get("Authorization")
        if auth is None or not auth.strip():
            body = _json({"error": "Authentication required"})
            return self._response(401, body, _JSON, headers), 401
        if not record.authorized:
            body = _json({"error": "Secret key required"})
            return self._response(401, body, _JSON, headers), 401

        group_id = record.group_id
        if group_id is None:
            obj = {
                "error": "not_found",
                "message": f"No route for {request.method} {request.raw_path.split('?')[0]}",
                "code": "ROUTE_NOT_FOUND",
                "details": {},
            }
            return self._response(404, _json(obj), _JSON, headers), 404
        if request.method != "GET":
            headers["Allow"] = "GET"
            obj = {
                "error": "method_not_allowed",
                "message": f"Method {request.method} not allowed",
                "code": "METHOD_NOT_ALLOWED",
                "details": {},
            }
            return self._response(405, _json(obj), _JSON, headers), 405

        fault = self._next_fault(group_id)
        if fault is not None:
            if fault.kind == "delay":
                await self._sleep(fault.delay)
            else:
                return await self._apply_fault(request, fault, group_id, headers)

        content = self._lookup(group_id)
        if content is None:
            return self._response(404, _json(_not_found(group_id)), _JSON, headers), 404
        return self._response(200, content, _JSON, headers), 200

    async def _sleep(self, seconds: float) -> None:
        """Simulated slowness: like asyncio.sleep, but over at once when the server closes."""
        if seconds <= 0 or self._closed:
            return
        loop = asyncio.get_running_loop()
        sleeper: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, sleeper)
        self._sleepers.add(sleeper)
        try:
            await sleeper
        finally:
            timer.cancel()
            self._sleepers.discard(sleeper)

    def _rate_limit(self, headers: CIMultiDict[str]) -> int | None:
        """Account one request in the current window; the Retry-After seconds when over."""
        limit = self.rate_limit
        assert limit is not None
        now = self._clock()
        window = math.floor((now - self._start_time) / self.rate_period)
        if window != self._window:
            self._window = window
            self._window_used = 0
        reset = self._start_time + (window + 1) * self.rate_period
        limited = self._window_used >= limit
        if not limited:
            self._window_used += 1
        headers["X-RateLimit-Limit"] = str(limit)
        headers["X-RateLimit-Remaining"] = str(limit - self._window_used)
        headers["X-RateLimit-Reset"] = _format_reset(reset)
        if not limited:
            return None
        seconds = max(1, math.ceil(reset - now))
        if self.retry_after_format == "http-date":
            headers["Retry-After"] = formatdate(math.ceil(now + seconds), usegmt=True)
        else:
            headers["Retry-After"] = str(seconds)
        return seconds

    def _next_fault(self, group_id: str) -> Fault | None:
        key = self._key(group_id)
        for i, (scope, fault) in enumerate(self._faults):
            if scope is None or scope == key:
                del self._faults[i]
                return fault
        if self.fault_rate > 0 and self._fault_rng.random() < self.fault_rate:
            return self._fault_rng.choice(self._fault_kinds)
        return None

    def _fault_payload(self, fault: Fault, group_id: str) -> bytes:
        if fault.body is not None:
            return fault.body
        body = self._lookup(group_id)
        if body is None:  # unknown group: still a realistic body
            body = encode_group(generate_group(self._seed, self._key(group_id), self._audiences))
        return body

    async def _apply_fault(
        self, request: web.Request, fault: Fault, group_id: str, headers: CIMultiDict[str]
    ) -> tuple[web.StreamResponse, int]:
        kind = fault.kind
        if kind == "drop":
            _close_transport(request)
            return web.Response(), 0
        headers.update(fault.headers)
        if kind == "status":
            return self._error(fault.status, group_id, headers, fault.body), fault.status
        if kind in ("malformed", "wrong_shape"):
            return self._response(fault.status, fault.body or b"", _JSON, headers), fault.status

        stream = web.StreamResponse(status=fault.status, headers=headers)
        if "Content-Type" not in headers:
            stream.content_type = _JSON
        try:
            if kind == "huge":
                stream.content_length = fault.size
                await stream.prepare(request)
                await stream.write(b"[")
                left = fault.size - 2
                pad = b" " * min(left, _HUGE_CHUNK)
                while left > 0:
                    piece = pad if left >= len(pad) else pad[:left]
                    await stream.write(piece)
                    left -= len(piece)
                await stream.write(b"]")
                return stream, fault.status
            payload = self._fault_payload(fault, group_id)
            stream.content_length = len(payload)
            await stream.prepare(request)
            if kind == "truncated":
                await stream.write(payload[: len(payload) // 2])
                _close_transport(request)
                return stream, fault.status
            # slow
            step = max(1, math.ceil(len(payload) / fault.chunks))
            pieces = [payload[i : i + step] for i in range(0, len(payload), step)]
            for i, piece in enumerate(pieces):
                if i:
                    await self._sleep(fault.delay)
                await stream.write(piece)
        except ConnectionError:
            pass  # the client went away; aiohttp finishes the exchange quietly
        return stream, fault.status

    def _error(
        self,
        status: int,
        group_id: str | None,
        headers: CIMultiDict[str],
        body: bytes | None = None,
    ) -> web.Response:
        content_type: str | None
        if body is None:
            body, content_type = _error_body(status, group_id, headers)
        elif body:
            content_type = _JSON if _is_json(body) else "text/plain"
        else:
            content_type = None
        return self._response(status, body, content_type, headers)

    @staticmethod
    def _response(
        status: int, body: bytes, content_type: str | None, headers: CIMultiDict[str]
    ) -> web.Response:
        if content_type is not None and "Content-Type" not in headers:
            headers["Content-Type"] = content_type
        if status < 200 or status in (204, 304):
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, body=body, headers=headers)

    async def _on_response_prepare(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        # Runs after aiohttp has added its own Date header.
        if self.response_headers:
            response.headers.update(self.response_headers)
        mode = self.date_header
        if mode is True:
            response.headers["Date"] = formatdate(self._clock(), usegmt=True)
        elif mode is False or mode is None:
            response.headers.popall("Date", None)
        else:
            response.headers["Date"] = mode


#: What a proxy's limiter (nginx ``limit_req``) answers: no Retry-After, no rate headers.
_BARE_429_PAGE = (
    b"<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
    b"<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def _as_fault(fault: Fault | int) -> Fault:
    if isinstance(fault, Fault):
        return fault
    if isinstance(fault, int) and not isinstance(fault, bool):
        return Fault.error(fault)
    raise TypeError(f"expected a Fault or an int status, got {type(fault).__name__}")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _is_json(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return True


def _close_transport(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()
