"""OpenTelemetry (contract section 10): spans and metrics through the SDK's in-memory
exporter and reader, installed once per session as the global providers; and the
library without OpenTelemetry at all (subprocesses)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import types
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from opentelemetry import context, metrics, trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fanfare_async import RateLimit, ServerError, TransportError
from fanfare_async._otel import DURATION_BUCKETS
from fanfare_async.testing import Fault, MockFanfareServer

from .helpers import client_for

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


class _Gate(SpanProcessor):
    """Passes ended spans on only while a test of this module runs, so the modules
    that run after it (under the same global provider) pile nothing up."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self.open = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.open:
            self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


@dataclass
class Otel:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    gate: _Gate

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, name: str) -> list[NumberDataPoint | HistogramDataPoint]:
        """The data points of metric ``name`` at a collection made now."""
        data = self.reader.get_metrics_data()
        assert data is not None
        found: list[NumberDataPoint | HistogramDataPoint] = []
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)  # type: ignore[arg-type]
        return found

    def counter(self, name: str) -> float:
        """The process-wide value of an observable counter (one point, no attributes)."""
        points = self.points(name)
        assert len(points) == 1, points
        point = points[0]
        assert isinstance(point, NumberDataPoint)
        assert dict(point.attributes or {}) == {}
        return point.value


@pytest.fixture(scope="session")
def _otel_providers() -> Otel:
    """The SDK as the global providers, set once per session (they can only be set once)."""
    exporter = InMemorySpanExporter()
    gate = _Gate(SimpleSpanProcessor(exporter))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(gate)
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    assert trace.get_tracer_provider() is tracer_provider, "another global tracer provider"
    return Otel(exporter, reader, gate)


@pytest.fixture
def otel(_otel_providers: Otel) -> Iterator[Otel]:
    """The in-memory exporter, empty, recording for this test only."""
    _otel_providers.exporter.clear()
    _otel_providers.gate.open = True
    yield _otel_providers
    _otel_providers.gate.open = False
    _otel_providers.exporter.clear()


def attempts(otel: Otel) -> list[ReadableSpan]:
    found = otel.spans("GET")
    assert all(s.kind is SpanKind.CLIENT for s in found)
    return sorted(found, key=lambda s: s.start_time or 0)


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    value: int = span.context.span_id
    return value


# -- attempt spans ---------------------------------------------------------------------------


async def test_attempt_span_follows_http_client_conventions(
    otel: Otel, server: MockFanfareServer
) -> None:
    """One lookup: one CLIENT span named GET with the stable HTTP client attributes."""
    group = server.group_ids[0]
    async with client_for(server) as client:
        await client.get_group_audiences(group)
    (span,) = attempts(otel)
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": host,
        "server.port": int(port),
        "url.full": f"{server.url}/audiences/groups/{group}",
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert server.secret_key not in str(span.attributes)


@pytest.mark.parametrize("path", ["join", "in_caller", "alone"])
async def test_lookup_span_is_parent_of_its_attempts(
    otel: Otel, server: MockFanfareServer, path: str
) -> None:
    """Through each way a flight runs (its own task, a bulk worker's task, use_cache=False),
    the attempt is a child of fanfare.lookup, itself a child of the caller's span."""
    group = server.group_ids[1]
    tracer = trace.get_tracer("test")
    async with client_for(server) as client:
        with tracer.start_as_current_span("request") as outer:
            if path == "join":
                await client.get_group_audiences(group)
            elif path == "in_caller":
                await client.get_many_group_audiences([group])
            else:
                await client.get_group_audiences(group, use_cache=False)
    (lookup,) = otel.spans("fanfare.lookup")
    (attempt,) = attempts(otel)
    assert lookup.kind is SpanKind.INTERNAL
    assert dict(lookup.attributes or {}) == {
        "fanfare.group_id": group,
        "fanfare.coalesced": False,
        "fanfare.stale": False,
    }
    assert parent_id(attempt) == span_id(lookup)
    assert parent_id(lookup) == outer.get_span_context().span_id
    assert attempt.context is not None and lookup.context is not None
    assert attempt.context.trace_id == lookup.context.trace_id


