"""Training images/s and peak memory per variant, input size and batch, on the shared raccoon dataset.

Usage: .venv/bin/python -m bench.train_throughput [--models d0,d1,d2] [--sizes 256,512] [--batches 2,4]
       [--steps 8]
Each setting runs in its own process (so peak RSS is that setting's alone): build, one traced step, then
`--steps` timed steps of the real training loop (effdet.train.train). Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import QUICK, RACCOON, REPO, emit


def _one(model: str, size: int, batch: int, steps: int, records: Path) -> None:
    """Child process: time `steps` training steps after the first (traced) one."""
    from effdet.train import Progress, TrainOptions
    from effdet.workflow import Records, fine_tune, resolve_config

    data = Records(records)
    config = resolve_config(f"efficientdet-{model}", data.report(), {"image_size": size})
    marks: list[tuple[int, float]] = []

    def mark(progress: Progress) -> None:
        marks.append((progress.step, time.perf_counter()))

    with tempfile.TemporaryDirectory() as run:
        options = TrainOptions(
            batch_size=batch,
            num_steps=steps + 1,
            checkpoint_every=10**6,
            progress_interval_s=0,
            bn_recalibration_batches=0,
        )
        fine_tune(config, data, Path(run), options, on_progress=mark)
    (first, t0), (last, t1) = marks[0], marks[-1]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emit(
        "train",
        model=f"efficientdet-{model}",
        image_size=size,
        batch_size=batch,
        timed_steps=last - first,
        images_per_sec=round((last - first) * batch / (t1 - t0), 2),
        peak_rss_mb=round(peak_mb),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="d0" if QUICK else "d0,d1,d2")
    parser.add_argument("--sizes", default="128" if QUICK else "256,512")
    parser.add_argument("--batches", default="2" if QUICK else "2,4")
    parser.add_argument("--steps", type=int, default=2 if QUICK else 8)
    parser.add_argument("--dataset", type=Path, default=RACCOON)
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "SIZE", "BATCH", "RECORDS"))
    args = parser.parse_args()
    if args.child:
        model, size, batch, records = args.child
        _one(model, int(size), int(batch), args.steps, Path(records))
        return
    from effdet.data.convert import convert_dataset

    with tempfile.TemporaryDirectory() as scratch:
        records = Path(scratch) / "records"
        convert_dataset(args.dataset, records, val_fraction=0.1)
        for model in args.models.split(","):
            for size in args.sizes.split(","):
                for batch in args.batches.split(","):
                    command = [sys.executable, "-m", "bench.train_throughput", "--steps", str(args.steps), "--child"]
                    subprocess.run([*command, model, size, batch, str(records)], check=True, cwd=REPO)


if __name__ == "__main__":
    main()
