"""Tiled prediction: boxes from the whole image and overlapping tiles merge into one box per object, and an
exported model trained with tiles runs the tiled path in every signature."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from effdet.config import get_config
from effdet.data.tiles import tile_windows
from effdet.postprocess import Detections
from effdet.predict import load_exported, predict_images
from effdet.tiled import merge_windows
from tests.cheap import CHEAP
from tests.effdet.test_export import scene

MAX = 10


def seen_by_windows(objects: list[tuple[list[float], int]], windows: np.ndarray) -> Detections:
    """What a perfect detector reports in each window: every object overlapping it, clipped to it, in window
    pixels; a whole object scores 0.9, a cut one 0.8, and the whole-image pass (window 0) 0.6."""
    boxes = np.zeros((len(windows), MAX, 4), np.float32)
    scores = np.zeros((len(windows), MAX), np.float32)
    classes = np.zeros((len(windows), MAX), np.int32)
    counts = np.zeros(len(windows), np.int32)
    for w, (y0, x0, y1, x1) in enumerate(windows):
        for box, class_id in objects:
            clipped = np.clip(box, [y0, x0, y0, x0], [y1, x1, y1, x1])
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                continue
            whole = np.allclose(clipped, box)
            n = counts[w]
            boxes[w, n] = clipped - [y0, x0, y0, x0]
            scores[w, n] = 0.6 if w == 0 else (0.9 if whole else 0.8)
            classes[w, n] = class_id
            counts[w] += 1
    return Detections(*(tf.constant(a) for a in (boxes, scores, classes, counts)))


def test_an_object_across_a_tile_border_comes_out_once_and_whole() -> None:
    settings = get_config("efficientdet-lite0", {"tiles": 512, "tile_overlap": 0.25}).input
    windows = tile_windows(600, 1000, settings).numpy()
    # Tile columns span x 0-512, 244-756 and 488-1000: the first object crosses x=512, the second x=756.
    objects = [([100.0, 500.0, 130.0, 600.0], 1), ([300.0, 700.0, 340.0, 790.0], 1), ([300.0, 800.0, 340.0, 860.0], 2)]
    found = seen_by_windows(objects, windows)
    merged = merge_windows(found, tf.constant(windows), tf.constant([600.0, 1000.0]), MAX)
    count = int(merged.num_detections)
    got = sorted(
        (merged.boxes.numpy()[i].round(3).tolist(), int(merged.classes[i]), float(merged.scores[i]))
        for i in range(count)
    )
    assert got == sorted((box, class_id, np.float32(0.9).item()) for box, class_id in objects)


def test_an_object_larger_than_the_overlap_is_kept_from_the_whole_image() -> None:
    settings = get_config("efficientdet-lite0", {"tiles": 512, "tile_overlap": 0.25}).input
    windows = tile_windows(600, 1000, settings).numpy()
    big = [50.0, 100.0, 550.0, 900.0]
    merged = merge_windows(
        seen_by_windows([(big, 1)], windows), tf.constant(windows), tf.constant([600.0, 1000.0]), MAX
    )
    assert int(merged.num_detections) == 1
    np.testing.assert_allclose(merged.boxes.numpy()[0], big)
    assert float(merged.scores[0]) == np.float32(0.6)


def test_an_exported_tiled_model_detects_in_original_pixels(
    tmp_path: Path, make_lively_model: Callable[[Any, tf.Tensor], Any]
) -> None:
    from effdet.export import export_saved_model

    hparams = {**CHEAP, "image_size": 128, "num_classes": 1, "tiles": 256, "tile_overlap": 0.25}
    config = get_config("efficientdet-d0", hparams)
    calibration = tf.random.stateless_normal([2, 128, 128, 3], seed=[1, 2])
    model = make_lively_model(config, calibration)
    exported = load_exported(
        export_saved_model(model, config, tmp_path / "tiled", min_score_thresh=0.0, max_detections=MAX)
    )
    large, small = scene(700, 500, seed=1), scene(200, 120, seed=2)
    results = predict_images(exported, [large, small], score_threshold=0.0)
    for detections, (width, height) in zip(results, [(700, 500), (200, 120)], strict=True):
        assert 0 < len(detections) <= MAX
        for d in detections:
            xmin, ymin, xmax, ymax = d.box
            assert 0 <= xmin <= xmax <= width
            assert 0 <= ymin <= ymax <= height
        scores = [d.score for d in detections]
        assert scores == sorted(scores, reverse=True)
    outputs = exported.module.signatures["image_tensor"](images=tf.zeros([1, 300, 600, 3], tf.uint8))
    assert outputs["boxes"].shape == (1, MAX, 4)
