"""What a detector gets right and wrong at one score threshold: per-class true positives, false positives and
misses, and a confusion matrix with a background row and column.

COCO AP ranks detections over every threshold; a user deploying at one threshold asks a different question: of
my boxes, how many are found, and what are the false alarms. Detections at or above the threshold are matched
to ground truth per image at IoU >= iou_threshold, first to boxes of their own class (highest score first,
each taking the free box it overlaps most, as COCO matches), then the rest to boxes of any other class (a
class confusion). A detection left over is a false alarm on background, unless it lies on a crowd region,
which is ignored as COCO ignores it; a box left over is a miss. Inputs are COCO documents: ground truth
`{"images", "annotations", "categories"}` and results `[{"image_id", "category_id", "bbox", "score"}]`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

BACKGROUND = "background"


class ClassCounts(BaseModel):
    """One class at the threshold: detections that found a box of it, detections that did not, boxes not found."""

    true_positives: int
    false_positives: int = Field(description="detections of this class on background or on another class's box")
    misses: int = Field(description="boxes of this class no detection of it found")
    precision: float | None = Field(description="None without detections of this class")
    recall: float | None = Field(description="None without boxes of this class")


class Confusion(BaseModel):
    """Detections matched to ground truth at one score and IoU threshold."""

    score_threshold: float
    iou_threshold: float
    labels: list[str] = Field(description="the rows' and columns' classes, 'background' last")
    matrix: list[list[int]] = Field(
        description="[true class][detected class]: row 'background' holds the false alarms on background, column "
        "'background' the misses"
    )
    per_class: dict[str, ClassCounts]
    image_errors: dict[int, int] = Field(description="per image id: its false positives plus misses")


def overlaps(detections: np.ndarray, boxes: np.ndarray, crowd: bool = False) -> np.ndarray:
    """IoU [detections, boxes] of xywh boxes; against a crowd region, the share of the detection inside it."""
    if not len(detections) or not len(boxes):
        return np.zeros((len(detections), len(boxes)))
    d0, b0 = detections[:, None, :2], boxes[None, :, :2]
    d1, b1 = d0 + detections[:, None, 2:], b0 + boxes[None, :, 2:]
    sides = np.clip(np.minimum(d1, b1) - np.maximum(d0, b0), 0, None)
    inter = sides[..., 0] * sides[..., 1]
    area_d = detections[:, 2] * detections[:, 3]
    area_b = boxes[:, 2] * boxes[:, 3]
    union = area_d[:, None] if crowd else area_d[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match(
    ious: np.ndarray, allowed: np.ndarray, taken_detections: np.ndarray, taken_boxes: np.ndarray, threshold: float
) -> list[tuple[int, int]]:
    """Greedy matching, detections in row order (highest score first): each free detection takes the free
    allowed box it overlaps most, at `threshold` or more. Marks what it matches as taken."""
    pairs = []
    for row in range(ious.shape[0]):
        if taken_detections[row]:
            continue
        candidates = np.where(allowed[row] & ~taken_boxes & (ious[row] >= threshold), ious[row], -1.0)
        if candidates.size and candidates.max() >= 0:
            column = int(candidates.argmax())
            taken_detections[row], taken_boxes[column] = True, True
            pairs.append((row, column))
    return pairs


def confusion_matrix(
    ground_truth: dict[str, Any],
    detections: list[dict[str, Any]],
    score_threshold: float,
    iou_threshold: float = 0.5,
) -> Confusion:
    """Match the detections at or above `score_threshold` to the ground truth (see the module docstring);
    detections of a category the ground truth does not have are left out."""
    categories = sorted(ground_truth.get("categories", []), key=lambda c: int(c["id"]))
    index = {int(c["id"]): i for i, c in enumerate(categories)}
    labels = [str(c.get("name", c["id"])) for c in categories] + [BACKGROUND]
    background = len(categories)
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    boxes_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for annotation in ground_truth.get("annotations", []):
        boxes_of[int(annotation["image_id"])].append(annotation)
    found_in: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for detection in detections:
        if float(detection["score"]) >= score_threshold and int(detection["category_id"]) in index:
            found_in[int(detection["image_id"])].append(detection)
    image_errors: dict[int, int] = {}
    for image in ground_truth.get("images", []):
        image_id = int(image["id"])
        annotations = boxes_of.get(image_id, [])
        crowd = [a for a in annotations if a.get("iscrowd")]
        truth = [a for a in annotations if not a.get("iscrowd")]
        found = sorted(found_in.get(image_id, []), key=lambda d: -float(d["score"]))
        truth_class = np.array([index[int(a["category_id"])] for a in truth], dtype=np.int64)
        found_class = np.array([index[int(d["category_id"])] for d in found], dtype=np.int64)
        found_boxes = np.array([d["bbox"] for d in found], dtype=np.float64).reshape(-1, 4)
        iou = overlaps(found_boxes, np.array([a["bbox"] for a in truth], dtype=np.float64).reshape(-1, 4))
        taken_found, taken_truth = np.zeros(len(found), bool), np.zeros(len(truth), bool)
        same = found_class[:, None] == truth_class[None, :]
        pairs = _match(iou, same, taken_found, taken_truth, iou_threshold)
        pairs += _match(iou, ~same, taken_found, taken_truth, iou_threshold)
        for row, column in pairs:
            matrix[truth_class[column], found_class[row]] += 1
        on_crowd = overlaps(found_boxes, np.array([a["bbox"] for a in crowd], dtype=np.float64).reshape(-1, 4), True)
        ignored = (on_crowd >= iou_threshold).any(axis=1) if crowd else np.zeros(len(found), bool)
        alarms = found_class[~taken_found & ~ignored]
        matrix[background] += np.bincount(alarms, minlength=len(labels))
        matrix[:, background] += np.bincount(truth_class[~taken_truth], minlength=len(labels))
        confused = sum(int(truth_class[column] != found_class[row]) for row, column in pairs)
        image_errors[image_id] = int(len(alarms) + (~taken_truth).sum()) + confused
    per_class = {}
    for k, name in enumerate(labels[:-1]):
        hits, detected, boxes = int(matrix[k, k]), int(matrix[:, k].sum()), int(matrix[k, :].sum())
        per_class[name] = ClassCounts(
            true_positives=hits,
            false_positives=detected - hits,
            misses=boxes - hits,
            precision=hits / detected if detected else None,
            recall=hits / boxes if boxes else None,
        )
    return Confusion(
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        labels=labels,
        matrix=matrix.tolist(),
        per_class=per_class,
        image_errors=image_errors,
    )


def worst_images(
    truth: dict[str, Any],
    detections: list[dict[str, Any]],
    errors: dict[int, int],
    gallery: dict[str, str],
    threshold: float,
) -> list[dict[str, Any]]:
    """Every image with its boxes and its detections at the threshold, most errors first (then by name)."""
    names = {int(c["id"]): str(c["name"]) for c in truth["categories"]}
    boxes: dict[int, list[dict[str, Any]]] = {}
    for a in truth["annotations"]:
        boxes.setdefault(int(a["image_id"]), []).append({"label": names[int(a["category_id"])], "box": a["bbox"]})
    found: dict[int, list[dict[str, Any]]] = {}
    for d in detections:
        if d["score"] >= threshold:
            entry = {"label": names[int(d["category_id"])], "box": d["bbox"], "score": round(float(d["score"]), 4)}
            found.setdefault(int(d["image_id"]), []).append(entry)
    images = [
        {
            "image_id": int(image["id"]),
            "file_name": image["file_name"],
            "gallery_id": gallery.get(image["file_name"]),
            "width": image["width"],
            "height": image["height"],
            "errors": errors.get(int(image["id"]), 0),
            "boxes": boxes.get(int(image["id"]), []),
            "detections": found.get(int(image["id"]), []),
        }
        for image in truth["images"]
    ]
    return sorted(images, key=lambda image: (-image["errors"], image["file_name"]))
