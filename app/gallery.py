"""A converted dataset's images for the gallery: pages of its image index (effdet.data.image_index, read line by
line so memory stays flat) and thumbnails read straight from upload.zip and drawn with Pillow (no TensorFlow)."""

from __future__ import annotations

import io
import json
import os
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from effdet.data.image_index import matches
from effdet.data.ingest import UnsafeArchiveError, root_members

MAX_THUMBNAIL = 2048
"""The largest thumbnail side the API draws."""

KEPT_COLOUR = (0, 230, 0)
WARNED_COLOUR = (255, 170, 0)
DROPPED_COLOUR = (255, 0, 0)
"""Boxes kept as annotated, kept after a warning (e.g. clipped), and left out of the records."""

_TRANSPOSED = {5, 6, 7, 8}


class ImageUnavailableError(Exception):
    """The image cannot be drawn; `missing` tells a file that is absent (404) from one that is unusable (409)."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def page(
    index: Path, split: str | None, label: str | None, code: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The index lines that pass the filters, limit of them from offset, and how many pass in all."""
    items: list[dict[str, Any]] = []
    count = 0
    with index.open(encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            if not matches(entry, split, label, code):
                continue
            if offset <= count < offset + limit:
                items.append(entry)
            count += 1
    return items, count


def find(index: Path, image_id: str) -> dict[str, Any] | None:
    """The index line of one image, or None."""
    key = f'"id":"{image_id}"'
    with index.open(encoding="utf-8") as lines:
        for line in lines:
            if key in line:
                entry: dict[str, Any] = json.loads(line)
                if entry["id"] == image_id:
                    return entry
    return None


@lru_cache(maxsize=4)
def _members(upload: str, mtime_ns: int, size: int) -> dict[str, str]:
    """Index path -> zip member name for one upload (cached per file version: a zip's listing is read once)."""
    with zipfile.ZipFile(upload) as archive:
        return {path: info.filename for path, info in root_members(archive).items()}


def read_member(upload: Path, path: str) -> bytes:
    """The bytes of the image at `path` (relative to the dataset root) inside the upload zip."""
    try:
        stat = os.stat(upload)
        members = _members(str(upload), stat.st_mtime_ns, stat.st_size)
        name = members.get(path)
        if name is None:
            raise ImageUnavailableError(f"the upload holds no file {path!r}; upload the dataset again", missing=True)
        with zipfile.ZipFile(upload) as archive:
            return archive.read(name)
    except FileNotFoundError as err:
        raise ImageUnavailableError("the dataset's upload.zip is missing; upload the dataset again", True) from err
    except (zipfile.BadZipFile, UnsafeArchiveError, OSError, EOFError, NotImplementedError) as err:
        raise ImageUnavailableError(f"cannot read {path!r} from the upload ({err}); upload the dataset again") from err


def thumbnail(data: bytes, entry: dict[str, Any], size: int, max_pixels: int) -> bytes:
    """A JPEG of the image turned upright, its longest side at most `size`, with its boxes and labels drawn."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageUnavailableError(
                    f"the image is {width}x{height} pixels, above the server's limit of {max_pixels:,}"
                )
            orientation = int(image.getexif().get(0x0112, 1) or 1)
            image.draft("RGB", (size, size))
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except Image.DecompressionBombError as err:
        raise ImageUnavailableError(f"the image declares too many pixels ({err})") from err
    except UnidentifiedImageError as err:
        raise ImageUnavailableError("the file is not an image Pillow can read") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageUnavailableError(f"the image data is corrupt or truncated ({err})") from err
    full = (height, width) if orientation in _TRANSPOSED else (width, height)
    upright.thumbnail((size, size))
    _draw_boxes(upright, entry["boxes"], upright.width / full[0], upright.height / full[1])
    buffer = io.BytesIO()
    upright.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _draw_boxes(image: Image.Image, boxes: list[dict[str, Any]], scale_x: float, scale_y: float) -> None:
    """Each box's rectangle and label, in the colour of what became of it."""
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 200))
    font = ImageFont.load_default(size=max(10, round(max(image.size) / 50)))
    for box in boxes:
        if box["bbox"] is None:
            continue
        xmin, ymin, xmax, ymax = box["bbox"]
        x0, x1 = sorted((xmin * scale_x, xmax * scale_x))
        y0, y1 = sorted((ymin * scale_y, ymax * scale_y))
        colour = DROPPED_COLOUR if box["dropped"] else WARNED_COLOUR if box["problem"] else KEPT_COLOUR
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        text = box["label"] if not box["problem"] else f"{box['label']}: {box['problem']}"
        left, top, right, bottom = draw.textbbox((x0 + line, y0 + line), text, font=font)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=colour)
        draw.text((x0 + line, y0 + line), text, fill=(0, 0, 0), font=font)
