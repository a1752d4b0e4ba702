"""OpenTelemetry for the client (the ``otel`` extra): the only module that imports it.

The client imports this module when it is built, and only if opentelemetry-api
is installed; everything goes through the global providers, which are no-ops
until the application configures an SDK. It wraps the layers from outside:

- the transport calls :meth:`ClientTelemetry.attempt` as each HTTP attempt starts
  and ends the record it gets back: one CLIENT span per attempt (the HTTP client
  semantic conventions) and one ``http.client.request.duration`` measurement;
- the client awaits a lookup that has to fetch through :meth:`ClientTelemetry.lookup`:
  a ``fanfare.lookup`` span, current while the load runs, so the attempt spans
  (in the caller's task, or in a flight task spawned from it: contextvars are
  copied at spawn) are its children;
- the cache and rate-limiter counters are not touched on the request path: the
  observable counters read them when the SDK collects, summed over every
  client of the process, so a cache hit pays nothing here.

While an attempt span is current, the context also carries OpenTelemetry's
"suppress HTTP instrumentation" key, so opentelemetry-instrumentation-aiohttp-client,
when the application enables it, records no second CLIENT span (nor a second
duration) for the same request.

No span, attribute or metric holds the secret key: it is only ever in the
Authorization header, which nothing here reads.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, Histogram, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from yarl import URL

from .__about__ import __version__
from ._cache import GroupCache
from ._ratelimit import RateLimiter

_SCOPE = "fanfare_async"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
_METHOD = "GET"

#: The stable HTTP semantic conventions' advice for http.client.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

#: OpenTelemetry's context key that tells HTTP instrumentations to stay out (the API
#: defines it, opentelemetry-instrumentation reads it); None if this API has none.
_SUPPRESS_HTTP = getattr(context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)


class _Sources(Protocol):
    """What the counters are read from: one client's cache and rate limiter."""

    cache: GroupCache
    limiter: RateLimiter


#: The observable counters: name, unit, description, and how to read one client's value.
_COUNTERS: tuple[tuple[str, str, str, Callable[[_Sources], float]], ...] = (
    (
        "fanfare.cache.hits",
        "{lookup}",
        "Lookups answered by the in-process cache.",
        lambda s: s.cache.hits,
    ),
    (
        "fanfare.cache.misses",
        "{lookup}",
        "Lookups that started a load (the cache could not answer, nothing in flight).",
        lambda s: s.cache.misses,
    ),
    (
        "fanfare.cache.coalesced",
        "{lookup}",
        "Lookups that joined a load already in flight for the same group.",
        lambda s: s.cache.coalesced,
    ),
    (
        "fanfare.cache.stale_served",
        "{lookup}",
        "Lookups answered with an expired group after a transient failure (stale_if_error).",
        lambda s: s.cache.stale_served,
    ),
    (
        "fanfare.cache.refreshes",
        "{refresh}",
        "Background refreshes (refresh_ahead) that stored a new value.",
        lambda s: s.cache.refreshes,
    ),
    (
        "fanfare.cache.shared_hits",
        "{lookup}",
        "Loads answered by the shared tier.",
        lambda s: s.cache.shared_hits,
    ),
    (
        "fanfare.ratelimit.held",
        "{request}",
        "Requests the client-side rate limiter made wait.",
        lambda s: s.limiter.held,
    ),
    (
        "fanfare.ratelimit.wait",
        "s",
        "Seconds the client-side rate limiter held requests.",
        lambda s: s.limiter.waited_seconds,
    ),
)


class _Source:
    """One client's counters: read live while the client exists, frozen when it dies."""

    __slots__ = ("cache", "frozen", "limiter")

    def __init__(self, cache: GroupCache, limiter: RateLimiter) -> None:
        self.cache = cache
        self.limiter = limiter
        self.frozen: tuple[float, ...] | None = None

    def freeze(self) -> None:
        """The client is gone: keep its final counts, let its cache go.

        Called by the garbage collector, in any thread, at any point: it takes no
        lock and makes the counts visible (one attribute store) before dropping
        the objects they were read from.
        """
        self.frozen = tuple(read(self) for _, _, _, read in _COUNTERS)
        del self.cache, self.limiter


