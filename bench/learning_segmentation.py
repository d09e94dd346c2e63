"""Learning to segment: EfficientDet-D0 from scratch on synthetic plates with masks; mIoU, plate IoU, pixel accuracy
(and AP with both heads) after a fixed step budget, against the same model untrained.

Usage: .venv/bin/python -m bench.learning_segmentation [--heads segmentation | --heads object_detection,segmentation]
       [--image-size 128] [--steps 600] [--num-images 400]
The plates' masks are COCO polygons (`effdet synth --masks`), converted by effdet.data.convert like an upload;
the recipe is bench/learning_synthetic.py's (Adam, lr 0.016, jitter 0.8-1.2, batch 8). The untrained model is
scored on the same val split. Prints one JSON line with machine, versions, settings and the metrics of the
exported weights.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import keras

from bench.common import emit
from bench.fit import FROM_SCRATCH, add_synthetic_arguments, segmentation_figures, train_and_evaluate
from effdet.data.convert import convert_dataset
from effdet.data.synthetic import write_dataset
from effdet.model.efficientdet import build_model
from effdet.seg_evaluate import evaluate_segmentation
from effdet.train import TrainOptions
from effdet.workflow import Records, resolve_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heads", default="segmentation", help="comma-separated: segmentation, object_detection")
    add_synthetic_arguments(parser)
    args = parser.parse_args()
    recipe = {
        "heads": args.heads.split(","),
        "image_size": args.image_size,
        **FROM_SCRATCH,
    }
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_dataset(root / "raw", args.num_images, "coco", seed=11, masks=True)
        report = convert_dataset(root / "raw", root / "data", val_fraction=0.15)
        config = resolve_config("efficientdet-d0", report, recipe)
        val_files = Records(root / "data").val_files
        if val_files is None:
            raise ValueError(f"{args.num_images} images left no val split to score on; use more --num-images")
        untrained = segmentation_figures(evaluate_segmentation(build_model(config), config, val_files))
        options = TrainOptions(batch_size=args.batch_size, num_steps=args.steps, checkpoint_every=10**6)
        figures = train_and_evaluate(config, root / "data", root / "run", options)
    emit(
        "learning_segmentation",
        model="efficientdet-d0",
        **recipe,
        seg_num_classes=config.model.seg_num_classes,
        images=args.num_images,
        batch_size=args.batch_size,
        untrained=untrained,
        **figures,
    )


if __name__ == "__main__":
    main()
