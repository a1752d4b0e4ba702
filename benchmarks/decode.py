"""Benchmark 1: decoding a response body, typed and untyped."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from fanfare_async import decode_group_audiences

from ._altmodels import PYDANTIC_GROUP, dataclass_group
from ._common import Section, Sizes, Target, median_ratio, rotated
from ._payloads import large_body, typical_body

OURS = "fanfare_async decode_group_audiences"
PYDANTIC = "pydantic v2 TypeAdapter.validate_json"
DATACLASSES = "json.loads + dataclasses"
ORJSON = "orjson.loads (untyped)"
MSGSPEC = "msgspec.json.decode (untyped)"

_UNTYPED = msgspec.json.Decoder()

DECODERS: dict[str, Callable[[bytes], Any]] = {
    OURS: decode_group_audiences,
    PYDANTIC: PYDANTIC_GROUP.validate_json,
    DATACLASSES: lambda body: dataclass_group(json.loads(body)),
    ORJSON: orjson.loads,
    MSGSPEC: _UNTYPED.decode,
}
UNIT = "µs/decode"


def _time_per_call(decode: Callable[[bytes], Any], body: bytes, number: int) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(number):
        decode(body)
    return (time.perf_counter_ns() - start) / number / 1e3


def _calibrate(decode: Callable[[bytes], Any], body: bytes, seconds: float) -> int:
    """Calls needed for a measurement of about ``seconds``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            decode(body)
        took = time.perf_counter() - start
        if took >= seconds / 5:
            return max(1, round(number * seconds / took))
        number *= 4


def run(sizes: Sizes) -> Section:
    section = Section("decode")
    payloads = {
        f"typical ({len(typical_body()) // 1000} KB, 8 audiences)": typical_body(),
        f"large ({len(large_body()) // 1000} KB, 100 audiences)": large_body(),
    }
    for case, body in payloads.items():
        # Same result for the typed decoders: all must accept the body.
        assert len(decode_group_audiences(body)) == len(PYDANTIC_GROUP.validate_json(body))
        seconds = sizes.decode_seconds
        numbers = {name: _calibrate(fn, body, seconds) for name, fn in DECODERS.items()}
        for name in DECODERS:
            section.row(case, name, UNIT, reference=OURS)
        for round_no in range(sizes.decode_rounds):
            for name in rotated(list(DECODERS), round_no):
                per_call = _time_per_call(DECODERS[name], body, numbers[name])
                section.find(case, name, UNIT).samples.append(per_call)
    section.pair_ratios()
    for case in payloads:
        ours = section.find(case, OURS, UNIT).samples
        pyd = median_ratio(section.find(case, PYDANTIC, UNIT).samples, ours)
        section.targets.append(
            Target(
                f"decode {case.split()[0]}: >= 4x faster than pydantic v2",
                f"{pyd:.2f}x faster",
                pyd >= 4.0,
            )
        )
        orj = median_ratio(ours, section.find(case, ORJSON, UNIT).samples)
        section.targets.append(
            Target(
                f"decode {case.split()[0]}: no slower than untyped orjson",
                f"{orj:.2f}x orjson's time",
                orj <= 1.0,
            )
        )
    section.notes.append(
        "decode: ratio = contender time / fanfare_async time in the same round (median over "
        "rounds); gc enabled, collected before each measurement."
    )
    return section
