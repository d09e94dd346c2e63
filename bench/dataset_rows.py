"""What the dataset advice buys: each row the default job against the improved flow at the same budget.

Usage: .venv/bin/python -m bench.dataset_rows [--row classes|anchors|tiles ...] [--minutes 5] [--steps 150]
           [--pth FILE]
- classes: raccoon (its own CSV split, 156 train / 40 val) with every tenth box spelled "racoon": the two classes
  as uploaded, against the class_aliases that the similar_class_names warning proposes.
- anchors: synthetic plates with faces 3.5-4.5 times wider than tall: default anchors against
  `aspect_ratios: auto` and `anchor_scale: auto`.
- tiles: 2400x1600 synthetic scenes with plates 40-100 px wide: the whole image at Lite0's 320 against
  `tiles: 640`.
Every run is EfficientDet-Lite0 at 320 from the ImageNet backbone (PyPI's .pth, converted), batch 8, the same
planned steps and wall-clock budget, scored by COCO AP on its val split. One JSON line per run.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import QUICK, RACCOON, emit
from bench.fit import train_and_evaluate
from bench.transfer_raccoon import backbone_pth
from effdet.data.convert import ConversionReport, convert_dataset
from effdet.data.similar_names import SIMILAR_CLASS_NAMES
from effdet.data.synthetic import write_dataset
from effdet.torch_import import import_backbone
from effdet.train import TrainOptions
from effdet.workflow import resolve_config

MODEL = "efficientdet-lite0"
ROWS = ("classes", "anchors", "tiles")


def misspelled_raccoon(target: Path) -> Path:
    """The raccoon set (images and its CSV split) with every tenth box of each CSV named 'racoon'."""
    shutil.copytree(RACCOON / "images", target / "images")
    (target / "csv").mkdir(parents=True)
    for table in sorted((RACCOON / "csv").glob("*.csv")):
        with table.open(newline="") as source:
            rows = list(csv.DictReader(source))
        for index, row in enumerate(rows):
            if index % 10 == 9:
                row["class"] = "racoon"
        with (target / "csv" / table.name).open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return target


def suggested_aliases(report: ConversionReport) -> dict[str, str]:
    """The class_aliases of the report's similar_class_names warning."""
    for problem in report.problems:
        if problem.code == SIMILAR_CLASS_NAMES and problem.class_aliases:
            return dict(problem.class_aliases)
    raise ValueError("the conversion gave no similar_class_names warning to follow")


def _pairs(row: str, root: Path) -> list[tuple[str, Path, dict[str, Any], dict[str, Any]]]:
    """(variant name, source folder, conversion arguments, hparams) of the default and the improved run."""
    if row == "classes":
        source = misspelled_raccoon(root / "raccoon")
        aliases = suggested_aliases(convert_dataset(source, root / "probe", format="csv"))
        csv_split = {"format": "csv"}
        return [
            ("as uploaded", source, csv_split, {}),
            (f"merged {aliases}", source, {**csv_split, "aliases": aliases}, {}),
        ]
    voc = {"format": "voc", "val_fraction": 0.2}
    if row == "anchors":
        count = 60 if QUICK else 400
        source = write_dataset(root / "wide", count, "voc", seed=21, image_size=(320, 240), plate_aspect=(3.5, 4.5))
        auto = {"aspect_ratios": "auto", "anchor_scale": "auto"}
        return [("default anchors", source, voc, {}), ("auto anchors", source, voc, auto)]
    size, widths = (2400, 1600), (40, 100)
    source = write_dataset(root / "large", 30 if QUICK else 150, "voc", seed=22, image_size=size, plate_width=widths)
    return [("whole image", source, voc, {}), ("tiles 640", source, voc, {"tiles": 640})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--row", choices=ROWS, action="append", help="the rows to run (default: all)")
    parser.add_argument("--minutes", type=float, default=1 if QUICK else 5)
    parser.add_argument("--steps", type=int, default=10 if QUICK else 150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pth", type=Path, help="the backbone .pth (default: download it from PyPI)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        import_backbone(args.pth or backbone_pth(MODEL, root / "pth"), MODEL, root / "backbone")
        for row in args.row or ROWS:
            for index, (variant, source, conversion, hparams) in enumerate(_pairs(row, root / row)):
                data = root / row / f"data-{index}"
                report = convert_dataset(source, data, **conversion)
                config = resolve_config(MODEL, report, hparams)
                options = TrainOptions(
                    batch_size=args.batch_size,
                    num_steps=args.steps,
                    max_train_seconds=args.minutes * 60,
                    pretrained=root / "backbone",
                    checkpoint_every=10**6,
                )
                figures = train_and_evaluate(config, data, root / row / f"run-{index}", options)
                emit(
                    "dataset_rows",
                    row=row,
                    variant=variant,
                    model=MODEL,
                    hparams=hparams,
                    classes=len(report.label_map),
                    train_images=report.splits["train"].images,
                    val_images=report.splits["val"].images,
                    planned_steps=args.steps,
                    minutes_budget=args.minutes,
                    batch_size=args.batch_size,
                    **figures,
                )


if __name__ == "__main__":
    main()
