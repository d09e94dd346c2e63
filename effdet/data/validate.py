"""Validation of one image and its boxes: decodable, honest sizes, boxes on the pixels the model will see.

Every check appends a `Problem` instead of raising. Errors drop what they name (a box, or the whole image);
warnings keep it, repaired where possible (a box slightly outside the image is clipped). EXIF-rotated
JPEGs are re-encoded upright, and their boxes mapped to the upright pixels, so that TensorFlow's decoder
(which ignores EXIF) and the annotator see the same picture. In a dataset with masks, each image's class map is
built on the same pixels as its boxes and turned upright the same way (effdet.data.class_maps).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, Field

from effdet.data.class_maps import Frame, MaskClasses, record_class_map
from effdet.data.labels import is_printable
from effdet.data.records import Box, Problem, Record, error, warning

MAX_IMAGE_PIXELS = 64_000_000
"""Larger images are refused (a decompression bomb must not take the worker down)."""

CLIP_TOLERANCE = 0.02
"""A box may stick out of the image by this fraction of the image side (or 3 px) and is then clipped."""

MIN_BOX_SIDE = 1.0
"""Boxes narrower or lower than this many pixels (after clipping) carry no signal and are dropped."""

PASSTHROUGH_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
"""Image formats stored in TFRecords as they are; anything else is re-encoded as JPEG."""

# EXIF orientations that swap width and height (`_orient_box` maps the points of all eight).
_TRANSPOSED = {5, 6, 7, 8}


class ValidItem(BaseModel):
    """An image that passed validation, with boxes in the pixels of the image as it will be stored."""

    image_path: Path
    filename: str
    width: int
    height: int
    boxes: list[Box]
    sha1: str
    image_format: str = Field(description="'jpeg' or 'png'; the bytes written to the TFRecord")
    reencode: bool = Field(False, description="True when the stored bytes must be re-encoded (EXIF, format)")
    split: str | None = None
    mask_png: bytes | None = Field(
        None, exclude=True, repr=False, description="the upright image's class map as a PNG, when it has one"
    )

    @property
    def box_labels(self) -> tuple[str, ...]:
        """The label of each box, in order."""
        return tuple(box.label for box in self.boxes)


class ItemResult(BaseModel):
    """Outcome of validating one record: the item (None when dropped) and what was found."""

    item: ValidItem | None
    problems: list[Problem]
    size: tuple[int, int] | None = Field(None, description="upright (width, height); None if it did not open")
    annotated: list[Box] = Field(
        default_factory=list, description="every box of the record on the upright image (object_index counts them)"
    )
    image: bytes | None = Field(
        None, exclude=True, repr=False, description="the file's bytes when kept, so that writing reads it no more"
    )
    class_pixels: dict[int, int] | None = Field(
        None, exclude=True, repr=False, description="the kept image's class map's pixels per class id, when it has one"
    )


@dataclass(frozen=True)
class _StoredImage:
    """An image file that opened: its bytes, stored size and format, and its EXIF orientation (1 when none)."""

    data: bytes
    width: int
    height: int
    image_format: str
    orientation: int

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) of the image turned upright by its EXIF orientation."""
        if self.orientation in _TRANSPOSED:
            return self.height, self.width
        return self.width, self.height


def validate_record(
    record: Record,
    known_labels: frozenset[str] | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    masks: MaskClasses | None = None,
) -> ItemResult:
    """Open the image, check it (at most max_pixels pixels) and every box; never raises on bad data. With `masks`
    (the dataset's classes as its masks name them; given when it has masks) the image's class map is built too."""
    opened = _open_image(record.image_path, record.filename, max_pixels)
    if isinstance(opened, Problem):
        return ItemResult(item=None, problems=[opened], annotated=record.boxes)
    problems: list[Problem] = []
    boxes = _upright_boxes(record, opened, problems)
    width, height = opened.upright_size
    kept = _check_boxes(boxes, known_labels, width, height, record.filename, problems)
    if (boxes or record.dropped_boxes) and not kept:
        message = (
            "every box of this image was dropped; the image is left out so its objects "
            "do not teach the model 'background'"
        )
        problems.append(error(record.filename, "no_valid_boxes", message))
        return ItemResult(item=None, problems=problems, size=(width, height), annotated=boxes)
    class_map = None
    if masks is not None:
        class_map = record_class_map(record, _annotated_frame(record, opened), masks, problems)
    passthrough = PASSTHROUGH_FORMATS.get(opened.image_format)
    item = ValidItem(
        image_path=record.image_path,
        filename=record.filename,
        width=width,
        height=height,
        boxes=[box.model_copy(update={"segmentation": None}) if box.segmentation is not None else box for box in kept],
        sha1=hashlib.sha1(opened.data).hexdigest(),
        image_format=passthrough or "jpeg",
        reencode=opened.orientation != 1 or passthrough is None,
        split=record.split.value if record.split else None,
        mask_png=class_map.png if class_map else None,
    )
    return ItemResult(
        item=item,
        problems=problems,
        size=(width, height),
        annotated=boxes,
        image=opened.data,
        class_pixels=class_map.pixels if class_map else None,
    )


