"""``python -m benchmarks [--quick] [--only NAME] [--json PATH]``."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import (
    budget,
    cache,
    decode,
    e2e,
    fanout,
    instructions,
    memory,
    otel,
    ratelimit,
    ratelimit429,
    refresh,
    shared,
    soak,
    stalls,
)
from ._common import FULL, QUICK, Section, Sizes, machine
from ._report import markdown, write_json

BENCHMARKS: dict[str, Callable[[Sizes], Section]] = {
    "decode": decode.run,
    "e2e": e2e.run,
    "instructions": instructions.run,
    "cache": cache.run,
    "memory": memory.run,
    "stalls": stalls.run,
    "fanout": fanout.run,
    "soak": soak.run,
    "ratelimit": ratelimit.run,
    "ratelimit429": ratelimit429.run,
    "shared": shared.run,
    "refresh": refresh.run,
    "budget": budget.run,
    "otel": otel.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke pass (CI)")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    mode = "quick smoke pass: figures are not meaningful" if args.quick else "full run"
    info = machine(e2e.loops())
    sections: list[Section] = []
    failed: list[str] = []
    for name in args.only or list(BENCHMARKS):
        started = time.perf_counter()
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        try:
            sections.append(BENCHMARKS[name](sizes))
        except Exception:
            traceback.print_exc()
            failed.append(name)
        took = time.perf_counter() - started
        print(f"[benchmarks] {name} done in {took:.1f} s", file=sys.stderr, flush=True)
    print(markdown(sections, info, mode))
    if failed:
        print(f"\nCRASHED: {', '.join(failed)}")
    if args.json is not None:
        write_json(args.json, sections, info, mode, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
