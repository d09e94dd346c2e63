"""Dataset statistics: what a user should know about a dataset before training on it.

Counts per class and per image, image sizes, and the distribution of box sizes and aspect ratios (w / h), both in
pixels of the stored image and relative to the image, with COCO's small / medium / large split (area below 32**2,
below 96**2, the rest), and what each box becomes at each variant's input size (effdet.data.input_size). Boxes are
[xmin, ymin, xmax, ymax] in pixels of the stored image.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from effdet.config import MODEL_NAMES, get_config
from effdet.data.input_size import InputSizeReport, describe_input_sizes
from effdet.data.records import Box

HISTOGRAM_BINS = 10
COCO_SMALL_AREA = 32**2
COCO_MEDIUM_AREA = 96**2
TOP_IMAGE_SIZES = 5


class Summary(BaseModel):
    """Order statistics and mean of a set of values."""

    min: float
    p10: float
    median: float
    p90: float
    max: float
    mean: float


class Histogram(BaseModel):
    """counts[i] values fall in [edges[i], edges[i + 1]) (the last bin includes its right edge)."""

    edges: list[float]
    counts: list[int]


class Distribution(BaseModel):
    """A summary and a histogram of the same values (log-spaced bins for areas and aspect ratios)."""

    summary: Summary
    histogram: Histogram


class Range(BaseModel):
    """Minimum, median and maximum of a set of values."""

    min: float
    median: float
    max: float


class SizeCount(BaseModel):
    """How many images have this (width, height)."""

    width: int
    height: int
    count: int


class ImageSizeStats(BaseModel):
    """Image sizes of the images whose size is known; `unknown` counts the others."""

    width: Range | None
    height: Range | None
    most_common: list[SizeCount]
    unknown: int


class CocoSizeCounts(BaseModel):
    """Boxes by COCO area class, in pixels of the stored image."""

    small: int
    medium: int
    large: int


class BoxStats(BaseModel):
    """Distributions of box width, height, area (pixels) and aspect ratio (width / height, boxes of zero height
    left out)."""

    width: Distribution
    height: Distribution
    area: Distribution
    aspect: Distribution | None


class RelativeBoxStats(BaseModel):
    """Box width, height and area as fractions of the image's; only boxes of images of known size."""

    width: Distribution
    height: Distribution
    area: Distribution


class DatasetStats(BaseModel):
    """Everything `compute_stats` measures; the distributions are None when there is no box to measure."""

    num_images: int
    num_boxes: int
    class_counts: dict[str, int]
    images_per_class: dict[str, int]
    boxes_per_image: dict[int, int]
    max_boxes_per_image: int
    image_sizes: ImageSizeStats
    boxes: BoxStats | None
    relative_boxes: RelativeBoxStats | None
    coco_sizes: CocoSizeCounts
    input_sizes: InputSizeReport | None = Field(
        None,
        description="boxes by shorter side (under 16, 16-32, over 32 px) after the resize to each input size and "
        "to each variant's default size; None without boxes in images of known size (or in older reports)",
    )


class Annotated(Protocol):
    """An image and its boxes as statistics read it: a reader's Record or a validated item."""

    @property
    def filename(self) -> str: ...

    @property
    def width(self) -> int | None: ...

    @property
    def height(self) -> int | None: ...

    @property
    def boxes(self) -> Sequence[Box]: ...