def _open_image(path: Path, file: str, max_pixels: int) -> _StoredImage | Problem:
    """Read and decode the image file, or the error that drops it (unreadable, too large, not an image, corrupt).

    A JPEG is decoded at 1/8 scale (libjpeg's DCT scaling): every entropy-coded byte is still read, so truncation
    and broken markers are found as by a full decode, at about half the cost."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return error(file, "unreadable_image", f"cannot read the image file: {err.strerror or err}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                return error(
                    file,
                    "image_too_large",
                    f"image is {width}x{height} pixels, above the limit of {max_pixels:,}; downscale it",
                )
            image_format = image.format or ""
            if image_format == "JPEG":
                image.draft(image.mode, (1, 1))
            image.load()
            orientation = int(image.getexif().get(0x0112, 1) or 1)
    except Image.DecompressionBombError:
        return error(file, "image_too_large", "image declares a pixel count far above the limit (decompression bomb?)")
    except UnidentifiedImageError:
        return error(file, "unsupported_image", "not an image Pillow can read (JPEG, PNG, BMP, GIF, WebP are accepted)")
    except (OSError, SyntaxError, ValueError) as err:
        return error(file, "truncated_image", f"image data is corrupt or truncated ({err}); re-export the file")
    if orientation not in range(1, 9):
        orientation = 1
    return _StoredImage(data=data, width=width, height=height, image_format=image_format, orientation=orientation)


def _drawn_on_stored(record: Record, image: _StoredImage) -> bool:
    """Whether the annotation was drawn on the stored pixels of an EXIF-rotated image, not on the upright ones.

    Annotators differ: a file declaring the stored size was drawn on the stored pixels (labelImg and others ignore
    EXIF); one declaring the upright size, or nothing, on the upright image."""
    declared = (record.width, record.height) if record.width and record.height else None
    return image.orientation != 1 and declared == (image.width, image.height)


def _annotated_frame(record: Record, image: _StoredImage) -> Frame:
    """The pixels the annotation (boxes and masks alike) was drawn on, and the orientation that turns them upright."""
    if _drawn_on_stored(record, image):
        return Frame(image.width, image.height, image.orientation)
    width, height = image.upright_size
    return Frame(width, height, 1)


def _upright_boxes(record: Record, image: _StoredImage, problems: list[Problem]) -> list[Box]:
    """The record's boxes on the upright image, with a warning for an EXIF rotation or a declared size that is off."""
    boxes = list(record.boxes)
    stored = (image.width, image.height)
    declared = (record.width, record.height) if record.width and record.height else None
    if image.orientation != 1:
        if _drawn_on_stored(record, image):
            boxes = [_orient_box(b, image.orientation, image.width, image.height) for b in boxes]
        problems.append(
            warning(
                record.filename,
                "exif_rotated",
                f"EXIF orientation {image.orientation}: the image is stored rotated; it is re-encoded upright "
                "and its boxes are kept on the upright pixels",
            )
        )
    elif declared and declared != stored:
        problems.append(
            warning(
                record.filename,
                "size_mismatch",
                f"annotation declares {declared[0]}x{declared[1]} but the image is {image.width}x{image.height}; "
                "boxes are checked against the real size",
            )
        )
    return boxes


