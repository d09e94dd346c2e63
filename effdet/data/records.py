"""The common, typed form every dataset reader produces, and the problem report every step appends to.

Boxes are [xmin, ymin, xmax, ymax] in pixels of the image as stored on disk (before any EXIF rotation is
applied; validation maps them to the pixels the model sees). A record may also carry where its per-pixel classes
come from: a COCO `segmentation` on each box, or one Pascal VOC `SegmentationClass` PNG for the whole image
(effdet.data.class_maps turns either into the image's class map).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


class Severity(StrEnum):
    """An error drops the item it names; a warning keeps it (possibly repaired, e.g. a clipped box)."""

    ERROR = "error"
    WARNING = "warning"


class Split(StrEnum):
    """A split an annotation file may assign (TFLite Model Maker CSV, COCO train/val files)."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class Problem(BaseModel):
    """One thing wrong with the input, precise enough to fix: which file, which object, what to do."""

    model_config = ConfigDict(frozen=True)

    file: str
    object_index: int | None = None
    severity: Severity
    code: str = Field(description="stable machine-readable kind, e.g. 'box_outside_image'")
    message: str
    class_aliases: dict[str, str] | None = Field(
        None, description="the class_aliases that fix it, when a merge does (code 'similar_class_names')"
    )

    @model_serializer(mode="wrap")
    def _without_empty_fix(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Problems that no merge fixes are written as they always were, without `class_aliases`."""
        data: dict[str, Any] = handler(self)
        if data.get("class_aliases") is None:
            data.pop("class_aliases", None)
        return data


def error(file: str, code: str, message: str, object_index: int | None = None) -> Problem:
    """A problem that drops the file or object it names."""
    return Problem(file=file, object_index=object_index, severity=Severity.ERROR, code=code, message=message)


def warning(file: str, code: str, message: str, object_index: int | None = None) -> Problem:
    """A problem that keeps the item it names but should be looked at."""
    return Problem(file=file, object_index=object_index, severity=Severity.WARNING, code=code, message=message)


Polygons = list[list[float]]
"""COCO polygons of one object: each a flat [x1, y1, x2, y2, ...] list in pixels of the stored image."""


class CocoRle(BaseModel):
    """COCO run-length encoding of one object's pixels over [height, width], column-major: `counts` as run lengths
    (uncompressed, COCO's crowd annotations) or as COCO's compressed string."""

    counts: list[int] | str
    size: list[int]


Segmentation = Polygons | CocoRle
"""One object's pixels as a COCO annotation's `segmentation` gives them."""


class Box(BaseModel):
    """One labelled object, in pixels of the stored image."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    label: str
    is_crowd: bool = False
    difficult: bool = False
    truncated: bool = False
    segmentation: Segmentation | None = Field(
        None, description="the object's pixels (COCO polygons or RLE in stored-image pixels), when annotated"
    )


class Record(BaseModel):
    """One image and its objects, as a reader found them (not yet validated)."""

    image_path: Path = Field(description="absolute path of the image file")
    filename: str = Field(description="the image's name relative to the dataset root, '/'-separated")
    annotation_file: str = Field(description="where the boxes came from, relative to the dataset root")
    width: int | None = Field(None, description="width the annotation declares, if it does")
    height: int | None = Field(None, description="height the annotation declares, if it does")
    boxes: list[Box] = Field(default_factory=list)
    dropped_boxes: int = Field(0, description="objects the reader could not parse (each reported as a problem)")
    split: Split | None = None
    class_png: Path | None = Field(
        None, description="absolute path of the image's Pascal VOC SegmentationClass PNG, when it has one"
    )

    @property
    def has_masks(self) -> bool:
        """Whether the record says which class each pixel is (a class PNG, or a segmentation on some box)."""
        return self.class_png is not None or any(box.segmentation is not None for box in self.boxes)


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
"""Image files a reader looks for (decodable by TensorFlow and Pillow)."""
