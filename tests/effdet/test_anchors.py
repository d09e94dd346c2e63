"""Anchor grid, box coder and target assignment, with exact values."""

import numpy as np
import pytest
import tensorflow as tf

from effdet.anchor_grid import generate_anchors
from effdet.anchors import (
    BACKGROUND,
    assign_targets,
    decode_boxes,
    encode_boxes,
    pairwise_iou,
)


def test_anchor_counts_per_level() -> None:
    anchors = generate_anchors((128, 256), 3, 7, 3, [1.0, 2.0, 0.5], 4.0)
    assert anchors.level_sizes == ((3, 16, 32), (4, 8, 16), (5, 4, 8), (6, 2, 4), (7, 1, 2))
    assert anchors.level_counts() == [16 * 32 * 9, 8 * 16 * 9, 4 * 8 * 9, 2 * 4 * 9, 1 * 2 * 9]
    assert anchors.num_anchors == sum(anchors.level_counts())


def test_first_anchors_have_exact_sizes_and_ratios() -> None:
    anchors = generate_anchors((128, 128), 3, 7, 3, [1.0, 2.0, 0.5], 4.0).boxes
    # Level 3, location (0, 0): centre (4, 4), stride 8, sizes 32 * 2**(o/3).
    ymin, xmin, ymax, xmax = anchors[0]
    np.testing.assert_allclose([ymin, xmin, ymax, xmax], [-12, -12, 20, 20])
    height, width = anchors[1, 2] - anchors[1, 0], anchors[1, 3] - anchors[1, 1]
    np.testing.assert_allclose(width / height, 2.0, rtol=1e-6)  # aspect ratio is width / height
    np.testing.assert_allclose(width * height, 32.0**2, rtol=1e-5)
    np.testing.assert_allclose(anchors[3, 2] - anchors[3, 0], 32 * 2 ** (1 / 3), rtol=1e-6)
    # Next location along x: centre moves by the stride.
    np.testing.assert_allclose(anchors[9], anchors[0] + [0, 8, 0, 8])
    # Level 7 starts after the finer levels: one 1x1 grid at centre (64, 64), size 4 * 128.
    np.testing.assert_allclose(anchors[-9], [64 - 256, 64 - 256, 64 + 256, 64 + 256])


def test_anchor_grid_rejects_sizes_the_backbone_strides_do_not_divide() -> None:
    with pytest.raises(ValueError, match="128x208 is not divisible by the level-5 stride 32"):
        generate_anchors((208, 128), 3, 7, 3, [1.0], 4.0)


def test_anchor_grid_rounds_up_pooled_levels_as_automl() -> None:
    # EfficientDet-Lite0's 320: levels 6 and 7 are 5x5 and 3x3 (ceil), level 7's stride is 320 / 3.
    anchors = generate_anchors((320, 320), 3, 7, 1, [1.0], 3.0)
    assert [(h, w) for _, h, w in anchors.level_sizes] == [(40, 40), (20, 20), (10, 10), (5, 5), (3, 3)]
    stride = 320 / 3
    np.testing.assert_allclose(anchors.boxes[-9], [stride / 2 - 1.5 * stride] * 2 + [stride / 2 + 1.5 * stride] * 2)
    np.testing.assert_allclose(anchors.boxes[-1, 2], 320 - stride / 2 + 1.5 * stride, rtol=1e-6)


def test_encode_decode_round_trip() -> None:
    rng = np.random.default_rng(0)
    anchors = generate_anchors((256, 128), 3, 7, 3, [1.0, 2.0, 0.5], 4.0).boxes
    centres = rng.uniform(0, 200, size=(len(anchors), 2))
    sizes = rng.uniform(2, 150, size=(len(anchors), 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    decoded = decode_boxes(encode_boxes(boxes, anchors), anchors)
    np.testing.assert_allclose(decoded.numpy(), boxes, atol=2e-4)


def test_encoding_of_hand_computed_box() -> None:
    anchor = np.array([[0.0, 0.0, 10.0, 20.0]])
    box = np.array([[5.0, 5.0, 25.0, 15.0]])  # centre (15, 10), h 20, w 10; anchor centre (5, 10), h 10, w 20
    codes = encode_boxes(box, anchor).numpy()
    np.testing.assert_allclose(codes, [[1.0, 0.0, np.log(2.0), np.log(0.5)]], rtol=1e-6)


def test_pairwise_iou() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(pairwise_iou(a, b).numpy(), [[1.0, 25 / 175, 0.0], [0.5, 0.0, 0.0]], rtol=1e-6)


def test_matching_thresholds_and_force_match() -> None:
    anchors = np.array(
        [
            [0, 0, 10, 10],  # exact copy of box 1 -> positive
            [0, 0, 10, 20],  # IoU 0.5 with box 1 -> positive (>= 0.5)
            [0, 0, 10, 21],  # IoU 100/210 < 0.5 -> background
            [100, 100, 110, 110],  # best anchor of box 2 though IoU 0.25 -> force-matched
            [200, 200, 210, 210],  # overlaps nothing -> background
        ],
        np.float32,
    )
    gt_boxes = np.array([[0, 0, 10, 10], [100, 100, 105, 105], [0, 0, 0, 0]], np.float32)
    gt_classes = np.array([2, 5, 0])  # the last row is padding
    cls_targets, box_targets, num_positives = assign_targets(gt_boxes, gt_classes, anchors)
    assert cls_targets.numpy().tolist() == [2, 2, BACKGROUND, 5, BACKGROUND]
    assert num_positives.numpy() == 3
    np.testing.assert_allclose(box_targets[0].numpy(), [0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(box_targets[2].numpy(), [0, 0, 0, 0])
    np.testing.assert_allclose(decode_boxes(box_targets[3:4], anchors[3:4]).numpy(), gt_boxes[1:2], atol=1e-4)


def test_image_without_boxes_is_all_background() -> None:
    anchors = generate_anchors((128, 128), 3, 7, 1, [1.0], 4.0).boxes
    cls_targets, box_targets, num_positives = assign_targets(tf.zeros([0, 4]), tf.zeros([0], tf.int32), anchors)
    assert int(tf.reduce_sum(tf.abs(cls_targets))) == 0
    assert float(tf.reduce_sum(tf.abs(box_targets))) == 0.0
    assert float(num_positives) == 0.0


def test_assignment_runs_inside_a_graph() -> None:
    anchors = generate_anchors((128, 128), 3, 7, 3, [1.0, 2.0, 0.5], 4.0).boxes

    @tf.function
    def label(boxes: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
        return assign_targets(boxes, classes, anchors)[0]

    targets = label(tf.constant([[10.0, 10.0, 60.0, 40.0]]), tf.constant([1]))
    assert int(tf.reduce_sum(tf.cast(targets == 1, tf.int32))) >= 1
