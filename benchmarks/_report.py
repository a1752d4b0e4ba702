"""The markdown table, the targets section and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import Row, Section


def _num(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if 0 < magnitude < 0.005:  # a net count of a few objects over the whole run, say
        return "0.00"
    return f"{value:.3g}"


def _ratio(row: Row) -> str:
    if row.reference is None:
        return ""
    if row.contender == row.reference:
        return "1.00x (ref)"
    ratio = row.ratio
    if ratio is None:
        return ""
    return f"{0.0 if abs(ratio) < 0.005 else ratio:.2f}x"  # no "-0.00x"


def machine_line(info: dict[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    return (
        f"Machine: {info['cores']} cores ({info['cpu']}), {info['python']}, {info['platform']}; "
        f"event loops: {', '.join(info['event_loops'])}; load average at start: "
        f"{info['loadavg_at_start']}; fanfare_async source {info['fanfare_async_source']}; "
        f"packages: {packages}"
    )


def markdown(sections: Sequence[Section], info: dict[str, Any], mode: str) -> str:
    lines = [
        f"## fanfare_async benchmarks ({mode})",
        "",
        machine_line(info),
        "",
        "| benchmark | case | contender | metric | median | min-max | rounds | ratio vs ref |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for section in sections:
        for row in section.rows:
            spread = f"{_num(min(row.samples))}-{_num(max(row.samples))}" if row.samples else ""
            median = _num(row.median) if row.samples else "n/a"
            lines.append(
                f"| {section.name} | {row.case} | {row.contender} | {row.unit} | {median} "
                f"| {spread} | {len(row.samples)} | {_ratio(row)} |"
            )
    lines += ["", "Ratio: contender / reference within each round, median over rounds.", ""]
    for section in sections:
        lines += [f"- {note}" for note in section.notes]
    lines += ["", "### Targets", "", "| target | measured | status |", "|---|---|---|"]
    for section in sections:
        for target in section.targets:
            status = "met" if target.met else "**missed**"
            lines.append(f"| {target.goal} | {target.measured} | {status} |")
    return "\n".join(lines)


def write_json(
    path: Path, sections: Sequence[Section], info: dict[str, Any], mode: str, failed: list[str]
) -> None:
    data = {
        "mode": mode,
        "machine": info,
        "failed": failed,
        "sections": [
            {
                "name": section.name,
                "rows": [
                    {
                        "case": row.case,
                        "contender": row.contender,
                        "unit": row.unit,
                        "median": row.median if row.samples else None,
                        "min": min(row.samples) if row.samples else None,
                        "max": max(row.samples) if row.samples else None,
                        "samples": row.samples,
                        "reference": row.reference,
                        "ratio": row.ratio,
                        "ratios": row.ratios,
                    }
                    for row in section.rows
                ],
                "notes": section.notes,
            }
            for section in sections
        ],
        "targets": [
            {"benchmark": s.name, "goal": t.goal, "measured": t.measured, "met": t.met}
            for s in sections
            for t in s.targets
        ],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