def _orient_box(box: Box, orientation: int, width: int, height: int) -> Box:
    """Map a box from stored pixels (width x height) to the upright image of this EXIF orientation."""
    corners = [(box.xmin, box.ymin), (box.xmax, box.ymax)]
    mapped = []
    for x, y in corners:
        if orientation == 2:
            x, y = width - x, y
        elif orientation == 3:
            x, y = width - x, height - y
        elif orientation == 4:
            x, y = x, height - y
        elif orientation == 5:
            x, y = y, x
        elif orientation == 6:
            x, y = height - y, x
        elif orientation == 7:
            x, y = height - y, width - x
        elif orientation == 8:
            x, y = y, width - x
        mapped.append((x, y))
    (x1, y1), (x2, y2) = mapped
    return box.model_copy(update={"xmin": min(x1, x2), "xmax": max(x1, x2), "ymin": min(y1, y2), "ymax": max(y1, y2)})


def _check_boxes(
    boxes: list[Box], known_labels: frozenset[str] | None, width: int, height: int, file: str, problems: list[Problem]
) -> list[Box]:
    """The boxes to keep: a known, printable label, on the image (clipped a little if need be), not a repeat."""
    kept: list[Box] = []
    for index, box in enumerate(boxes):
        if not is_printable(box.label):
            message = f"class name {box.label!r} holds a control character (e.g. NUL); fix its spelling"
            problems.append(error(file, "invalid_label", message, index))
            continue
        if known_labels is not None and box.label not in known_labels:
            problems.append(
                error(
                    file,
                    "unknown_class",
                    f"class {box.label!r} is not in the label map; add it or fix the spelling",
                    index,
                )
            )
            continue
        checked = _check_box(box, index, width, height, file, problems)
        if checked is None:
            continue
        if any(_same_box(checked, other) for other in kept):
            problems.append(
                warning(
                    file, "duplicate_box", "box repeats an earlier box of the same class; the copy was dropped", index
                )
            )
            continue
        kept.append(checked)
    return kept


def _check_box(box: Box, index: int, width: int, height: int, file: str, problems: list[Problem]) -> Box | None:
    """Return the box (clipped if it sticks out a little) or None when it must be dropped."""

    def drop(code: str, message: str) -> None:
        problems.append(error(file, code, message, index))

    coords = (box.xmin, box.ymin, box.xmax, box.ymax)
    if not all(math.isfinite(c) for c in coords):
        drop("invalid_box", f"box {coords} has a coordinate that is not a number; fix or remove it")
        return None
    if box.xmax <= box.xmin or box.ymax <= box.ymin:
        drop("degenerate_box", f"box {coords} has zero or negative area (need xmin < xmax and ymin < ymax)")
        return None
    slack_x, slack_y = max(3.0, CLIP_TOLERANCE * width), max(3.0, CLIP_TOLERANCE * height)
    if box.xmin < -slack_x or box.ymin < -slack_y or box.xmax > width + slack_x or box.ymax > height + slack_y:
        drop(
            "box_outside_image",
            f"box {coords} lies far outside the {width}x{height} image; check the coordinates (pixels, xmin ymin "
            "xmax ymax) and the image it belongs to",
        )
        return None
    clipped = box.model_copy(
        update={
            "xmin": max(0.0, box.xmin),
            "ymin": max(0.0, box.ymin),
            "xmax": min(float(width), box.xmax),
            "ymax": min(float(height), box.ymax),
        }
    )
    if clipped.xmax - clipped.xmin < MIN_BOX_SIDE or clipped.ymax - clipped.ymin < MIN_BOX_SIDE:
        drop("tiny_box", f"box {coords} is less than {MIN_BOX_SIDE:g} px wide or high inside the image")
        return None
    if clipped != box:
        problems.append(
            warning(
                file,
                "box_clipped",
                f"box {coords} sticks out of the {width}x{height} image a little and was clipped to it",
                index,
            )
        )
    return clipped


def _same_box(a: Box, b: Box) -> bool:
    return (
        a.label == b.label
        and max(abs(a.xmin - b.xmin), abs(a.ymin - b.ymin), abs(a.xmax - b.xmax), abs(a.ymax - b.ymax)) < 0.5
    )


def encoded_image(item: ValidItem, data: bytes | None = None) -> bytes:
    """The bytes to store for an item: the original file (`data` when already read), or an upright JPEG when it must
    be re-encoded."""
    data = item.image_path.read_bytes() if data is None else data
    if not item.reencode:
        return data
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    buffer = io.BytesIO()
    upright.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
