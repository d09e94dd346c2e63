"""Where a training step's CPU time goes, by TensorFlow op type, from TensorFlow's own profiler.

Usage: .venv/bin/python -m bench.train_profile [--model d0] [--image-size 512] [--batch-size 4] [--steps 4]
Builds the real training step as effdet.train does on the raccoon records (one batch held in memory), runs two
warm-up steps, then traces `--steps` steps with tf.profiler and sums each op type's self time over them. Prints
one JSON line per op type (ms per step, share of the traced CPU time), largest first, then the total. The
trace is read with the profiler plugin's converter that TensorBoard uses (a private TensorFlow module). Set
TF_ENABLE_ONEDNN_OPTS=1 or 0 to profile oneDNN's kernels or TensorFlow's Eigen ones where TensorFlow would choose
the other.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import tensorflow as tf
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_plugin

from bench.common import emit
from bench.train_breakdown import build_training, step_arguments
from effdet import train as training

SHOWN = 16
"""Op types listed one by one; the rest are summed."""


def op_self_times(trace_dir: Path) -> dict[str, float]:
    """Microseconds of self time per op type over the trace in `trace_dir` (idle time left out)."""
    trace = sorted(trace_dir.rglob("*.xplane.pb"))[-1]
    data, ok = profiler_plugin.xspace_to_tools_data([str(trace)], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler could not read {trace}: {data!r}")
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    kind, self_time = columns.index("type"), columns.index("total_self_time")
    totals: dict[str, float] = {}
    for row in table["rows"]:
        cells = [cell.get("v") for cell in row["c"]]
        if cells[kind] != "IDLE":
            totals[str(cells[kind])] = totals.get(str(cells[kind]), 0.0) + float(cells[self_time])
    return totals


def main() -> None:
    args = step_arguments(__doc__.split("\n", 1)[0], steps=4)
    with tempfile.TemporaryDirectory() as scratch:
        setup = build_training(args, Path(scratch))
        config, state, strategy = setup.config, setup.state, setup.strategy
        batch = next(setup.batches)
        step = training._train_step_function(state, config, strategy, False, state.trainable)
        for _ in range(2):
            [t.numpy() for t in step(batch)]
        trace_dir = Path(scratch) / "trace"
        tf.profiler.experimental.start(str(trace_dir))
        for _ in range(args.steps):
            [t.numpy() for t in step(batch)]
        tf.profiler.experimental.stop()
        totals = op_self_times(trace_dir)
    setting = {"model": config.model.name, "image_size": args.image_size, "batch_size": args.batch_size}
    everything = sum(totals.values())
    shown = sorted(totals.items(), key=lambda item: -item[1])[:SHOWN]
    rest = everything - sum(us for _, us in shown)
    for op, us in [*shown, ("(other op types)", rest)]:
        share = round(us / everything, 3)
        emit("train_profile", **setting, op=op, ms_per_step=round(us / args.steps / 1e3, 1), share=share)
    emit("train_profile", **setting, op="(all)", ms_per_step=round(everything / args.steps / 1e3, 1), share=1.0)


if __name__ == "__main__":
    main()
