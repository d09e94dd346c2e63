"""The numpy post-processing that serves network-only TFLite files does what the TensorFlow path does: the same
decoded boxes, the same NMS picks in the same order with the same (soft-decayed) scores, the same detections."""

import numpy as np
import pytest
import tensorflow as tf

from effdet.anchor_grid import anchors_for
from effdet.anchors import decode_boxes as decode_boxes_tf
from effdet.config import NmsConfig, get_config
from effdet.postprocess import postprocess
from effdet.postprocess_numpy import decode_boxes, non_max_suppression, postprocess_image
from tests.cheap import CHEAP

METHODS = [NmsConfig(method="hard"), NmsConfig(method="gaussian"), NmsConfig(method="gaussian", iou_thresh=0.6)]


def clustered_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Boxes in [0, 1] that crowd around a few centres, so NMS has work to do; some are degenerate."""
    centres = rng.uniform(0.2, 0.8, size=(4, 2))[rng.integers(0, 4, count)]
    sizes = rng.uniform(0.0, 0.3, size=(count, 2))
    sizes[::17] = 0  # boxes with no area overlap nothing
    jitter = rng.normal(0, 0.03, size=(count, 2))
    low = np.clip(centres + jitter - sizes / 2, 0, 1)
    return np.concatenate([low, np.clip(low + sizes, 0, 1)], axis=1).astype(np.float32)


@pytest.mark.parametrize("nms", METHODS, ids=lambda n: f"{n.method}-{n.resolved_iou_thresh}")
def test_nms_picks_what_tensorflow_picks(nms: NmsConfig) -> None:
    rng = np.random.default_rng(7)
    for trial in range(10):
        count = int(rng.integers(1, 200))
        boxes = clustered_boxes(rng, count)
        scores = rng.uniform(0, 1, count).astype(np.float32)
        scores[: count // 5] = scores[0]  # ties: the lower index goes first
        threshold, limit = float(rng.choice([0.0, 0.2, 0.5])), int(rng.integers(1, 60))
        indices, kept = tf.image.non_max_suppression_with_scores(
            boxes,
            scores,
            max_output_size=limit,
            iou_threshold=nms.resolved_iou_thresh,
            score_threshold=threshold,
            soft_nms_sigma=nms.resolved_sigma,
        )
        got_indices, got_scores = non_max_suppression(boxes, scores, nms, threshold, limit)
        np.testing.assert_array_equal(got_indices, indices.numpy(), err_msg=f"trial {trial}")
        np.testing.assert_allclose(got_scores, kept.numpy(), rtol=1e-5, err_msg=f"trial {trial}")


def test_decoding_matches_the_box_coder() -> None:
    rng = np.random.default_rng(1)
    anchors = np.sort(rng.uniform(0, 128, size=(50, 2, 2)), axis=1).transpose(0, 2, 1).reshape(50, 4)
    codes = rng.normal(0, 1, size=(50, 4)).astype(np.float32)
    expected = decode_boxes_tf(tf.constant(codes), tf.constant(anchors, tf.float32)).numpy()
    np.testing.assert_allclose(decode_boxes(codes, anchors), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.97])
@pytest.mark.parametrize("method", ["hard", "gaussian"])
def test_head_outputs_give_the_same_detections(method: str, threshold: float) -> None:
    config = get_config("efficientdet-d0", {**CHEAP, "image_size": 128, "num_classes": 3})
    nms = NmsConfig(method=method, max_output_size=40)
    anchors = anchors_for(config.model).boxes
    rng = np.random.default_rng(3)
    logits = rng.normal(-3, 1.5, size=(len(anchors), 3)).astype(np.float32)
    # Scores close to 0.97 on both sides, where the filter on logits must agree with the sigmoid.
    near = logits[::50]
    near[:] = 3.4761 + (rng.permutation(near.size).reshape(near.shape) - near.size / 2) * 1e-5  # no ties
    codes = rng.normal(0, 0.3, size=(len(anchors), 4)).astype(np.float32)
    expected = postprocess(logits[None], codes[None], anchors, (128, 128), nms, score_threshold=threshold)
    count = int(expected.num_detections[0])
    assert count > 5
    got = postprocess_image(logits, codes, anchors, (128, 128), nms, threshold, nms.max_output_size)
    np.testing.assert_array_equal(got.classes, expected.classes[0, :count].numpy())
    np.testing.assert_allclose(got.scores, expected.scores[0, :count].numpy(), rtol=1e-5)
    np.testing.assert_allclose(got.boxes, expected.boxes[0, :count].numpy(), atol=1e-3)