def compute_stats(
    records: Iterable[Annotated], image_sizes: Mapping[str, tuple[int, int]] | None = None
) -> DatasetStats:
    """Statistics of `records`, read in one pass; `image_sizes` maps Record.filename to the real (width, height)
    where known, else each record's declared width and height are used."""
    class_counts: Counter[str] = Counter()
    images_per_class: Counter[str] = Counter()
    boxes_per_image: Counter[int] = Counter()
    sizes: list[tuple[int, int]] = []
    widths, heights, relative_widths, relative_heights = [], [], [], []
    boxes_wh: list[tuple[float, float]] = []  # boxes in images of known size, and those sizes: box_shapes' output
    images_wh: list[tuple[int, int]] = []
    num_images = 0
    for record in records:
        num_images += 1
        size = _image_size(record, image_sizes)
        if size is not None:
            sizes.append(size)
        boxes_per_image[len(record.boxes)] += 1
        class_counts.update(box.label for box in record.boxes)
        images_per_class.update({box.label for box in record.boxes})
        for box in record.boxes:
            box_width, box_height = box.xmax - box.xmin, box.ymax - box.ymin
            widths.append(box_width)
            heights.append(box_height)
            if size is not None:
                relative_widths.append(box_width / size[0])
                relative_heights.append(box_height / size[1])
                boxes_wh.append((box_width, box_height))
                images_wh.append(size)
    width, height = np.array(widths, dtype=np.float64), np.array(heights, dtype=np.float64)
    area = width * height
    return DatasetStats(
        num_images=num_images,
        num_boxes=len(widths),
        class_counts=dict(sorted(class_counts.items())),
        images_per_class=dict(sorted(images_per_class.items())),
        boxes_per_image=dict(sorted(boxes_per_image.items())),
        max_boxes_per_image=max(boxes_per_image, default=0),
        image_sizes=_image_size_stats(sizes, unknown=num_images - len(sizes)),
        boxes=_box_stats(width, height) if len(widths) else None,
        relative_boxes=_relative_stats(relative_widths, relative_heights) if relative_widths else None,
        coco_sizes=CocoSizeCounts(
            small=int(np.sum(area < COCO_SMALL_AREA)),
            medium=int(np.sum((area >= COCO_SMALL_AREA) & (area < COCO_MEDIUM_AREA))),
            large=int(np.sum(area >= COCO_MEDIUM_AREA)),
        ),
        input_sizes=describe_input_sizes(
            np.array(boxes_wh, dtype=np.float64).reshape(-1, 2),
            np.array(images_wh, dtype=np.float64).reshape(-1, 2),
            _model_sizes(),
        ),
    )


def _model_sizes() -> dict[str, int]:
    """Each variant's default (square) input size."""
    return {name: get_config(name).model.image_size[0] for name in MODEL_NAMES}


def box_shapes(
    records: Iterable[Annotated], image_sizes: Mapping[str, tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Box (width, height) and their image's (width, height), both float64 [N, 2], for boxes in images of known
    size: the inputs of `effdet.data.anchors_kmeans.suggest_anchors`."""
    boxes_wh, images_wh = [], []
    for record in records:
        size = _image_size(record, image_sizes)
        if size is None:
            continue
        for box in record.boxes:
            boxes_wh.append((box.xmax - box.xmin, box.ymax - box.ymin))
            images_wh.append(size)
    return np.array(boxes_wh, dtype=np.float64).reshape(-1, 2), np.array(images_wh, dtype=np.float64).reshape(-1, 2)


def _image_size(record: Annotated, image_sizes: Mapping[str, tuple[int, int]] | None) -> tuple[int, int] | None:
    if image_sizes is not None and record.filename in image_sizes:
        return image_sizes[record.filename]
    if record.width and record.height:
        return (record.width, record.height)
    return None


def _image_size_stats(sizes: list[tuple[int, int]], unknown: int) -> ImageSizeStats:
    counts = Counter(sizes)
    most_common = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_IMAGE_SIZES]
    return ImageSizeStats(
        width=_range([w for w, _ in sizes]) if sizes else None,
        height=_range([h for _, h in sizes]) if sizes else None,
        most_common=[SizeCount(width=w, height=h, count=n) for (w, h), n in most_common],
        unknown=unknown,
    )


def _range(values: list[int]) -> Range:
    return Range(min=float(min(values)), median=float(np.median(values)), max=float(max(values)))


def _box_stats(width: np.ndarray, height: np.ndarray) -> BoxStats:
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = width / height
    return BoxStats(
        width=_distribution(width),
        height=_distribution(height),
        area=_distribution(width * height, log_bins=True),
        aspect=_distribution(aspect[np.isfinite(aspect)], log_bins=True) if np.isfinite(aspect).any() else None,
    )


def _relative_stats(widths: list[float], heights: list[float]) -> RelativeBoxStats:
    width, height = np.array(widths, dtype=np.float64), np.array(heights, dtype=np.float64)
    return RelativeBoxStats(
        width=_distribution(width), height=_distribution(height), area=_distribution(width * height, log_bins=True)
    )


def _distribution(values: np.ndarray, log_bins: bool = False) -> Distribution:
    """Summary and histogram of non-empty `values`; log bins when asked and all values are positive and differ."""
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    summary = Summary(
        min=float(values.min()),
        p10=float(p10),
        median=float(median),
        p90=float(p90),
        max=float(values.max()),
        mean=float(values.mean()),
    )
    low, high = float(values.min()), float(values.max())
    bins: int | np.ndarray = HISTOGRAM_BINS
    if log_bins and low > 0 and high > low:
        bins = np.logspace(math.log10(low), math.log10(high), HISTOGRAM_BINS + 1)
        bins[[0, -1]] = low, high  # exact ends, so that rounding leaves no value outside the bins
    counts, edges = np.histogram(values, bins=bins)
    return Distribution(
        summary=summary, histogram=Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts])
    )
