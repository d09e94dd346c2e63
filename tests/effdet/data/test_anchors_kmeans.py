"""Anchor suggestion: exact shapes and IoU, recovery of known aspect ratios, anchor_scale for tiny boxes."""

from collections.abc import Sequence

import numpy as np
import pytest

from effdet.data.anchors_kmeans import anchor_shapes, input_shapes, shape_iou, suggest_anchors

INPUT_SIZE = (512, 512)


def _boxes(
    ratios: Sequence[float], sizes: tuple[float, float], per_ratio: int = 300, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the given aspect ratios (with 5% log-normal noise) and sqrt-areas, in 512x512 images."""
    rng = np.random.default_rng(seed)
    ratio = np.repeat(ratios, per_ratio) * np.exp(rng.normal(0.0, 0.05, per_ratio * len(ratios)))
    size = rng.uniform(*sizes, per_ratio * len(ratios))
    boxes_wh = np.stack([size * np.sqrt(ratio), size / np.sqrt(ratio)], axis=1)
    return boxes_wh, np.tile([512.0, 512.0], (len(boxes_wh), 1))


def test_anchor_shapes_follow_the_efficientdet_formula() -> None:
    shapes = anchor_shapes(3, 4, 2, [1.0, 4.0], 4.0)
    assert shapes.shape == (2 * 2 * 2, 2)
    np.testing.assert_allclose(shapes[0], [32, 32])
    np.testing.assert_allclose(shapes[1], [64, 16])  # ratio 4: width 32 * 2, height 32 / 2
    np.testing.assert_allclose(shapes[2], [32 * 2**0.5, 32 * 2**0.5])  # second octave
    np.testing.assert_allclose(shapes[4], [64, 64])  # level 4


def test_shape_iou_compares_centred_boxes() -> None:
    iou = shape_iou(np.array([[2.0, 1.0], [4.0, 4.0]]), np.array([[1.0, 2.0], [2.0, 2.0]]))
    np.testing.assert_allclose(iou, [[1 / 3, 0.5], [2 / 16, 4 / 16]])


def test_input_shapes_resize_each_image_to_fit_the_input() -> None:
    boxes = input_shapes(np.array([[100.0, 50.0], [10.0, 10.0]]), (512, 256), np.array([[1024, 512], [128, 128]]))
    # 1024x512 fits 256 wide x 512 high at scale 0.25; 128x128 at scale 2.
    np.testing.assert_allclose(boxes, [[25.0, 12.5], [20.0, 20.0]])


def test_kmeans_recovers_known_aspect_ratios() -> None:
    boxes_wh, image_sizes = _boxes([0.5, 1.0, 3.0], sizes=(30, 300))
    suggestion = suggest_anchors(boxes_wh, INPUT_SIZE, image_sizes)
    np.testing.assert_allclose(suggestion.aspect_ratios, [0.5, 1.0, 3.0], rtol=0.1)
    assert suggestion.anchor_scale == 4.0
    assert suggestion.num_boxes == 900


def test_a_large_set_is_suggested_from_a_sample_that_finds_the_same_ratios() -> None:
    boxes_wh, image_sizes = _boxes([0.5, 1.0, 3.0], sizes=(30, 300), per_ratio=10_000)
    suggestion = suggest_anchors(boxes_wh, INPUT_SIZE, image_sizes)
    np.testing.assert_allclose(suggestion.aspect_ratios, [0.5, 1.0, 3.0], rtol=0.1)
    assert suggestion.num_boxes == 30_000, "the count is of every box, not of the sample"


def test_suggested_ratios_match_more_plate_like_boxes_than_the_default() -> None:
    boxes_wh, image_sizes = _boxes([0.5, 1.0, 5.0], sizes=(30, 300))
    suggestion = suggest_anchors(boxes_wh, INPUT_SIZE, image_sizes)
    assert suggestion.aspect_ratios[-1] == pytest.approx(5.0, rel=0.1)
    assert suggestion.suggested_matched_fraction > suggestion.default_matched_fraction
    assert suggestion.suggested_mean_iou > suggestion.default_mean_iou
    assert suggestion.default_aspect_ratios == [1.0, 2.0, 0.5]
    assert suggestion.default_anchor_scale == 4.0


def test_anchor_scale_is_lowered_for_tiny_boxes() -> None:
    boxes_wh, image_sizes = _boxes([0.5, 1.0, 2.0], sizes=(10, 20))
    suggestion = suggest_anchors(boxes_wh, INPUT_SIZE, image_sizes)
    assert suggestion.anchor_scale < 4.0
    assert suggestion.suggested_matched_fraction > suggestion.default_matched_fraction + 0.3


def test_same_seed_gives_the_same_suggestion() -> None:
    boxes_wh, image_sizes = _boxes([0.7, 1.6, 3.5], sizes=(20, 200), seed=5)
    assert suggest_anchors(boxes_wh, INPUT_SIZE, image_sizes, seed=1) == suggest_anchors(
        boxes_wh, INPUT_SIZE, image_sizes, seed=1
    )


def test_fewer_distinct_shapes_than_ratios_gives_fewer_ratios() -> None:
    suggestion = suggest_anchors(np.array([[40.0, 20.0], [80.0, 40.0]]), INPUT_SIZE, np.array([[512, 512]] * 2))
    assert suggestion.aspect_ratios == [2.0]


def test_degenerate_boxes_are_rejected_with_the_row() -> None:
    with pytest.raises(ValueError, match=r"1 boxes have a non-positive .* row 1"):
        suggest_anchors(np.array([[10.0, 10.0], [0.0, 5.0]]), INPUT_SIZE, np.array([[512, 512]] * 2))
