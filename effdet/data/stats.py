"""Dataset statistics: what a user should know about a dataset before training on it.

Counts per class and per image, image sizes, and the distribution of box sizes and aspect ratios (w / h), both in
pixels of the stored image and relative to the image, with COCO's small / medium / large split (area below 32**2,
below 96**2, the rest), and what each box becomes at each variant's input size (effdet.data.input_size). Boxes are
[xmin, ymin, xmax, ymax] in pixels of the stored image.
"""

from __future__ import annotations

import math
from array import array
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


class StatsAccumulator:
    """Statistics gathered one image at a time, in compact arrays (a few bytes per box), for datasets streamed
    through validation; `stats` and `shapes` read the result as often as needed."""

    def __init__(self) -> None:
        self.num_images = 0
        self.class_counts: Counter[str] = Counter()
        self.images_per_class: Counter[str] = Counter()
        self.boxes_per_image: Counter[int] = Counter()
        self._image_sizes: Counter[tuple[int, int]] = Counter()
        self._widths, self._heights = array("d"), array("d")
        self._relative_widths, self._relative_heights = array("d"), array("d")
        self._boxes_wh, self._images_wh = array("d"), array("d")  # boxes in images of known size: `shapes`

    def add(self, record: Annotated, size: tuple[int, int] | None = None) -> None:
        """Count one image; `size` is its real (width, height) where known, else the record's declared size."""
        self.num_images += 1
        size = size or ((record.width, record.height) if record.width and record.height else None)
        if size is not None:
            self._image_sizes[size] += 1
        self.boxes_per_image[len(record.boxes)] += 1
        self.class_counts.update(box.label for box in record.boxes)
        self.images_per_class.update({box.label for box in record.boxes})
        for box in record.boxes:
            box_width, box_height = box.xmax - box.xmin, box.ymax - box.ymin
            self._widths.append(box_width)
            self._heights.append(box_height)
            if size is not None:
                self._relative_widths.append(box_width / size[0])
                self._relative_heights.append(box_height / size[1])
                self._boxes_wh.extend((box_width, box_height))
                self._images_wh.extend(size)

    def shapes(self) -> tuple[np.ndarray, np.ndarray]:
        """Box (width, height) and their image's (width, height), both float64 [N, 2], for boxes in images of known
        size: the inputs of `effdet.data.anchors_kmeans.suggest_anchors`."""
        return _pairs(self._boxes_wh), _pairs(self._images_wh)

    def stats(self) -> DatasetStats:
        """The statistics of the images added so far."""
        width, height = np.frombuffer(self._widths), np.frombuffer(self._heights)
        area = width * height
        relative_width, relative_height = np.frombuffer(self._relative_widths), np.frombuffer(self._relative_heights)
        known = sum(self._image_sizes.values())
        return DatasetStats(
            num_images=self.num_images,
            num_boxes=len(width),
            class_counts=dict(sorted(self.class_counts.items())),
            images_per_class=dict(sorted(self.images_per_class.items())),
            boxes_per_image=dict(sorted(self.boxes_per_image.items())),
            max_boxes_per_image=max(self.boxes_per_image, default=0),
            image_sizes=_image_size_stats(self._image_sizes, unknown=self.num_images - known),
            boxes=_box_stats(width, height) if len(width) else None,
            relative_boxes=_relative_stats(relative_width, relative_height) if len(relative_width) else None,
            coco_sizes=CocoSizeCounts(
                small=int(np.sum(area < COCO_SMALL_AREA)),
                medium=int(np.sum((area >= COCO_SMALL_AREA) & (area < COCO_MEDIUM_AREA))),
                large=int(np.sum(area >= COCO_MEDIUM_AREA)),
            ),
            input_sizes=describe_input_sizes(*self.shapes(), _model_sizes()),
        )


def _pairs(values: array[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(-1, 2)


def compute_stats(
    records: Iterable[Annotated], image_sizes: Mapping[str, tuple[int, int]] | None = None
) -> DatasetStats:
    """Statistics of `records`, read in one pass; `image_sizes` maps Record.filename to the real (width, height)
    where known, else each record's declared width and height are used."""
    return _accumulate(records, image_sizes).stats()


def _model_sizes() -> dict[str, int]:
    """Each variant's default (square) input size."""
    return {name: get_config(name).model.image_size[0] for name in MODEL_NAMES}


def box_shapes(
    records: Iterable[Annotated], image_sizes: Mapping[str, tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`StatsAccumulator.shapes` of `records`."""
    return _accumulate(records, image_sizes).shapes()


def _accumulate(records: Iterable[Annotated], image_sizes: Mapping[str, tuple[int, int]] | None) -> StatsAccumulator:
    accumulator = StatsAccumulator()
    for record in records:
        accumulator.add(record, image_sizes.get(record.filename) if image_sizes else None)
    return accumulator


def _image_size_stats(counts: Counter[tuple[int, int]], unknown: int) -> ImageSizeStats:
    most_common = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_IMAGE_SIZES]
    widths = np.repeat([w for w, _ in counts], list(counts.values()))
    heights = np.repeat([h for _, h in counts], list(counts.values()))
    return ImageSizeStats(
        width=_range(widths) if counts else None,
        height=_range(heights) if counts else None,
        most_common=[SizeCount(width=w, height=h, count=n) for (w, h), n in most_common],
        unknown=unknown,
    )


def _range(values: np.ndarray) -> Range:
    return Range(min=float(values.min()), median=float(np.median(values)), max=float(values.max()))


def _box_stats(width: np.ndarray, height: np.ndarray) -> BoxStats:
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = width / height
    return BoxStats(
        width=_distribution(width),
        height=_distribution(height),
        area=_distribution(width * height, log_bins=True),
        aspect=_distribution(aspect[np.isfinite(aspect)], log_bins=True) if np.isfinite(aspect).any() else None,
    )


def _relative_stats(width: np.ndarray, height: np.ndarray) -> RelativeBoxStats:
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
