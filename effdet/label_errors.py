"""Rank a dataset's annotations by how likely they are wrong, from a trained model's detections on its images.

Four reasons, each with the evidence a person needs to judge it:
- missing_box: a confident detection that no box of any class overlaps (the object was not labelled);
- spurious_box: a box no detection of any class comes near (nothing there, or the box is far off its object);
- wrong_class: a box a confident detection of another class covers, and no confident detection of its own class;
- loose_box: a box whose best confident detection of its class overlaps it only partly (IoU 0.3-0.6).
The model's scores are read against how sure it is of real objects: its typical score, the median score of its
best detection of each box it finds (IoU >= 0.5, same class). A detection's evidence is its score over the typical
one (capped at 1), so a model trained briefly, whose correct detections score 0.3, still testifies; evidence of at
least 0.5 makes a detection sure. Each finding has a confidence in [0, 1] to rank by: the evidence for a missing
box or a wrong class, the evidence discounted by the overlap for a loose box (a half-box shift ranks above a near
miss), and one minus the evidence of anything near it for a spurious box. Inputs are COCO documents as in
effdet.confusion.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from effdet.confusion import overlaps

IssueKind = Literal["missing_box", "spurious_box", "wrong_class", "loose_box"]

CONFIDENT = 0.5
"""Evidence (score over the typical score) from which a detection is sure, and the confidence from which a finding
is worth a look."""
MIN_TYPICAL = 0.05
"""The least typical score: below it the model finds nothing reliably, and scores are read as they are."""
COVERED = 0.5
"""IoU at which a detection covers a box (same object)."""
TIGHT = 0.6
"""IoU from which a same-class detection agrees with the box."""
LOOSE = 0.3
"""IoU from which a detection is on the box's object at all (below: elsewhere)."""
NEAR = 0.1
"""IoU from which a detection counts as near a box, for a spurious box's confidence."""


class Detected(BaseModel):
    """The detection a finding rests on."""

    label: str
    box: list[float] = Field(description="[x, y, width, height] in original pixels")
    score: float


class LabelIssue(BaseModel):
    """One annotation (or missing one) that is likely wrong, why, and what the model saw there."""

    kind: IssueKind
    confidence: float
    image_id: int
    file_name: str
    annotation_id: int | None = Field(None, description="the ground truth annotation's id (none for a missing box)")
    label: str | None = Field(None, description="the annotated class")
    box: list[float] | None = Field(None, description="the annotated [x, y, width, height]")
    detection: Detected | None = None
    iou: float | None = Field(None, description="overlap of the box and the detection")
    reason: str


def _names(ground_truth: dict[str, Any]) -> dict[int, str]:
    return {int(c["id"]): str(c.get("name", c["id"])) for c in ground_truth.get("categories", [])}


def typical_score(boxes_of: dict[int, list[dict[str, Any]]], found_in: dict[int, list[dict[str, Any]]]) -> float:
    """The median score of the model's best same-class detection of each box it finds at IoU >= 0.5 (the scale its
    evidence is read on); CONFIDENT when it finds none."""
    best: list[float] = []
    for image_id, truth in boxes_of.items():
        found = found_in.get(image_id, [])
        if not found or not truth:
            continue
        iou = overlaps(
            np.array([d["bbox"] for d in found], dtype=np.float64),
            np.array([a["bbox"] for a in truth], dtype=np.float64),
        )
        for column, annotation in enumerate(truth):
            scores = [
                float(d["score"])
                for row, d in enumerate(found)
                if d["category_id"] == annotation["category_id"] and iou[row, column] >= COVERED
            ]
            if scores:
                best.append(max(scores))
    return max(MIN_TYPICAL, float(np.median(best))) if best else CONFIDENT


