"""Where a training step's time goes, by ablation of the real step in one process (D0 512, batch 4 default).

Usage: .venv/bin/python -m bench.train_breakdown [--model d0] [--image-size 512] [--batch-size 4] [--steps 12]
Builds the training state as effdet.train does on the raccoon records and times, after two warm-up steps each:
the real step fed by the live tf.data pipeline (what training runs), the same step on one batch held in memory
(no input work), that step without the weight-averaging update, and the input pipeline alone. The differences
are what surrounds the network; a sampling profiler cannot split it (py-spy sees only the Python thread, which
waits in the step). Prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from bench.common import QUICK, RACCOON, emit
from effdet import train as training
from effdet.config import Config
from effdet.data.convert import convert_dataset
from effdet.train import TrainOptions
from effdet.workflow import Records, resolve_config

Batch = dict[str, tf.Tensor]


def images_per_sec(step: training.TrainStep, feed: Callable[[], Batch], steps: int, batch_size: int) -> float:
    """Training images/s of `steps` steps after two warm-ups, reading the losses back every step as training does."""
    for _ in range(2):
        [t.numpy() for t in step(feed())]
    start = time.perf_counter()
    for _ in range(steps):
        [float(t) for t in step(feed())]
    return round(steps * batch_size / (time.perf_counter() - start), 2)


def step_arguments(description: str, steps: int) -> argparse.Namespace:
    """The command line of a benchmark of one training step: model, input size, batch and steps timed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="d0")
    parser.add_argument("--image-size", type=int, default=128 if QUICK else 512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2 if QUICK else steps)
    return parser.parse_args()


@dataclass
class StepSetup:
    """The training state effdet.train builds, on the raccoon records converted into a scratch folder."""

    config: Config
    state: training._TrainState
    strategy: tf.distribute.Strategy
    batches: Iterator[Batch]


def build_training(args: argparse.Namespace, scratch: Path) -> StepSetup:
    """Convert raccoon into `scratch` and build the training state and input as effdet.train does."""
    report = convert_dataset(RACCOON, scratch / "data", format="csv")
    records = Records(scratch / "data")
    config = resolve_config(f"efficientdet-{args.model}", report, {"image_size": args.image_size})
    options = TrainOptions(batch_size=args.batch_size, num_steps=1000)
    strategy = training._strategy(config)
    plan = training._plan(config, records.train_files, options)
    state = training._build_state(config, plan.schedule, False, strategy)
    batches = training._training_batches(records.train_files, config, options, 0, strategy)
    return StepSetup(config, state, strategy, batches)


def main() -> None:
    args = step_arguments(__doc__.split("\n", 1)[0], steps=12)
    with tempfile.TemporaryDirectory() as scratch:
        setup = build_training(args, Path(scratch))
        config, state, strategy, batches = setup.config, setup.state, setup.strategy, setup.batches
        fixed = next(batches)
        setting = {"model": config.model.name, "image_size": args.image_size, "batch_size": args.batch_size}

        def measure(variant: str, step: training.TrainStep, feed: Callable[[], Batch]) -> None:
            emit(
                "train_breakdown",
                **setting,
                variant=variant,
                images_per_sec=images_per_sec(step, feed, args.steps, args.batch_size),
            )

        step = training._train_step_function(state, config, strategy, False, state.trainable)
        measure("real step, live input pipeline", step, lambda: next(batches))
        measure("real step, one batch in memory", step, lambda: fixed)
        update = state.ema.update
        state.ema.update = lambda: None  # type: ignore[method-assign]
        bare = training._train_step_function(state, config, strategy, False, state.trainable)
        state.ema.update = update  # type: ignore[method-assign]
        measure("without weight averaging, one batch in memory", bare, lambda: fixed)
        start = time.perf_counter()
        for _ in range(2 * args.steps):
            next(batches)
        rate = round(2 * args.steps * args.batch_size / (time.perf_counter() - start), 2)
        emit("train_breakdown", **setting, variant="input pipeline alone", images_per_sec=rate)


if __name__ == "__main__":
    main()
