"""COCO metrics on hand-made cases with known answers; a model and its exported SavedModel evaluate alike."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from effdet.config import Config
from effdet.data.pipeline import build_dataset
from effdet.evaluate import (
    Metrics,
    coco_metrics,
    evaluate_saved_model,
    model_detections,
    saved_model_detections,
    write_metrics,
)
from effdet.export import export_saved_model


def ground_truth() -> dict[str, Any]:
    """Two images with one 100x100 'a' box each (COCO 'large'); class 'b' has no box."""
    return {
        "images": [{"id": 1, "width": 300, "height": 300}, {"id": 2, "width": 300, "height": 300}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 100]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 100, 100]},
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


def test_coco_metrics_of_perfect_detections_are_one() -> None:
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 100], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 100, 100], "score": 0.8},
    ]
    metrics = coco_metrics(ground_truth(), detections)
    assert metrics.ap == pytest.approx(1.0)
    assert metrics.ap50 == metrics.ap75 == metrics.ap_large == metrics.ar100 == pytest.approx(1.0)
    assert metrics.ap_small is None  # no ground truth of that size: pycocotools' -1
    assert metrics.ap_medium is None
    assert metrics.num_images == 2
    assert metrics.per_class["a"].ap == pytest.approx(1.0)
    assert metrics.per_class["b"].ap is None
    assert metrics.per_class["b"].pr_curve == []
    curve = metrics.per_class["a"].pr_curve
    assert len(curve) == 101
    assert curve[0] == (0.0, 1.0)
    assert curve[-1] == (1.0, 1.0)


def test_coco_metrics_of_one_shifted_box_match_the_hand_computed_ap() -> None:
    # The second box moved 10 px right: IoU 9000 / 11000 = 0.818, a match at IoU 0.50..0.80 (7 thresholds)
    # and a false positive at 0.85..0.95 (3), where recall stops at 0.5 with precision 1 (51 of 101 points).
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 100], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [60, 50, 100, 100], "score": 0.8},
    ]
    metrics = coco_metrics(ground_truth(), detections)
    expected = (7 * 1.0 + 3 * 51 / 101) / 10
    assert metrics.ap == pytest.approx(expected)
    assert metrics.ap50 == pytest.approx(1.0)
    assert metrics.ap75 == pytest.approx(1.0)
    assert metrics.ar100 == pytest.approx(0.85)  # recall 1 at 7 thresholds, 0.5 at 3
    assert metrics.per_class["a"].ap == pytest.approx(expected)
    assert metrics.per_class["a"].ap50 == pytest.approx(1.0)


def test_coco_metrics_without_detections_are_zero(tmp_path: Path) -> None:
    path = tmp_path / "val_annotations.json"
    path.write_text(json.dumps(ground_truth()))
    metrics = coco_metrics(path, [])
    assert metrics.ap == metrics.ap50 == metrics.ap_large == metrics.ar100 == 0.0
    assert metrics.ap_small is None
    assert metrics.per_class["a"].ap == 0.0
    assert all(precision == 0.0 for _, precision in metrics.per_class["a"].pr_curve)


def test_coco_metrics_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    coco_metrics(ground_truth(), [{"image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 100], "score": 0.9}])
    assert capsys.readouterr().out == ""


def test_coco_metrics_reject_detections_of_unknown_images() -> None:
    with pytest.raises(ValueError, match=r"image ids \[7\]"):
        coco_metrics(ground_truth(), [{"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}])


def test_write_metrics_replaces_the_file_atomically(tmp_path: Path) -> None:
    metrics = coco_metrics(ground_truth(), [])
    path = tmp_path / "run" / "metrics.json"
    write_metrics(metrics, path)
    write_metrics(metrics, path)
    assert Metrics.model_validate_json(path.read_text()) == metrics
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def by_image_and_score(detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Detections grouped by image, best first."""
    return sorted(detections, key=lambda d: (d["image_id"], -d["score"]))


@pytest.mark.slow
def test_saved_model_evaluates_like_the_model(
    tiny_records: Path, tiny_config: Config, make_lively_model: Callable[[Config, tf.Tensor], Any], tmp_path: Path
) -> None:
    config = tiny_config
    files = str(tiny_records / "val-*.tfrecord")
    model = make_lively_model(config, next(iter(build_dataset(files, config, 4, training=False)))["images"])
    truth = tiny_records / "val_annotations.json"
    exported = export_saved_model(model, config, tmp_path / "saved_model", min_score_thresh=0.5)

    from_model = model_detections(model, config, files, batch_size=3)
    from_saved = saved_model_detections(exported, files, batch_size=3)  # threshold: the config's, not 0.5
    assert len(from_model) == len(from_saved) > 0
    assert {d["image_id"] for d in from_model} == {i["id"] for i in json.loads(truth.read_text())["images"]}
    pairs = list(zip(by_image_and_score(from_model), by_image_and_score(from_saved), strict=True))
    for mine, theirs in pairs:
        assert mine["image_id"] == theirs["image_id"]
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-4)
    for mine in [d for d in from_model if d["score"] > 0.1]:
        # Two boxes within 1e-4 of each other's score can swap places between the two paths, so each box is
        # looked for among the other path's boxes of that image and score, not at its own rank.
        same = [t for t in from_saved if t["image_id"] == mine["image_id"] and abs(t["score"] - mine["score"]) < 1e-4]
        assert any(np.allclose(t["bbox"], mine["bbox"], atol=0.05) for t in same), (mine, same)
    assert any(mine["score"] > 0.1 for mine, _ in pairs)

    metrics = coco_metrics(truth, from_model)  # what evaluate_model returns, without a second pass
    saved_metrics = evaluate_saved_model(exported, files, truth, batch_size=3)
    assert metrics.num_images == saved_metrics.num_images == 4
    for name in ("ap", "ap50", "ap75", "ar100"):
        assert getattr(saved_metrics, name) == pytest.approx(getattr(metrics, name), abs=0.005)