def find_label_errors(
    ground_truth: dict[str, Any], detections: list[dict[str, Any]], typical: float | None = None
) -> list[LabelIssue]:
    """Every finding, most confident first (see the module docstring; `typical`: the model's typical score, measured
    on these detections when None); crowd regions are never flagged."""
    names = _names(ground_truth)
    boxes_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for annotation in ground_truth.get("annotations", []):
        if not annotation.get("iscrowd"):
            boxes_of[int(annotation["image_id"])].append(annotation)
    found_in: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for detection in detections:
        _, _, width, height = detection["bbox"]
        if int(detection["category_id"]) in names and width > 0 and height > 0:  # clipped to nothing: no evidence
            found_in[int(detection["image_id"])].append(detection)
    scale = typical if typical is not None else typical_score(boxes_of, found_in)
    issues: list[LabelIssue] = []
    for image in ground_truth.get("images", []):
        image_id = int(image["id"])
        issues += _image_issues(
            image_id, str(image.get("file_name", "")), boxes_of[image_id], found_in[image_id], names, scale
        )
    return sorted(issues, key=lambda issue: (-issue.confidence, -(issue.detection.score if issue.detection else 0)))


def _detected(detection: dict[str, Any], names: dict[int, str]) -> Detected:
    return Detected(
        label=names[int(detection["category_id"])],
        box=[float(v) for v in detection["bbox"]],
        score=float(detection["score"]),
    )


def _image_issues(
    image_id: int,
    file_name: str,
    truth: list[dict[str, Any]],
    found: list[dict[str, Any]],
    names: dict[int, str],
    typical: float,
) -> list[LabelIssue]:
    """The findings of one image (scores read as evidence against the typical score)."""
    iou = overlaps(
        np.array([d["bbox"] for d in found], dtype=np.float64).reshape(-1, 4),
        np.array([a["bbox"] for a in truth], dtype=np.float64).reshape(-1, 4),
    )
    scores = np.minimum(1.0, np.array([float(d["score"]) for d in found]) / typical)
    sure = scores >= CONFIDENT
    found_class = np.array([int(d["category_id"]) for d in found])
    issues = []
    lonely = sure & (iou < LOOSE).all(axis=1) if len(truth) else sure
    for index in np.flatnonzero(lonely):
        detection = _detected(found[int(index)], names)
        issues.append(
            LabelIssue(
                kind="missing_box",
                confidence=float(scores[index]),
                image_id=image_id,
                file_name=file_name,
                detection=detection,
                reason=f"the model finds a {detection.label} ({detection.score:.2f}) where no box is",
            )
        )
    for column, annotation in enumerate(truth):
        label = names.get(int(annotation["category_id"]), str(annotation["category_id"]))
        given = {
            "image_id": image_id,
            "file_name": file_name,
            "annotation_id": annotation.get("id"),
            "label": label,
            "box": [float(v) for v in annotation["bbox"]],
        }
        overlap = iou[:, column] if len(found) else np.zeros(0)
        same = sure & (found_class == int(annotation["category_id"]))
        best_same = int(np.argmax(np.where(same, overlap, -1))) if same.any() else None
        same_iou = float(overlap[best_same]) if best_same is not None else 0.0
        if same_iou >= TIGHT:
            continue
        other = sure & (found_class != int(annotation["category_id"])) & (overlap >= COVERED)
        if other.any() and same_iou < COVERED:
            row = int(np.argmax(np.where(other, scores, -1)))
            detection = _detected(found[row], names)
            reason = f"a {detection.label} ({detection.score:.2f}) covers this {label} box"
            issues.append(
                LabelIssue(
                    kind="wrong_class",
                    confidence=float(scores[row]),
                    detection=detection,
                    iou=float(overlap[row]),
                    reason=reason,
                    **given,
                )
            )
        elif best_same is not None and same_iou >= LOOSE:
            detection = _detected(found[best_same], names)
            issues.append(
                LabelIssue(
                    kind="loose_box",
                    confidence=float(scores[best_same]) * (1 - same_iou),
                    detection=detection,
                    iou=same_iou,
                    reason=f"the model's {label} ({detection.score:.2f}) overlaps this box only {same_iou:.2f}",
                    **given,
                )
            )
        else:
            close = overlap >= NEAR if len(found) else np.zeros(0, bool)
            evidence = float(scores[close].max()) if close.any() else 0.0
            nearest = max((float(found[i]["score"]) for i in np.flatnonzero(close)), default=0.0)
            issues.append(
                LabelIssue(
                    kind="spurious_box",
                    confidence=1.0 - evidence,
                    reason=f"no detection comes near this {label} box (best nearby score {nearest:.2f})",
                    **given,
                )
            )
    return issues
