"""Run every benchmark, each in its own process, keep their JSON lines and write the markdown report (`make bench`).

Usage: .venv/bin/python -m bench.run_all [--quick] [--output var/bench] [--only predict_load,job_memory]
--quick (or BENCH_QUICK=1) gives each benchmark its smoke-run defaults: everything in a few minutes, to check
that the benchmarks still run (the figures are not results). Writes OUTPUT/results.jsonl and OUTPUT/report.md
and prints the report; a benchmark that fails is named at the end and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.common import REPO
from bench.report import read_results, render

BENCHMARKS = (
    "data_throughput",
    "convert_speed",
    "train_throughput",
    "export_latency",
    "predict_load",
    "soak",
    "store_throughput",
    "store_cold_start",
    "formats",
    "job_memory",
    "learning_synthetic",
    "learning_segmentation",
    "transfer_raccoon",
    "transfer_raccoon_api",
    "dataset_rows",
    "label_errors",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    parser.add_argument("--output", type=Path, default=REPO / "var" / "bench")
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else BENCHMARKS
    args.output.mkdir(parents=True, exist_ok=True)
    results_file = args.output / "results.jsonl"
    env = {**os.environ, "BENCH_QUICK": "1" if args.quick else "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    failed = []
    with results_file.open("w") as results:
        for name in names:
            print(f"== bench.{name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
            process = subprocess.Popen(
                [sys.executable, "-m", f"bench.{name}"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
            )
            assert process.stdout is not None
            for line in process.stdout:
                print(line, end="", file=sys.stderr, flush=True)
                if read_results([line]):
                    results.write(line)
                    results.flush()
            if process.wait() != 0:
                failed.append(name)
    report = render(read_results(results_file.read_text().splitlines()))
    (args.output / "report.md").write_text(report)
    print(report, end="")
    print(f"written: {results_file}, {args.output / 'report.md'}", file=sys.stderr)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