async def test_retries_carry_resend_count(otel: Otel, server: MockFanfareServer) -> None:
    """A 503 then a 200: two attempts under one lookup, the second with resend_count 1."""
    group = server.group_ids[2]
    server.inject(503, group_id=group)
    async with client_for(server) as client:
        await client.get_group_audiences(group)
    (lookup,) = otel.spans("fanfare.lookup")
    first, second = attempts(otel)
    assert parent_id(first) == parent_id(second) == span_id(lookup)
    first_attributes = dict(first.attributes or {})
    assert "http.request.resend_count" not in first_attributes
    assert first_attributes["http.response.status_code"] == 503
    assert first_attributes["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR
    second_attributes = dict(second.attributes or {})
    assert second_attributes["http.request.resend_count"] == 1
    assert second_attributes["http.response.status_code"] == 200
    assert "error.type" not in second_attributes
    assert second.status.status_code is StatusCode.UNSET
    assert lookup.status.status_code is StatusCode.UNSET


async def test_failures_mark_spans_with_error_type(otel: Otel, server: MockFanfareServer) -> None:
    """A dropped connection: the attempt's error.type is the exception class, no status
    code; the lookup ends in ERROR with the library's error class."""
    group = server.group_ids[3]
    server.inject(Fault.drop(), Fault.drop(), group_id=group)  # aiohttp resends once itself
    async with client_for(server, max_retries=0) as client:
        with pytest.raises(TransportError) as raised:
            await client.get_group_audiences(group)
    (attempt,) = attempts(otel)
    attributes = dict(attempt.attributes or {})
    assert "http.response.status_code" not in attributes
    assert raised.value.__cause__ is not None
    assert attributes["error.type"] == type(raised.value.__cause__).__qualname__
    assert attempt.status.status_code is StatusCode.ERROR
    (lookup,) = otel.spans("fanfare.lookup")
    assert dict(lookup.attributes or {})["error.type"] == "TransportError"
    assert lookup.status.status_code is StatusCode.ERROR


async def test_final_http_error_is_recorded_on_both_spans(
    otel: Otel, server: MockFanfareServer
) -> None:
    """A 500 that is not retried: the attempt carries the code, the lookup the error class."""
    group = server.group_ids[4]
    server.inject(500, group_id=group)
    async with client_for(server, max_retries=0) as client:
        with pytest.raises(ServerError):
            await client.get_group_audiences(group)
    (attempt,) = attempts(otel)
    assert dict(attempt.attributes or {})["error.type"] == "500"
    (lookup,) = otel.spans("fanfare.lookup")
    assert dict(lookup.attributes or {})["error.type"] == "ServerError"


# -- what is not traced, coalescing, stale ---------------------------------------------------


async def test_hits_create_no_span(otel: Otel, server: MockFanfareServer) -> None:
    """Cache hits, by the fast path, another spelling, a UUID object or a bulk run, make
    no span at all."""
    group = server.group_ids[5]
    async with client_for(server) as client:
        await client.get_group_audiences(group)
        otel.exporter.clear()
        await client.get_group_audiences(group)
        await client.get_group_audiences(group.upper())
        await client.get_group_audiences(uuid.UUID(group))
        await client.get_many_group_audiences([group, group.upper()])
    assert otel.spans() == []


async def test_coalesced_callers_are_marked(otel: Otel, server: MockFanfareServer) -> None:
    """Three callers of one group: one lookup span fetches, two are marked coalesced;
    the single attempt is the first one's child."""
    group = server.group_ids[6]
    async with client_for(server) as client:
        server.pause()
        calls = [asyncio.ensure_future(client.get_group_audiences(group)) for _ in range(3)]
        await server.wait_for_requests(1)
        server.resume()
        await asyncio.gather(*calls)
    lookups = otel.spans("fanfare.lookup")
    marks = sorted(dict(s.attributes or {})["fanfare.coalesced"] is True for s in lookups)
    assert marks == [False, True, True]
    (first,) = [s for s in lookups if dict(s.attributes or {})["fanfare.coalesced"] is False]
    (attempt,) = attempts(otel)
    assert parent_id(attempt) == span_id(first)
    assert server.request_count(group) == 1


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_stale_served_is_marked(otel: Otel, server: MockFanfareServer) -> None:
    """A 503 after expiry inside stale_if_error: the lookup span says fanfare.stale."""
    group = server.group_ids[7]
    clock = FakeClock()
    async with client_for(
        server, clock=clock, max_ttl=60, stale_if_error=100, max_retries=0
    ) as client:
        await client.get_group_audiences(group)
        clock.now += 61
        server.inject(503, group_id=group)
        await client.get_group_audiences(group)
        assert client.cache_stats.stale_served == 1
    fresh, stale = sorted(otel.spans("fanfare.lookup"), key=lambda s: s.start_time or 0)
    assert dict(fresh.attributes or {})["fanfare.stale"] is False
    assert dict(stale.attributes or {})["fanfare.stale"] is True
    assert stale.status.status_code is StatusCode.UNSET
    assert dict(attempts(otel)[-1].attributes or {})["error.type"] == "503"


async def test_aiohttp_instrumentation_is_suppressed_inside_attempts(
    otel: Otel, server: MockFanfareServer
) -> None:
    """While aiohttp sends, our attempt span is current and the context tells HTTP
    instrumentations (opentelemetry-instrumentation-aiohttp-client) to stay out."""
    seen: list[tuple[int, object]] = []

    async def on_request_start(
        session: aiohttp.ClientSession,
        ctx: types.SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        span = trace.get_current_span().get_span_context().span_id
        seen.append((span, context.get_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)))

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    async with (
        aiohttp.ClientSession(trace_configs=[config]) as session,
        client_for(server, session=session) as client,
    ):
        await client.get_group_audiences(server.group_ids[8])
    (attempt,) = attempts(otel)
    assert seen == [(span_id(attempt), True)]
    assert context.get_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY) is None


