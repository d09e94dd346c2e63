"""Image and box validation: every broken input becomes a precise problem, never an exception."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effdet.data.records import Box, Record, Severity
from effdet.data.validate import encoded_image, validate_record


def jpeg(path: Path, width: int = 64, height: int = 48, orientation: int | None = None) -> Path:
    image = Image.new("RGB", (width, height), (10, 20, 30))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, format="JPEG", exif=exif.tobytes())
    return path


def record(path: Path, boxes: list[Box], width: int | None = None, height: int | None = None) -> Record:
    return Record(image_path=path, filename=path.name, annotation_file="a.xml", width=width, height=height, boxes=boxes)


def box(xmin: float, ymin: float, xmax: float, ymax: float, label: str = "plate") -> Box:
    return Box(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, label=label)


def codes(result_problems: list) -> list[str]:  # type: ignore[type-arg]
    return [p.code for p in result_problems]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds almost no data (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )


def test_good_image_and_box_pass_untouched(tmp_path: Path) -> None:
    result = validate_record(record(jpeg(tmp_path / "a.jpg"), [box(1, 2, 30, 40)], 64, 48))
    assert result.problems == []
    assert result.item is not None
    assert (result.item.width, result.item.height, result.item.image_format) == (64, 48, "jpeg")
    assert result.item.boxes == [box(1, 2, 30, 40)]
    assert not result.item.reencode


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda p: p.write_bytes(b"this is text, not a picture"), "unsupported_image"),
        (lambda p: p.write_bytes(jpeg(p).read_bytes()[:300]), "truncated_image"),
        (lambda p: p.write_bytes(png_header_only(100_000, 100_000)), "image_too_large"),
        (lambda p: None, "unreadable_image"),
    ],
    ids=["text-as-image", "truncated-jpeg", "decompression-bomb-png", "missing-file"],
)
def test_broken_images_are_dropped_with_the_right_problem(tmp_path: Path, make, code: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "broken.jpg"
    make(path)
    result = validate_record(record(path, [box(1, 1, 10, 10)]))
    assert result.item is None
    assert codes(result.problems) == [code]
    assert result.problems[0].severity == Severity.ERROR


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (box(10, 10, 10, 20), "degenerate_box"),
        (box(30, 10, 20, 20), "degenerate_box"),
        (box(float("nan"), 1, 5, 5), "invalid_box"),
        (box(100, 100, 200, 200), "box_outside_image"),
        (box(63.5, 10, 66, 20), "tiny_box"),
        (box(1, 1, 5, 5, label="car"), "unknown_class"),
    ],
)
def test_bad_boxes_are_dropped_and_the_image_kept(tmp_path: Path, bad: Box, code: str) -> None:
    result = validate_record(record(jpeg(tmp_path / "a.jpg"), [box(1, 1, 20, 20), bad]), frozenset({"plate"}))
    assert result.item is not None
    assert result.item.boxes == [box(1, 1, 20, 20)]
    assert codes(result.problems) == [code]
    assert result.problems[0].object_index == 1


def test_box_slightly_outside_is_clipped_with_a_warning(tmp_path: Path) -> None:
    result = validate_record(record(jpeg(tmp_path / "a.jpg"), [box(-1, -2, 65, 49)]))
    assert result.item is not None
    assert result.item.boxes == [box(0, 0, 64, 48)]
    assert codes(result.problems) == ["box_clipped"]
    assert result.problems[0].severity == Severity.WARNING


def test_duplicate_box_and_size_mismatch_are_warnings(tmp_path: Path) -> None:
    result = validate_record(record(jpeg(tmp_path / "a.jpg"), [box(1, 1, 9, 9), box(1, 1, 9, 9)], 640, 480))
    assert result.item is not None
    assert len(result.item.boxes) == 1
    assert codes(result.problems) == ["size_mismatch", "duplicate_box"]


def test_image_whose_boxes_are_all_bad_is_left_out(tmp_path: Path) -> None:
    result = validate_record(record(jpeg(tmp_path / "a.jpg"), [box(5, 5, 5, 5)]))
    assert result.item is None
    assert codes(result.problems) == ["degenerate_box", "no_valid_boxes"]


def test_image_without_boxes_is_a_negative_example(tmp_path: Path) -> None:
    result = validate_record(record(jpeg(tmp_path / "a.jpg"), []))
    assert result.item is not None
    assert result.item.boxes == []


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_rotated_jpeg_boxes_follow_the_upright_pixels(tmp_path: Path, orientation: int) -> None:
    # Stored 80x40 with a red block at x 10..30, y 5..15; the annotation was drawn on the stored pixels.
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[5:15, 10:30] = (255, 0, 0)
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=100, exif=exif.tobytes())

    result = validate_record(record(path, [box(10, 5, 30, 15)], 80, 40))
    assert result.item is not None
    assert "exif_rotated" in codes(result.problems)
    assert result.item.reencode
    upright = np.asarray(Image.open(io.BytesIO(encoded_image(result.item))))
    assert (upright.shape[1], upright.shape[0]) == (result.item.width, result.item.height)
    red = np.argwhere(upright[..., 0] > 128)
    (ymin, xmin), (ymax, xmax) = red.min(axis=0), red.max(axis=0) + 1
    mapped = result.item.boxes[0]
    assert (mapped.xmin, mapped.ymin, mapped.xmax, mapped.ymax) == pytest.approx((xmin, ymin, xmax, ymax), abs=1)


def test_png_passes_through_and_other_formats_are_reencoded(tmp_path: Path) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "a.bmp")
    png = validate_record(record(tmp_path / "a.png", []))
    bmp = validate_record(record(tmp_path / "a.bmp", []))
    assert png.item is not None
    assert bmp.item is not None
    assert (png.item.image_format, png.item.reencode) == ("png", False)
    assert (bmp.item.image_format, bmp.item.reencode) == ("jpeg", True)
    assert encoded_image(bmp.item)[:2] == b"\xff\xd8"
