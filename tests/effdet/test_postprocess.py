"""Decoding and per-class NMS against a brute-force reference; pixel scaling; use inside a graph."""

import numpy as np
import pytest
import tensorflow as tf

from effdet.anchors import encode_boxes
from effdet.config import NmsConfig
from effdet.postprocess import postprocess


def reference_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_thresh: float,
    sigma: float,
    score_thresh: float,
    max_out: int,
) -> list[tuple[int, float]]:
    """Greedy (soft-)NMS class by class, the textbook way: (candidate index, final score) best first."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = h * w
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept: list[tuple[int, float]] = []
    for cls in np.unique(classes):
        current = {int(i): float(scores[i]) for i in np.flatnonzero(classes == cls) if scores[i] > score_thresh}
        while current:
            best = max(current, key=lambda i: current[i])
            kept.append((best, current.pop(best)))
            for other in list(current):
                overlap = iou(boxes[best], boxes[other])
                if overlap > iou_thresh:
                    del current[other]
                    continue
                if sigma > 0:
                    current[other] *= float(np.exp(-0.5 * overlap**2 / sigma))
                if current[other] <= score_thresh:
                    del current[other]
    kept.sort(key=lambda item: -item[1])
    return kept[:max_out]


def random_case(seed: int, num: int = 60, num_classes: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchors of 64x64 px in a 128x128 input, random regressions and logits."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 108, size=(num, 2))
    sizes = rng.uniform(10, 60, size=(num, 2))
    anchors = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    codes = rng.normal(0, 0.2, size=(1, num, 4)).astype(np.float32)
    logits = rng.normal(0, 2, size=(1, num, num_classes)).astype(np.float32)
    return anchors, codes, logits


@pytest.mark.parametrize("method", ["hard", "gaussian"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_brute_force(method: str, seed: int) -> None:
    anchors, codes, logits = random_case(seed)
    nms = NmsConfig(method=method, score_thresh=0.2, max_output_size=40)
    got = postprocess(logits, codes, anchors, (128, 128), nms)

    from effdet.anchors import decode_boxes

    decoded = np.clip(decode_boxes(codes[0], anchors).numpy(), 0, 128)
    scores = 1 / (1 + np.exp(-logits[0]))
    flat_boxes = np.repeat(decoded, 3, axis=0)
    flat_classes = np.tile(np.arange(3), len(anchors))
    expected = reference_nms(
        flat_boxes, scores.reshape(-1), flat_classes, nms.resolved_iou_thresh, nms.resolved_sigma, 0.2, 40
    )
    count = int(got.num_detections[0])
    assert count == len(expected)
    np.testing.assert_allclose(got.scores[0, :count].numpy(), [s for _, s in expected], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.boxes[0, :count].numpy(), flat_boxes[[i for i, _ in expected]], rtol=1e-4, atol=1e-3)
    assert got.classes[0, :count].numpy().tolist() == [int(flat_classes[i]) + 1 for i, _ in expected]
    assert np.all(got.classes[0, count:].numpy() == 0)


def test_pre_nms_top_k_and_max_detections() -> None:
    anchors, codes, logits = random_case(3, num=100)
    few_inputs = postprocess(logits, codes, anchors, (128, 128), NmsConfig(method="hard", max_nms_inputs=5))
    assert int(few_inputs.num_detections[0]) <= 5
    capped = postprocess(logits, codes, anchors, (128, 128), NmsConfig(method="gaussian"), max_detections=7)
    assert capped.boxes.shape == (1, 7, 4)
    assert int(capped.num_detections[0]) == 7


def test_score_threshold_argument_overrides_config() -> None:
    anchors, codes, logits = random_case(4)
    result = postprocess(logits, codes, anchors, (128, 128), NmsConfig(method="hard"), score_threshold=0.9)
    count = int(result.num_detections[0])
    assert np.all(result.scores[0, :count].numpy() > 0.9)


def test_boxes_come_back_in_original_image_pixels() -> None:
    # One anchor exactly on a box: 512-pixel input that came from a 1024x768 image (scale 2.0).
    anchors = np.array([[100.0, 50.0, 200.0, 250.0]], np.float32)
    codes = encode_boxes(anchors, anchors).numpy()[np.newaxis]
    logits = np.array([[[5.0, -5.0]]], np.float32)
    result = postprocess(
        logits,
        codes,
        anchors,
        (512, 512),
        NmsConfig(method="hard"),
        image_scales=tf.constant([2.0]),
        image_sizes=tf.constant([[768.0, 1024.0]]),
    )
    np.testing.assert_allclose(result.boxes[0, 0].numpy(), [200, 100, 400, 500], atol=1e-3)
    assert int(result.classes[0, 0]) == 1
    clipped = postprocess(
        logits,
        codes,
        anchors,
        (512, 512),
        NmsConfig(method="hard"),
        image_scales=tf.constant([2.0]),
        image_sizes=tf.constant([[300.0, 1024.0]]),
    )
    assert float(clipped.boxes[0, 0, 2]) == pytest.approx(300.0)


def test_postprocess_is_batched_and_graph_compatible() -> None:
    anchors, codes, logits = random_case(5)
    batch_codes = np.concatenate([codes, codes[:, ::-1]], axis=0)
    batch_logits = np.concatenate([logits, logits * 0.5], axis=0)
    nms = NmsConfig(method="hard", max_output_size=10)

    @tf.function(input_signature=[tf.TensorSpec([None, 60, 3]), tf.TensorSpec([None, 60, 4])])
    def detect(cls: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
        return postprocess(cls, box, anchors, (128, 128), nms).boxes

    batched = detect(batch_logits, batch_codes).numpy()
    eager = postprocess(batch_logits[1:], batch_codes[1:], anchors, (128, 128), nms).boxes.numpy()
    assert batched.shape == (2, 10, 4)
    np.testing.assert_allclose(batched[1], eager[0], atol=1e-4)
