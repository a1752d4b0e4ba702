"""One process of the OpenTelemetry benchmark (run by benchmarks/otel.py).

    python -m benchmarks._otelload MODE --url URL --key KEY --seed S --count N [--cpu C]

MODE: ``absent`` (opentelemetry made unimportable before fanfare_async loads),
``api`` (opentelemetry-api only: the global no-op providers), ``sdk`` (a
TracerProvider with a BatchSpanProcessor and a discarding exporter, and a
MeterProvider with an InMemoryMetricReader). Times N cold lookups (64 workers
awaiting get_group_audiences, default cache) and then N x 20 hits of the same
groups, and prints client CPU of each part as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.abc
import json
import resource
import sys
from collections.abc import Sequence
from typing import Any

from fanfare_async._fake_data import group_ids

from ._common import pin

HIT_FACTOR = 20
CONCURRENCY = 64


class _NoOpenTelemetry(importlib.abc.MetaPathFinder):
    """Makes ``import opentelemetry`` fail, as without the otel extra."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"{name} is blocked for this benchmark")
        return


def _sdk() -> Any:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer = TracerProvider()
    tracer.add_span_processor(BatchSpanProcessor(Discard()))
    trace.set_tracer_provider(tracer)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return tracer


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _pool(ids: list[str], one: Any) -> None:
    feed = iter(ids)

    async def worker() -> None:
        for gid in feed:
            await one(gid)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from fanfare_async import FanfareClient

    ids = group_ids(args.seed, args.count)
    async with FanfareClient(args.key, base_url=args.url, rate_limit=None) as client:
        telemetry = client._telemetry is not None
        cpu = _cpu()
        await _pool(ids, client.get_group_audiences)
        cold = _cpu() - cpu
        hits = ids * HIT_FACTOR
        cpu = _cpu()
        for gid in hits:
            await client.get_group_audiences(gid)
        hit = _cpu() - cpu
        misses = client.cache_stats.misses
    return {
        "cold_us": cold / len(ids) * 1e6,
        "hit_ns": hit / len(hits) * 1e9,
        "telemetry": telemetry,
        "misses": misses,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("absent", "api", "sdk"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--cpu", type=int, default=None)
    options = parser.parse_args()
    pin(options.cpu)
    if options.mode == "absent":
        sys.meta_path.insert(0, _NoOpenTelemetry())
    provider = _sdk() if options.mode == "sdk" else None
    report = asyncio.run(main(options))
    if provider is not None:
        provider.shutdown()
    print(json.dumps(report))
