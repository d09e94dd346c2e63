"""The label-error finder on a synthetic set with planted errors: a model that sees the true objects (slightly
off, as models are, with some low-score noise) and ground truth corrupted in each of the four ways."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from effdet.label_errors import find_label_errors

CATEGORIES = [{"id": 1, "name": "plate"}, {"id": 2, "name": "car"}]


def _scene(seed: int = 0, images: int = 30) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """True objects (two per image, random class) and a good model's detections of them, plus low-score noise."""
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for image_id in range(1, images + 1):
        for k in range(2):
            x, y = 20 + 250 * k + rng.uniform(0, 50), rng.uniform(0, 200)
            w, h = rng.uniform(60, 120), rng.uniform(40, 90)
            category = int(rng.integers(1, 3))
            truth.append({"id": len(truth) + 1, "image_id": image_id, "category_id": category, "bbox": [x, y, w, h]})
            jitter = rng.uniform(-3, 3, 4)
            box = [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]]
            found.append({"image_id": image_id, "category_id": category, "bbox": box, "score": rng.uniform(0.75, 0.97)})
        noise = [rng.uniform(0, 400), rng.uniform(0, 300), 30, 30]
        found.append({"image_id": image_id, "category_id": 1, "bbox": noise, "score": rng.uniform(0.05, 0.3)})
    return truth, found


def _document(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    images = [{"id": i, "file_name": f"{i}.jpg"} for i in range(1, 31)]
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def test_a_clean_set_gives_nothing_confident() -> None:
    truth, found = _scene()
    issues = find_label_errors(_document(truth), found)
    assert all(issue.confidence < 0.5 for issue in issues), issues[:3]


@pytest.mark.parametrize("sureness", [1.0, 0.35])
def test_each_planted_error_ranks_on_top_with_its_reason(sureness: float) -> None:
    """Also for a briefly trained model, whose correct detections score about a third as high."""
    truth, found = _scene()
    found = [{**d, "score": d["score"] * sureness} for d in found]
    deleted = truth.pop(4)  # image 3's first box: the model still finds it
    shifted = truth[10]
    shifted["bbox"] = [shifted["bbox"][0] + shifted["bbox"][2] / 2, *shifted["bbox"][1:]]
    relabelled = truth[20]
    relabelled["category_id"] = 3 - relabelled["category_id"]
    spurious = {"id": 999, "image_id": 17, "category_id": 1, "bbox": [150, 320, 50, 30]}
    truth.append(spurious)
    issues = find_label_errors(_document(truth), found)
    top = {(issue.kind, issue.annotation_id) for issue in issues[:4]}
    assert top == {
        ("missing_box", None),
        ("loose_box", shifted["id"]),
        ("wrong_class", relabelled["id"]),
        ("spurious_box", 999),
    }
    [missing] = [issue for issue in issues[:4] if issue.kind == "missing_box"]
    assert missing.image_id == deleted["image_id"]
    assert missing.detection is not None
    assert np.allclose(missing.detection.box, deleted["bbox"], atol=3)
    [wrong] = [issue for issue in issues if issue.kind == "wrong_class"]
    assert wrong.detection is not None
    assert wrong.label != wrong.detection.label
    assert f"a {wrong.detection.label}" in wrong.reason
    [loose] = [issue for issue in issues if issue.kind == "loose_box"]
    assert loose.iou is not None
    assert 0.3 <= loose.iou < 0.6
    assert all(issue.confidence < 0.5 for issue in issues[4:]), "nothing else is confident"


def test_crowd_regions_are_never_flagged() -> None:
    truth = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 1}]
    assert find_label_errors(_document(truth), []) == []


def test_a_detection_clipped_to_nothing_is_no_evidence() -> None:
    flat = {"image_id": 1, "category_id": 1, "bbox": [100.0, 40.0, 0.0, 12.0], "score": 0.9}
    assert find_label_errors(_document([]), [flat]) == []