# -- metrics ---------------------------------------------------------------------------------


def durations(otel: Otel, port: int) -> list[HistogramDataPoint]:
    found = []
    for point in otel.points("http.client.request.duration"):
        assert isinstance(point, HistogramDataPoint)
        if dict(point.attributes or {}).get("server.port") == port:
            found.append(point)
    return found


async def test_duration_histogram(otel: Otel, server: MockFanfareServer) -> None:
    """http.client.request.duration: one measurement per attempt, in seconds, with the
    convention's attributes (no url.full) and its advised buckets."""
    port = int(server.url.split(":")[-1].split("/")[0])
    group = server.group_ids[9]
    server.inject(503, group_id=group)
    async with client_for(server) as client:
        await client.get_group_audiences(group)
        await client.get_group_audiences(server.group_ids[10])
    by_status = {
        dict(p.attributes or {})["http.response.status_code"]: p for p in durations(otel, port)
    }
    assert set(by_status) == {200, 503}
    ok, failed = by_status[200], by_status[503]
    assert (ok.count, failed.count) == (2, 1)
    assert dict(failed.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 503,
        "error.type": "503",
    }
    assert tuple(ok.explicit_bounds) == DURATION_BUCKETS
    assert 0 < ok.sum < 5


COUNTERS = (
    "fanfare.cache.hits",
    "fanfare.cache.misses",
    "fanfare.cache.coalesced",
    "fanfare.cache.stale_served",
    "fanfare.cache.refreshes",
    "fanfare.cache.shared_hits",
    "fanfare.ratelimit.held",
    "fanfare.ratelimit.wait",
)


def counters(otel: Otel) -> dict[str, float]:
    return {name: otel.counter(name) for name in COUNTERS}


async def test_counters_read_the_clients_own_counts(otel: Otel, server: MockFanfareServer) -> None:
    """The observable counters move by exactly what the client counted: hits, misses,
    coalesced, and the requests the rate limiter held and for how long."""
    before = counters(otel)
    groups = server.group_ids[11:15]
    async with client_for(server, rate_limit=RateLimit(100, 1.0, burst=1)) as client:
        await client.get_many_group_audiences(groups, concurrency=4)
        for group in groups:
            await client.get_group_audiences(group)
        server.pause()
        calls = [asyncio.ensure_future(client.get_group_audiences(server.group_ids[15]))]
        await server.wait_for_requests(len(groups) + 1)
        calls.append(asyncio.ensure_future(client.get_group_audiences(server.group_ids[15])))
        await asyncio.sleep(0)
        server.resume()
        await asyncio.gather(*calls)
        stats = client.cache_stats
        held = client._limiter.held
        waited = client.rate_limit_wait_seconds
    after = counters(otel)
    delta = {name: after[name] - before[name] for name in COUNTERS}
    assert (stats.hits, stats.misses, stats.coalesced) == (4, 5, 1)
    assert delta["fanfare.cache.hits"] == 4
    assert delta["fanfare.cache.misses"] == 5
    assert delta["fanfare.cache.coalesced"] == 1
    assert delta["fanfare.cache.stale_served"] == 0
    assert delta["fanfare.cache.refreshes"] == 0
    assert delta["fanfare.cache.shared_hits"] == 0
    assert held >= 3
    assert delta["fanfare.ratelimit.held"] == held
    assert delta["fanfare.ratelimit.wait"] == pytest.approx(waited)
    assert waited > 0


