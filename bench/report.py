"""Collect benchmark JSON lines into one markdown report: the machine and versions, then a table per benchmark.

Usage: .venv/bin/python -m bench.report RESULTS.jsonl [MORE.jsonl ...] [--output report.md]
Lines that are not JSON objects with a "bench" key (library warnings, progress) are skipped. Nested figures
are flattened (`rest.p50_ms`); every field a benchmark prints becomes a column, so the report never lags
behind the benchmarks.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MACHINE_KEYS = ("cpu", "cpus", "python", "tensorflow")
"""Fields that describe the machine, shown once above the tables rather than in every row."""


def read_results(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The result objects among the lines, in order."""
    results = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "bench" in record:
            results.append(record)
    return results


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)


def table(records: list[dict[str, Any]]) -> str:
    """A markdown table of records of one benchmark, a column per field (machine fields left out)."""
    rows = [_flat({k: v for k, v in r.items() if k not in (*MACHINE_KEYS, "bench")}) for r in records]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def render(results: list[dict[str, Any]]) -> str:
    """The whole report: machine and versions (every distinct value seen), then one section per benchmark."""
    seen = {key: sorted({str(r[key]) for r in results if key in r}) for key in MACHINE_KEYS}
    header = ", ".join(f"{key} {' / '.join(values)}" for key, values in seen.items() if values)
    out = [
        "# Benchmark report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}: {header or 'no results'}.",
        "`loadavg_1m` is the machine's load when the line was printed (figures on a busy machine are noisy).",
    ]
    for bench in dict.fromkeys(r["bench"] for r in results):
        out += ["", f"## {bench}", "", table([r for r in results if r["bench"] == bench])]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args()
    results = [r for path in args.results for r in read_results(path.read_text().splitlines())]
    report = render(results)
    print(report, end="")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)


if __name__ == "__main__":
    main()
