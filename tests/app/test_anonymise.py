"""Anonymised answers: detections blurred or pixelated in place, the image's size, format and metadata kept."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from app.anonymise import annotated_image, anonymise, zipped
from effdet.predict import Detection

BOX = Detection(box=[20.0, 10.0, 60.5, 30.2], score=0.9, class_id=1, label="plate")


def _noise(fmt: str, size: tuple[int, int] = (80, 50), **options: object) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("how", ["blur", "pixelate"])
def test_only_the_detections_change_and_lose_their_detail(how: str) -> None:
    original = _noise("PNG")
    hidden, media_type = anonymise(original, [BOX], how)  # type: ignore[arg-type]
    assert media_type == "image/png"
    before, after = _pixels(original), _pixels(hidden)
    assert after.shape == before.shape
    inside = (slice(10, 31), slice(20, 61))
    outside = np.ones(before.shape[:2], bool)
    outside[inside] = False
    np.testing.assert_array_equal(after[outside], before[outside])
    # Noise has neighbours about 85 apart on average; a blurred or pixelated area has far smaller steps.
    steps = np.abs(np.diff(after[inside], axis=1)).mean()
    assert steps < 0.3 * np.abs(np.diff(before[inside], axis=1)).mean()


def test_a_jpeg_stays_a_jpeg_with_its_exif_and_nothing_outside_the_image_is_touched() -> None:
    exif = Image.Exif()
    exif[0x010F] = "plate-camera"  # Make
    original = _noise("JPEG", exif=exif.tobytes())
    off_image = Detection(box=[-30.0, -20.0, -5.0, -1.0], score=0.5, class_id=1, label="plate")
    hidden, media_type = anonymise(original, [BOX, off_image], "blur")
    assert media_type == "image/jpeg"
    image = Image.open(io.BytesIO(hidden))
    assert (image.format, image.size) == ("JPEG", (80, 50))
    assert image.getexif()[0x010F] == "plate-camera"


def test_boxes_drawn_are_a_jpeg_and_several_images_zip_under_their_names() -> None:
    drawn, media_type = annotated_image(_noise("PNG"), [BOX], "boxes")
    assert media_type == "image/jpeg"
    blurred = anonymise(_noise("PNG"), [BOX], "blur")
    archive = zipfile.ZipFile(
        io.BytesIO(zipped(["a.png", "dir/a.png", "b.jpeg"], [blurred, blurred, (drawn, media_type)]))
    )
    assert archive.namelist() == ["a.png", "a-2.png", "b.jpg"]
    assert Image.open(archive.open("b.jpg")).format == "JPEG"
