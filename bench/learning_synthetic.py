"""The longer learning run: EfficientDet-D0 from scratch on synthetic licence plates; AP/AP50/AP75 and minutes.

Usage: .venv/bin/python -m bench.learning_synthetic [--image-size 128] [--steps 600] [--num-images 400]
Same recipe as tests/effdet/test_learning.py (Adam, lr 0.016 x batch/64, jitter 0.8-1.2), more steps and
images. Prints one JSON line with machine, versions, settings and the metrics of the exported weights.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import emit
from bench.fit import FROM_SCRATCH, add_synthetic_arguments, train_and_evaluate
from effdet.data.convert import convert_dataset
from effdet.data.synthetic import write_dataset
from effdet.train import TrainOptions
from effdet.workflow import resolve_config


def main() -> None:
    parser = argparse.ArgumentParser()
    add_synthetic_arguments(parser)
    args = parser.parse_args()
    recipe = {
        "image_size": args.image_size,
        **FROM_SCRATCH,
    }
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_dataset(root / "raw", args.num_images, "voc", seed=11)
        report = convert_dataset(root / "raw", root / "data", val_fraction=0.15)
        config = resolve_config("efficientdet-d0", report, recipe)
        options = TrainOptions(batch_size=args.batch_size, num_steps=args.steps, checkpoint_every=10**6)
        figures = train_and_evaluate(config, root / "data", root / "run", options)
    emit(
        "learning_synthetic",
        model="efficientdet-d0",
        **recipe,
        images=args.num_images,
        batch_size=args.batch_size,
        **figures,
    )


if __name__ == "__main__":
    main()