async def test_counters_stay_monotonic_when_clients_go(
    otel: Otel, server: MockFanfareServer
) -> None:
    """A client garbage-collected leaves its counts in the totals: nothing goes down."""
    before = counters(otel)
    group = server.group_ids[16]
    async with client_for(server) as client:
        await client.get_group_audiences(group)
        await client.get_group_audiences(group)
        await client.get_group_audiences(group)
    alive = counters(otel)
    assert alive["fanfare.cache.hits"] - before["fanfare.cache.hits"] == 2
    gone = weakref.ref(client)
    del client
    gc.collect()
    assert gone() is None
    after = counters(otel)
    assert after == alive
    async with client_for(server) as other:
        await other.get_group_audiences(group)
    assert otel.counter("fanfare.cache.misses") == alive["fanfare.cache.misses"] + 1


# -- the secret key --------------------------------------------------------------------------


async def test_secret_key_in_no_span_attribute_event_or_metric(
    otel: Otel, server: MockFanfareServer
) -> None:
    """After successes, retries, failures, a stale answer, coalescing and a bulk run, no
    span (name, attributes, events, links, status, resource) and no metric point holds
    the key or the Authorization header."""
    groups = server.group_ids[17:25]
    clock = FakeClock()
    async with client_for(server, clock=clock, max_ttl=60, stale_if_error=100) as client:
        server.inject(502, 500, Fault.drop(), group_id=groups[0])
        await client.get_group_audiences(groups[0])
        server.inject(404, group_id=groups[1])
        with pytest.raises(Exception):  # noqa: B017
            await client.get_group_audiences(groups[1])
        await client.get_many_group_audiences(groups[2:])
        await asyncio.gather(*(client.get_group_audiences(groups[2]) for _ in range(3)))
        clock.now += 61
        server.inject(500, 500, 500, 500, group_id=groups[3])
        await client.get_group_audiences(groups[3])
        await client.get_group_audiences(groups[4], use_cache=False)
    async with client_for(server) as wrong:
        wrong._transport._headers["Authorization"] = "Bearer sk_test_wrong_but_secret"
        with pytest.raises(Exception):  # noqa: B017
            await wrong.get_group_audiences(groups[5])
    spans = otel.spans()
    assert len(spans) > 10
    secrets = (server.secret_key, "sk_test_wrong_but_secret", "Bearer", "Authorization")
    for span in spans:
        text = span.to_json()
        for secret in secrets:
            assert secret not in text, (secret, text)
    data = otel.reader.get_metrics_data()
    assert data is not None
    text = data.to_json()
    assert "http.client.request.duration" in text
    for secret in secrets:
        assert secret not in text


# -- without OpenTelemetry -------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_fanfare_async_imports_no_opentelemetry() -> None:
    """``import fanfare_async`` (and its testing module) leaves opentelemetry unimported."""
    result = run_python(
        """
        import sys
        import fanfare_async, fanfare_async.testing
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], sorted(sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr


def test_client_works_with_opentelemetry_absent() -> None:
    """With every opentelemetry import refused, the client still looks up, hits, retries
    and runs bulk lookups, with no telemetry and nothing of it imported."""
    result = run_python(
        """
        import asyncio, sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Refuse())

        from fanfare_async import FanfareClient
        from fanfare_async.testing import MockFanfareServer

        async def main():
            async with MockFanfareServer(groups=5) as server:
                async with FanfareClient(
                    server.secret_key, base_url=server.url, rate_limit=None
                ) as client:
                    assert client._telemetry is None
                    assert client._transport.attempt_hook is None
                    group = server.group_ids[0]
                    first = await client.get_group_audiences(group)
                    assert await client.get_group_audiences(group) == first
                    server.inject(503)
                    many = await client.get_many_group_audiences(server.group_ids)
                    assert all(isinstance(v, list) for v in many.values())
                    await client.get_group_audiences(group, use_cache=False)
                async with FanfareClient(server.secret_key, base_url=server.url) as again:
                    assert again._telemetry is None

        asyncio.run(main())
        assert not [m for m in sys.modules if m.startswith("opentelemetry")]
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_no_sdk_means_no_op_telemetry() -> None:
    """With the API but no SDK configured, the client builds its telemetry and works:
    the spans are non-recording no-ops."""
    result = run_python(
        """
        import asyncio
        from opentelemetry import trace
        from fanfare_async import FanfareClient
        from fanfare_async.testing import MockFanfareServer

        async def main():
            async with MockFanfareServer(groups=3) as server:
                async with FanfareClient(
                    server.secret_key, base_url=server.url, rate_limit=None
                ) as client:
                    assert client._telemetry is not None
                    server.inject(503)
                    await client.get_group_audiences(server.group_ids[0])
                    assert not trace.get_current_span().is_recording()

        asyncio.run(main())
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
