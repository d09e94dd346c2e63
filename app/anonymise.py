"""Images answered instead of boxes: the detections drawn, or blurred / pixelated away (anonymisation, e.g. of
licence plates), and several images packed in one zip.

Anonymised images keep their size and their format (a JPEG stays a JPEG with its EXIF and colour profile, a PNG
a PNG); boxes come in the pixels of the stored image, which is also what the model saw (EXIF orientation is not
applied by either).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import PurePath
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from effdet.predict import Detection, draw_detections, draw_segmentation

Annotation = Literal["boxes", "blur", "pixelate"]
"""What `?annotated=` asks for: the detections drawn (a JPEG), or each detection's area blurred or pixelated."""

PIXEL_BLOCKS = 8
"""A pixelated detection is shown as at most this many blocks across its shorter side."""
BLUR_SHARE = 0.25
"""The blur radius as a share of the box's shorter side: a plate's characters merge into one smear."""
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}
"""Formats written back as they came; anything else comes back as PNG."""


def _area(image: Image.Image, box: Sequence[float]) -> tuple[int, int, int, int] | None:
    """The whole pixels a box [xmin, ymin, xmax, ymax] covers, inside the image; None when none."""
    xmin, ymin, xmax, ymax = box
    left, top = max(0, int(xmin)), max(0, int(ymin))
    right, bottom = min(image.width, int(xmax + 0.999)), min(image.height, int(ymax + 0.999))
    return (left, top, right, bottom) if right > left and bottom > top else None


def _hidden(region: Image.Image, how: Literal["blur", "pixelate"]) -> Image.Image:
    """The region with its content made unreadable."""
    short = min(region.size)
    if how == "blur":
        return region.filter(ImageFilter.GaussianBlur(radius=max(2.0, BLUR_SHARE * short)))
    block = max(1, short // PIXEL_BLOCKS)
    small = (max(1, region.width // block), max(1, region.height // block))
    return region.resize(small, Image.Resampling.BOX).resize(region.size, Image.Resampling.NEAREST)


def anonymise(data: bytes, detections: Sequence[Detection], how: Literal["blur", "pixelate"]) -> tuple[bytes, str]:
    """The image with every detection's box blurred or pixelated: (encoded bytes, media type), same size and
    format as `data` (PNG for formats that are not written back)."""
    with Image.open(io.BytesIO(data)) as source:
        source.load()
        fmt = source.format if source.format in MEDIA_TYPES else "PNG"
        info = {key: source.info[key] for key in ("exif", "icc_profile", "dpi") if key in source.info}
        image = source.convert("RGBA" if "A" in source.getbands() or "transparency" in source.info else "RGB")
    for detection in detections:
        area = _area(image, detection.box)
        if area is not None:
            image.paste(_hidden(image.crop(area), how), area[:2])
    if fmt in ("JPEG", "BMP") and image.mode == "RGBA":
        image = image.convert("RGB")
    extra = {"quality": 95} if fmt == "JPEG" else {}
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **info, **extra)
    return buffer.getvalue(), MEDIA_TYPES[fmt]


def drawn(data: bytes, detections: Sequence[Detection], class_map: np.ndarray | None = None) -> tuple[bytes, str]:
    """The image as JPEG with its class map (a segmentation model's) and its detections drawn."""
    buffer = io.BytesIO()
    picture = draw_segmentation(data, class_map) if class_map is not None else data
    draw_detections(picture, detections).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), "image/jpeg"


def annotated_image(
    data: bytes, detections: Sequence[Detection], how: Annotation, class_map: np.ndarray | None = None
) -> tuple[bytes, str]:
    """One image answered as `how` asks: (bytes, media type)."""
    return drawn(data, detections, class_map) if how == "boxes" else anonymise(data, detections, how)


_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
}


def zipped(names: Sequence[str], images: Sequence[tuple[bytes, str]]) -> bytes:
    """Images in a zip under their upload names (extension matching what each became, repeats numbered)."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, (data, media_type) in zip(names, images, strict=True):
            stem = PurePath(name).stem or "image"
            candidate, counter = f"{stem}{_EXTENSIONS[media_type]}", 1
            while candidate in used:
                counter += 1
                candidate = f"{stem}-{counter}{_EXTENSIONS[media_type]}"
            used.add(candidate)
            archive.writestr(candidate, data)
    return buffer.getvalue()
