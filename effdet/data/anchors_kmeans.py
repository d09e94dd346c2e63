"""Anchor aspect ratios, and when needed an anchor scale, suggested from a dataset's box shapes.

EfficientDet's anchors already span sizes through levels and octaves (size = anchor_scale * 2**level *
2**(octave / num_scales)), so the free choice is the set of aspect ratios (width / height). Boxes are first resized
as the eval pipeline resizes their image (aspect preserved, fit inside the network input), then normalised to unit
area and clustered by k-means with the distance 1 - IoU of centred shapes (YOLOv2's anchor clustering); for
unit-area shapes that IoU depends only on how far apart two aspect ratios are, so the clusters are ratios, not sizes.

Coverage is each box's best IoU over all anchor shapes, compared as centred shapes: an upper bound of what the
grid assignment reaches (real anchors sit on a stride grid), good for comparing two anchor sets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

MATCH_IOU = 0.5
"""Best-anchor IoU at or above which a box counts as matched (the assigner's positive threshold)."""
ANCHOR_SCALE_GRID = (2.0, 3.0, 4.0, 5.0)
SCALE_CHANGE_MARGIN = 0.05
"""Gain in matched fraction a different anchor_scale must bring before it is suggested."""
_KMEANS_RESTARTS = 5
_KMEANS_ITERATIONS = 100


class AnchorSuggestion(BaseModel):
    """Suggested aspect ratios and anchor scale, and how well the default and suggested anchors cover the boxes."""

    aspect_ratios: list[float]
    anchor_scale: float
    default_aspect_ratios: list[float]
    default_anchor_scale: float
    default_mean_iou: float
    default_matched_fraction: float
    suggested_mean_iou: float
    suggested_matched_fraction: float
    num_boxes: int


MAX_BOXES = 20_000
"""Boxes the suggestion looks at: beyond this a sample (its IoU matrices are boxes x anchors)."""


def suggest_anchors(
    boxes_wh: np.ndarray,
    image_size: tuple[int, int],
    image_sizes: np.ndarray,
    min_level: int = 3,
    max_level: int = 7,
    num_scales: int = 3,
    anchor_scale: float = 4.0,
    default_ratios: Sequence[float] = (1.0, 2.0, 0.5),
    num_ratios: int = 3,
    seed: int = 0,
) -> AnchorSuggestion:
    """Suggest `num_ratios` aspect ratios (fewer if the boxes have fewer distinct shapes) and an anchor_scale.

    boxes_wh: float [N, 2] box (width, height) in pixels of the original image. image_sizes: [N, 2] the
    (width, height) of each box's image. image_size: the network input (height, width). A new anchor_scale from
    `ANCHOR_SCALE_GRID` is suggested only when it matches `SCALE_CHANGE_MARGIN` more of the boxes. Over MAX_BOXES
    boxes, a random sample of MAX_BOXES stands for them (memory and time stay bounded; the means barely move).
    """
    if num_ratios < 1:
        raise ValueError(f"num_ratios must be 1 or more, got {num_ratios}")
    total = len(boxes_wh)
    if min_level > max_level:
        raise ValueError(f"min_level {min_level} must not be above max_level {max_level}")
    rng = np.random.default_rng(seed)
    boxes_wh, image_sizes = _sampled(boxes_wh, image_sizes, rng)
    shapes = input_shapes(boxes_wh, image_size, image_sizes)
    ratios = _rounded(kmeans_aspect_ratios(shapes, num_ratios, rng))
    levels = (min_level, max_level, num_scales)
    default_iou = best_anchor_iou(shapes, anchor_shapes(*levels, default_ratios, anchor_scale))
    best_scale = choose_anchor_scale(shapes, min_level, max_level, num_scales, ratios, anchor_scale)
    suggested_iou = best_anchor_iou(shapes, anchor_shapes(*levels, ratios, best_scale))
    return AnchorSuggestion(
        aspect_ratios=ratios,
        anchor_scale=best_scale,
        default_aspect_ratios=[float(r) for r in default_ratios],
        default_anchor_scale=anchor_scale,
        default_mean_iou=float(default_iou.mean()),
        default_matched_fraction=_matched(default_iou),
        suggested_mean_iou=float(suggested_iou.mean()),
        suggested_matched_fraction=_matched(suggested_iou),
        num_boxes=total,
    )


def _sampled(boxes_wh: np.ndarray, image_sizes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The boxes and their image sizes, or a random MAX_BOXES of them (in their order) when there are more."""
    if len(boxes_wh) <= MAX_BOXES:
        return boxes_wh, image_sizes
    sample = np.sort(rng.choice(len(boxes_wh), MAX_BOXES, replace=False))
    return boxes_wh[sample], image_sizes[sample]


def choose_anchor_scale(
    shapes: np.ndarray,
    min_level: int,
    max_level: int,
    num_scales: int,
    aspect_ratios: Sequence[float],
    default_scale: float,
) -> float:
    """The anchor_scale (default_scale or one of `ANCHOR_SCALE_GRID`) whose anchors match the most box shapes
    [N, 2] (network-input pixels); another than default_scale only when it matches `SCALE_CHANGE_MARGIN` more."""
    levels = (min_level, max_level, num_scales)
    by_scale = {
        scale: best_anchor_iou(shapes, anchor_shapes(*levels, aspect_ratios, scale))
        for scale in sorted({default_scale, *ANCHOR_SCALE_GRID})
    }
    best = max(by_scale, key=lambda s: (_matched(by_scale[s]), float(by_scale[s].mean()), s == default_scale))
    if _matched(by_scale[best]) < _matched(by_scale[default_scale]) + SCALE_CHANGE_MARGIN:
        return default_scale
    return best


class AnchorChoice(BaseModel):
    """The anchors a run uses where its config said 'auto' (`auto` names those keys), chosen on the training
    boxes, and how the variant's default anchors and the chosen ones cover those boxes (mean best IoU and the
    share matched at `MATCH_IOU`)."""

    aspect_ratios: list[float]
    anchor_scale: float
    auto: list[str]
    default_mean_iou: float
    default_matched_fraction: float
    mean_iou: float
    matched_fraction: float
    num_boxes: int

    def describe(self) -> str:
        """One line for a log: what was chosen and the mean best IoU before and after."""
        return (
            f"anchors chosen on {self.num_boxes} training boxes for {', '.join(self.auto)}: aspect_ratios "
            f"{self.aspect_ratios}, anchor_scale {self.anchor_scale}; mean best IoU {self.default_mean_iou:.3f} "
            f"(default anchors) -> {self.mean_iou:.3f}, matched {self.default_matched_fraction:.0%} -> "
            f"{self.matched_fraction:.0%}"
        )


def choose_anchors(
    boxes_wh: np.ndarray,
    image_sizes: np.ndarray,
    image_size: tuple[int, int],
    levels: tuple[int, int, int],
    aspect_ratios: Sequence[float] | None,
    anchor_scale: float | None,
    default_ratios: Sequence[float],
    default_scale: float,
    num_ratios: int = 3,
    seed: int = 0,
) -> AnchorChoice:
    """Fill in the anchors given as None ('auto'): the ratios by k-means and the scale by `choose_anchor_scale`,
    as `suggest_anchors` does. boxes_wh and image_sizes: [N, 2] (width, height) in stored-image pixels;
    image_size: the network input (height, width); levels: (min_level, max_level, num_scales); the defaults are
    the variant's anchors, the 'before' of the comparison."""
    total = len(boxes_wh)
    rng = np.random.default_rng(seed)
    boxes_wh, image_sizes = _sampled(boxes_wh, image_sizes, rng)
    shapes = input_shapes(boxes_wh, image_size, image_sizes)
    ratios = (
        list(aspect_ratios) if aspect_ratios is not None else _rounded(kmeans_aspect_ratios(shapes, num_ratios, rng))
    )
    scale = anchor_scale if anchor_scale is not None else choose_anchor_scale(shapes, *levels, ratios, default_scale)
    before = best_anchor_iou(shapes, anchor_shapes(*levels, default_ratios, default_scale))
    after = best_anchor_iou(shapes, anchor_shapes(*levels, ratios, scale))
    auto = [name for name, value in (("aspect_ratios", aspect_ratios), ("anchor_scale", anchor_scale)) if value is None]
    return AnchorChoice(
        aspect_ratios=ratios,
        anchor_scale=scale,
        auto=auto,
        default_mean_iou=float(before.mean()),
        default_matched_fraction=_matched(before),
        mean_iou=float(after.mean()),
        matched_fraction=_matched(after),
        num_boxes=total,
    )


def _rounded(ratios: list[float]) -> list[float]:
    return [max(0.01, round(r, 2)) for r in ratios]


def input_shapes(boxes_wh: np.ndarray, image_size: tuple[int, int], image_sizes: np.ndarray) -> np.ndarray:
    """Box (width, height) in network-input pixels, float64 [N, 2]: each image resized by
    min(height / image_height, width / image_width), as the eval pipeline does; image_size is (height, width)."""
    boxes = np.asarray(boxes_wh, dtype=np.float64)
    images = np.asarray(image_sizes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 2 or images.shape != boxes.shape:
        raise ValueError(
            f"boxes_wh and image_sizes must both be [N, 2] (width, height), got {boxes.shape} and {images.shape}"
        )
    if not len(boxes):
        raise ValueError("no boxes to suggest anchors from")
    bad = ~np.all(np.isfinite(boxes) & (boxes > 0), axis=1) | ~np.all(np.isfinite(images) & (images > 0), axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            f"{int(bad.sum())} boxes have a non-positive or non-finite size or image size (first: row {first}, "
            f"box {boxes[first].tolist()}, image {images[first].tolist()}); drop degenerate boxes first"
        )
    height, width = image_size
    scale = np.minimum(height / images[:, 1], width / images[:, 0])
    return np.asarray(boxes * scale[:, None])


def anchor_shapes(
    min_level: int, max_level: int, num_scales: int, aspect_ratios: Sequence[float], anchor_scale: float
) -> np.ndarray:
    """(width, height) of every anchor shape, float64 [levels * num_scales * len(aspect_ratios), 2], as
    `effdet.anchor_grid.generate_anchors` makes them."""
    shapes = []
    for level in range(min_level, max_level + 1):
        for octave in range(num_scales):
            size = anchor_scale * 2**level * 2 ** (octave / num_scales)
            for ratio in aspect_ratios:
                shapes.append((size * np.sqrt(ratio), size / np.sqrt(ratio)))
    return np.array(shapes, dtype=np.float64)


def shape_iou(shapes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of centred boxes: shapes [N, 2] and others [K, 2] as (width, height) -> float64 [N, K]."""
    inter = np.minimum(shapes[:, None, 0], others[None, :, 0]) * np.minimum(shapes[:, None, 1], others[None, :, 1])
    union = (shapes[:, 0] * shapes[:, 1])[:, None] + (others[:, 0] * others[:, 1])[None, :] - inter
    return np.asarray(inter / union)


def best_anchor_iou(shapes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """For each box shape [N, 2], its best IoU over the anchor shapes [A, 2], float64 [N]."""
    return np.asarray(shape_iou(shapes, anchors).max(axis=1))


def kmeans_aspect_ratios(shapes: np.ndarray, k: int, rng: np.random.Generator) -> list[float]:
    """k aspect ratios (width / height), ascending, from k-means with d = 1 - IoU on unit-area box shapes.

    k-means++ seeding, median centroids (robust to outliers), the best of a few restarts by mean IoU. k is
    lowered to the number of distinct ratios when there are fewer.
    """
    unit = shapes / np.sqrt(shapes[:, :1] * shapes[:, 1:])
    k = min(k, len(np.unique(np.round(unit[:, 0] / unit[:, 1], 6))))
    best_fit, best_centroids = -1.0, unit[:k]
    for _ in range(_KMEANS_RESTARTS):
        centroids = _kmeans(unit, _seed_centroids(unit, k, rng))
        fit = float(best_anchor_iou(unit, centroids).mean())
        if fit > best_fit:
            best_fit, best_centroids = fit, centroids
    return sorted(float(w / h) for w, h in best_centroids)


def _seed_centroids(unit: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++: each next centroid drawn with probability proportional to its squared distance 1 - IoU."""
    centroids = [unit[rng.integers(len(unit))]]
    for _ in range(1, k):
        distance = 1.0 - best_anchor_iou(unit, np.array(centroids))
        weights = distance**2
        centroids.append(unit[rng.choice(len(unit), p=weights / weights.sum())])
    return np.array(centroids)


def _kmeans(unit: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    for _ in range(_KMEANS_ITERATIONS):
        assignment = shape_iou(unit, centroids).argmax(axis=1)
        updated = centroids.copy()
        for cluster in range(len(centroids)):
            members = unit[assignment == cluster]
            if len(members):
                median = np.median(members, axis=0)
                updated[cluster] = median / np.sqrt(median[0] * median[1])
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return centroids


def _matched(best_iou: np.ndarray) -> float:
    return float(np.mean(best_iou >= MATCH_IOU))