class _Registry:
    """Every client's counters, summed for the observable instruments.

    A live client is read when the SDK collects; a client that was garbage
    collected leaves its final counts behind (folded into ``retired`` by the next
    sweep), so the sums never go down however many clients come and go.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the SDK may collect from its own thread
        self._sources: list[_Source] = []
        self._retired = [0.0] * len(_COUNTERS)
        self._sweep_at = 64

    def add(self, owner: object, cache: GroupCache, limiter: RateLimiter) -> None:
        source = _Source(cache, limiter)
        weakref.finalize(owner, source.freeze).atexit = False
        with self._lock:
            self._sources.append(source)
            if len(self._sources) >= self._sweep_at:  # amortised: clients built, none collected
                self._sweep()
                self._sweep_at = max(64, 2 * len(self._sources))

    def _sweep(self) -> None:
        """Fold the counts of collected clients into the totals (under the lock)."""
        retired = self._retired
        live: list[_Source] = []
        for source in self._sources:
            frozen = source.frozen
            if frozen is None:
                live.append(source)
            else:
                for index, value in enumerate(frozen):
                    retired[index] += value
        self._sources = live

    def total(self, index: int) -> float:
        """The sum of counter ``index`` over every client the process has had."""
        read = _COUNTERS[index][3]
        with self._lock:
            self._sweep()
            total = self._retired[index]
            for source in self._sources:
                frozen = source.frozen  # read first: freeze() stores it before dropping
                if frozen is None:
                    try:
                        total += read(source)
                        continue
                    except AttributeError:  # collected meanwhile
                        frozen = source.frozen
                    assert frozen is not None
                total += frozen[index]
            return total

    def observe(self, index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return (Observation(self.total(index)),)

        return callback


class _Process:
    """What exists once per process: the tracer, the instruments and the registry."""

    def __init__(self) -> None:
        self.tracer = trace.get_tracer(_SCOPE, __version__, schema_url=_SCHEMA_URL)
        meter = metrics.get_meter(_SCOPE, __version__, schema_url=_SCHEMA_URL)
        self.duration = _duration_histogram(meter)
        self.registry = _Registry()
        self.counters = [
            meter.create_observable_counter(
                name, callbacks=[self.registry.observe(index)], unit=unit, description=text
            )
            for index, (name, unit, text, _) in enumerate(_COUNTERS)
        ]


def _duration_histogram(meter: metrics.Meter) -> Histogram:
    name = "http.client.request.duration"
    description = "Duration of HTTP client requests."
    try:
        return meter.create_histogram(
            name,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:  # an API without bucket advice (before 1.23)
        return meter.create_histogram(name, unit="s", description=description)


_process: _Process | None = None
_process_lock = threading.Lock()


def _the_process() -> _Process:
    global _process
    process = _process
    if process is None:
        with _process_lock:
            process = _process
            if process is None:
                process = _process = _Process()
    return process


def _error_type(status: int, error: BaseException) -> str:
    """``error.type``: the status code for an HTTP error, else the exception's class
    (the one under the library's own error, when it translated one)."""
    if status >= 400:
        return str(status)
    cause = error.__cause__
    return type(error if cause is None else cause).__qualname__


class _Stale(Protocol):
    @property
    def stale(self) -> bool: ...


L = TypeVar("L", bound=_Stale)


class Attempt:
    """One HTTP attempt in progress: its span (current until :meth:`end`) and start time."""

    __slots__ = ("_attributes", "_span", "_started", "_token")

    def __init__(self, span: Span, attributes: dict[str, str | int]) -> None:
        ctx = trace.set_span_in_context(span)
        if _SUPPRESS_HTTP is not None:
            ctx = context.set_value(_SUPPRESS_HTTP, True, ctx)
        self._token = context.attach(ctx)
        self._span = span
        self._attributes = attributes
        self._started = time.perf_counter()

    def end(self, status: int, error: BaseException | None) -> None:
        """The attempt is over: ``status`` is the response's (0: none came), ``error``
        what ended it (None: a success)."""
        duration = time.perf_counter() - self._started
        context.detach(self._token)
        span = self._span
        attributes = dict(self._attributes)
        if status:
            attributes["http.response.status_code"] = status
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            error_type = _error_type(status, error)
            attributes["error.type"] = error_type
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()
        _the_process().duration.record(duration, attributes)


class ClientTelemetry:
    """One client's telemetry: the transport's attempt hook and the lookup span."""

    __slots__ = ("_attributes", "_process")

    def __init__(
        self, owner: object, *, base_url: str, cache: GroupCache, limiter: RateLimiter
    ) -> None:
        process = self._process = _the_process()
        url = URL(base_url)
        # The attributes every attempt and duration measurement of this client carries.
        self._attributes: dict[str, str | int] = {
            "http.request.method": _METHOD,
            "server.address": url.host or "",
            "server.port": url.port or 0,
        }
        process.registry.add(owner, cache, limiter)

    def attempt(self, url: str, attempt: int) -> Attempt:
        """The transport's hook: an attempt (0: the first send) to ``url`` starts now."""
        attributes = self._attributes
        span_attributes: dict[str, str | int] = {**attributes, "url.full": url}
        if attempt:
            span_attributes["http.request.resend_count"] = attempt
        span = self._process.tracer.start_span(
            _METHOD, kind=SpanKind.CLIENT, attributes=span_attributes
        )
        return Attempt(span, attributes)

    async def lookup(self, key: str, coalesced: bool, load: Awaitable[L]) -> L:
        """Await ``load`` (the lookup of ``key`` that has to fetch, or joins a fetch)
        inside a ``fanfare.lookup`` span."""
        span = self._process.tracer.start_span(
            "fanfare.lookup",
            attributes={"fanfare.group_id": key, "fanfare.coalesced": coalesced},
        )
        token = context.attach(trace.set_span_in_context(span))
        stale = False
        try:
            loaded = await load
            stale = loaded.stale
        except BaseException as exc:
            error_type = type(exc).__qualname__
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
            raise
        finally:
            context.detach(token)
            span.set_attribute("fanfare.stale", stale)
            span.end()
        return loaded
