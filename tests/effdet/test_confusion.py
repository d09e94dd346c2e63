"""The confusion counts on a hand-built case: two classes, three images, every kind of outcome counted once."""

from __future__ import annotations

from typing import Any

import pytest

from effdet.confusion import confusion_matrix

TRUTH: dict[str, Any] = {
    "images": [{"id": 1}, {"id": 2}, {"id": 3}],
    "categories": [{"id": 1, "name": "plate"}, {"id": 2, "name": "car"}],
    "annotations": [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},  # found as plate
        {"image_id": 1, "category_id": 2, "bbox": [50, 50, 40, 40]},  # found as plate: a confusion
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},  # missed (the detection is too loose)
        {"image_id": 2, "category_id": 2, "bbox": [100, 100, 20, 20], "iscrowd": 1},  # a crowd region
        {"image_id": 3, "category_id": 2, "bbox": [0, 0, 30, 30]},  # found twice: one car, one duplicate
    ],
}


def _found(image: int, category: int, box: list[float], score: float) -> dict[str, Any]:
    return {"image_id": image, "category_id": category, "bbox": box, "score": score}


DETECTIONS = [
    _found(1, 1, [1, 1, 10, 10], 0.9),  # plate on the plate: true positive
    _found(1, 1, [52, 50, 40, 40], 0.8),  # plate on the car
    _found(1, 2, [200, 200, 10, 10], 0.2),  # under the threshold: not counted
    _found(2, 1, [0, 0, 30, 30], 0.7),  # IoU 0.11 with the plate: a false alarm, and the plate a miss
    _found(2, 2, [102, 102, 10, 10], 0.9),  # inside the crowd region: ignored
    _found(3, 2, [0, 0, 30, 30], 0.95),  # the car
    _found(3, 2, [1, 1, 30, 30], 0.6),  # a duplicate of it: a false alarm
    _found(3, 7, [0, 0, 30, 30], 0.99),  # a class the ground truth does not have: left out
]


def test_each_outcome_lands_in_its_cell() -> None:
    confusion = confusion_matrix(TRUTH, DETECTIONS, score_threshold=0.5)
    assert confusion.labels == ["plate", "car", "background"]
    assert confusion.matrix == [
        [1, 0, 1],  # plate: found once, missed once
        [1, 1, 0],  # car: once taken for a plate, once found
        [1, 1, 0],  # background: one plate and one car detected on nothing
    ]
    plate, car = confusion.per_class["plate"], confusion.per_class["car"]
    assert (plate.true_positives, plate.false_positives, plate.misses) == (1, 2, 1)
    assert (car.true_positives, car.false_positives, car.misses) == (1, 1, 1)
    assert plate.precision == pytest.approx(1 / 3)
    assert car.recall == pytest.approx(0.5)
    assert confusion.image_errors == {1: 1, 2: 2, 3: 1}


def test_a_detection_of_the_right_class_is_matched_before_a_confident_wrong_one() -> None:
    truth = {**TRUTH, "annotations": [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 20]}]}
    found = [_found(1, 1, [0, 0, 20, 20], 0.99), _found(1, 2, [1, 1, 20, 20], 0.6)]
    confusion = confusion_matrix(truth, found, score_threshold=0.5)
    assert confusion.matrix == [[0, 0, 0], [0, 1, 0], [1, 0, 0]]


def test_the_threshold_and_no_detections() -> None:
    assert confusion_matrix(TRUTH, DETECTIONS, score_threshold=0.85).matrix == [[1, 0, 1], [0, 1, 1], [0, 0, 0]]
    empty = confusion_matrix(TRUTH, [], score_threshold=0.5)
    assert empty.matrix == [[0, 0, 2], [0, 0, 2], [0, 0, 0]]
    assert empty.per_class["plate"].precision is None
    assert empty.per_class["plate"].recall == 0
