"""A corpus of bad dataset uploads, built in memory: each case is the bytes to upload and what the service must
make of them (a 4xx saying what to fix, a failed dataset with a clear error, or a ready dataset that lists the
problem by its code and file). Most cases add one defect to a small valid VOC dataset, so that the defect's
problem is the one thing to look for."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

Outcome = Literal["rejected", "failed", "ready"]
Build = Callable[[], bytes]


@dataclass(frozen=True)
class BadUpload:
    """One corpus entry: how to build the upload, and the outcome, status and texts expected of it."""

    name: str
    build: Build
    outcome: Outcome
    status: int = 202
    message: str = ""
    problems: tuple[tuple[str, str], ...] = ()
    images: int | None = None
    fields: dict[str, str] = field(default_factory=dict)


def rejected(name: str, build: Build, status: int, message: str, fields: dict[str, str] | None = None) -> BadUpload:
    """An upload the API refuses at once with `status` and a detail containing `message`."""
    return BadUpload(name, build, "rejected", status, message, fields=fields or {})


def failed(
    name: str, build: Build, message: str, *problems: tuple[str, str], fields: dict[str, str] | None = None
) -> BadUpload:
    """An upload accepted, whose conversion fails with an error containing `message` (and lists `problems`)."""
    return BadUpload(name, build, "failed", message=message, problems=problems, fields=fields or {})


def ready(
    name: str, build: Build, images: int, *problems: tuple[str, str], fields: dict[str, str] | None = None
) -> BadUpload:
    """An upload converted to a ready dataset of `images` images, listing each (code, file) problem."""
    return BadUpload(name, build, "ready", problems=problems, images=images, fields=fields or {})


def zip_of(entries: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    """A zip holding these files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def image(width: int = 64, height: int = 48, fmt: str = "JPEG") -> bytes:
    """A small real image (a gradient, so every file differs by its size)."""
    picture = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    return buffer.getvalue()


def voc_xml(filename: str, *boxes: tuple[str, object, object, object, object], size: object = (64, 48)) -> bytes:
    """A Pascal VOC annotation naming `filename` with (label, xmin, ymin, xmax, ymax) boxes."""
    width, height = size if isinstance(size, tuple) else (size, size)
    objects = "".join(
        f"<object><name>{label}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>"
        for label, x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
        f"</size>{objects}</annotation>"
    ).encode()


BOX = ("plate", 8, 8, 40, 30)
GOOD = {"ds/good.jpg": image(64, 48), "ds/good.xml": voc_xml("good.jpg", BOX)}
"""The valid image every VOC case starts from."""
GOOD_ZIP = zip_of(GOOD)


def voc(**extra: bytes) -> Build:
    """The good VOC dataset plus extra files (keyword = path under ds/, '__' for '/')."""
    return lambda: zip_of({**GOOD, **{f"ds/{k.replace('__', '/')}": v for k, v in extra.items()}})


def voc_with(stem: str, data: bytes, *boxes: tuple[str, object, object, object, object]) -> Build:
    """The good VOC dataset plus `stem`.jpg holding `data`, annotated with `boxes` (default: one good box)."""
    return voc(**{f"{stem}.jpg": data, f"{stem}.xml": voc_xml(f"{stem}.jpg", *(boxes or (BOX,)))})


def second_image(stem: str, *boxes: tuple[str, object, object, object, object], size: object = (64, 48)) -> Build:
    """The good VOC dataset plus a second real image whose annotation holds `boxes`."""
    return voc(**{f"{stem}.jpg": image(65, 48), f"{stem}.xml": voc_xml(f"{stem}.jpg", *boxes, size=size)})


def coco(images: list[object], annotations: list[object], categories: list[object], broken: bytes = b"") -> Build:
    """A COCO dataset of good.jpg and other.jpg with this JSON (and a second, broken JSON file if given)."""
    document = {"images": images, "annotations": annotations, "categories": categories}
    files = {"c/good.jpg": image(64, 48), "c/other.jpg": image(65, 48), "c/labels.json": json.dumps(document).encode()}
    return lambda: zip_of({**files, **({"c/broken.json": broken} if broken else {})})


COCO_IMAGES = [{"id": 1, "file_name": "good.jpg"}, {"id": 2, "file_name": "other.jpg"}]
COCO_CATEGORIES = [{"id": 1, "name": "plate"}]
COCO_GOOD_BOX = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 30, 20]}


def coco_box(categories: list[object] = COCO_CATEGORIES, **entry: object) -> Build:
    """The COCO dataset with a good box on good.jpg and this annotation on other.jpg."""
    return coco(COCO_IMAGES, [COCO_GOOD_BOX, {"id": 2, "image_id": 2, "category_id": 1, **entry}], categories)


def yolo(line: bytes) -> Build:
    """A YOLO dataset (classes plate) of a good image and a second one labelled by a good box and `line`."""
    return lambda: zip_of(
        {
            "y/classes.txt": b"plate\n",
            "y/good.jpg": image(64, 48),
            "y/good.txt": b"0 0.5 0.5 0.4 0.4\n",
            "y/other.jpg": image(65, 48),
            "y/other.txt": b"0 0.5 0.5 0.3 0.3\n" + line,
        }
    )


def csv(rows: str) -> Build:
    """A CSV dataset (filename,xmin,ymin,xmax,ymax,class) of good.jpg and other.jpg with these extra rows."""
    head = "filename,xmin,ymin,xmax,ymax,class\ngood.jpg,8,8,40,30,plate\n"
    return lambda: zip_of(
        {"v/good.jpg": image(64, 48), "v/other.jpg": image(65, 48), "v/boxes.csv": (head + rows).encode()}
    )


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height grey pixels but whose data is a few bytes (a bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    data = bytearray(image(64, 48))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def corrupt_png() -> bytes:
    """A PNG whose image data chunk is garbage (its CRC no longer matches)."""
    data = bytearray(image(64, 48, "PNG"))
    start = data.index(b"IDAT") + 8
    data[start : start + 16] = b"\xde\xad\xbe\xef" * 4
    return bytes(data)


def garbage_jpeg() -> bytes:
    """A JPEG start-of-image marker followed by noise."""
    return b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<annotation><filename>laughs.jpg</filename><object><name>&lol9;</name></object></annotation>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><filename>xxe.jpg</filename><object><name>&secret;</name></object></annotation>"""


def with_raw_name(entries: dict[str, bytes], name: str, raw: bytes) -> Build:
    """A zip whose entry `name` is stored under the raw bytes `raw` (same length), e.g. invalid UTF-8."""
    return lambda: zip_of(entries).replace(name.encode(), raw)


def encrypted() -> bytes:
    """A zip whose member says it is encrypted (flag bit 0 in its local and central headers)."""
    data = bytearray(zip_of({"ds/secret.xml": b"x"}))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(signature) + offset] |= 0x1
    return bytes(data)


def lying_bomb() -> bytes:
    """4 MiB of zeros whose headers declare 100 bytes: the declared-size check passes, unpacking must not."""
    data = bytearray(zip_of({"ds/zeros.xml": b"\0" * (4 * 1024 * 1024)}, zipfile.ZIP_DEFLATED))
    real = struct.pack("<I", 4 * 1024 * 1024)
    for at in (i for i in range(len(data) - 3) if data[i : i + 4] == real):
        data[at : at + 4] = struct.pack("<I", 100)
    return bytes(data)


def corrupt_member() -> bytes:
    """A zip whose directory is intact but whose image bytes were damaged in transit (CRC mismatch)."""
    data = bytearray(zip_of(GOOD))
    start = data.index(b"JFIF") + 40
    data[start : start + 8] = b"\x00" * 8
    return bytes(data)


CORPUS: list[BadUpload] = [
    # refused at upload, before anything is stored
    rejected("empty_zip", lambda: zip_of({}), 422, "the zip is empty"),
    rejected("only_folders", lambda: zip_of({"ds/": b"", "ds/images/": b""}), 422, "the zip is empty"),
    rejected("truncated_zip", lambda: truncated(GOOD_ZIP), 422, "not a zip file"),
    rejected("text_as_zip", lambda: b"filename,xmin\ngood.jpg,1\n", 422, "not a zip file"),
    rejected("png_as_zip", lambda: image(8, 8, "PNG"), 422, "not a zip file"),
    rejected("zip_slip_backslash", lambda: zip_of({"ds\\..\\..\\evil.xml": b"x"}), 422, "leaving its folder"),
    rejected("windows_drive_path", lambda: zip_of({"C:/evil.xml": b"x"}), 422, "absolute path"),
    rejected("encrypted_member", encrypted, 422, "encrypted"),
    rejected(
        "invalid_utf8_name",
        with_raw_name({**GOOD, "ds/caf\u00e9.jpg": image()}, "caf\u00e9", b"caf\xc3\x28"),
        422,
        "not valid UTF-8",
    ),
    rejected("nul_in_name_field", lambda: GOOD_ZIP, 422, "control character", fields={"name": "plates\x00"}),
    rejected("val_fraction_nan", lambda: GOOD_ZIP, 422, "val_fraction", fields={"val_fraction": "nan"}),
    # accepted, then the conversion fails with a message that says why
    failed("zip_bomb_lying_header", lying_bomb, "damaged"),
    failed("corrupt_member", corrupt_member, "damaged"),
    failed("nested_zip", lambda: zip_of({"outer/inner.zip": GOOD_ZIP}), "A zip inside the zip is not unpacked"),
    rejected("only_macos_debris", lambda: zip_of({"__MACOSX/ds/._a.jpg": b"x", ".DS_Store": b"x"}), 422, "__MACOSX"),
    failed("images_without_annotations", lambda: zip_of({"ds/a.jpg": image()}), "cannot tell the annotation format"),
    failed("wrong_format_named", voc(), "no usable image", (("no_annotation_files", ".")), fields={"format": "coco"}),
    failed(
        "every_image_broken",
        lambda: zip_of({"ds/a.jpg": b"not an image", "ds/a.xml": voc_xml("a.jpg", BOX)}),
        "no usable image",
        ("unsupported_image", "a.jpg"),
    ),
    failed("garbage_tfrecord", lambda: zip_of({"r/train.tfrecord": b"\x01\x02garbage" * 64}), "no usable image"),
    # accepted; the dataset is ready and names each defect by its code and file
    ready("text_as_image", voc_with("text", b"hello, I am not a picture"), 1, ("unsupported_image", "text.jpg")),
    ready("truncated_jpeg", voc_with("cut", truncated(image(64, 48))), 1, ("truncated_image", "cut.jpg")),
    ready("truncated_png", voc_with("cut", truncated(image(64, 48, "PNG"))), 1, ("truncated_image", "cut.jpg")),
    ready("garbage_jpeg", voc_with("noise", garbage_jpeg()), 1, ("unsupported_image", "noise.jpg")),
    ready("corrupt_png", voc_with("bad", corrupt_png()), 1, ("truncated_image", "bad.jpg")),
    ready("empty_image", voc_with("empty", b""), 1, ("unsupported_image", "empty.jpg")),
    ready("png_named_jpg", voc_with("png", image(64, 48, "PNG")), 2),
    ready(
        "decompression_bomb_png", voc_with("bomb", png_declaring(100_000, 100_000)), 1, ("image_too_large", "bomb.jpg")
    ),
    ready("huge_declared_jpeg", voc_with("huge", jpeg_declaring(6000, 5000)), 1, ("image_too_large", "huge.jpg")),
    ready(
        "billion_laughs_xml",
        voc(**{"laughs.jpg": image(66, 48), "laughs.xml": BILLION_LAUGHS}),
        1,
        ("unsafe_xml", "laughs.xml"),
    ),
    ready(
        "external_entity_xml",
        voc(**{"xxe.jpg": image(66, 48), "xxe.xml": EXTERNAL_ENTITY}),
        1,
        ("unsafe_xml", "xxe.xml"),
    ),
    ready(
        "malformed_xml",
        voc(**{"bad.jpg": image(66, 48), "bad.xml": b"<annotation><object>"}),
        1,
        ("malformed_xml", "bad.xml"),
    ),
    ready(
        "box_out_of_range", second_image("far", BOX, ("plate", 10, 10, 900, 40)), 2, ("box_outside_image", "far.jpg")
    ),
    ready("negative_box", second_image("neg", BOX, ("plate", 40, 30, 8, 8)), 2, ("degenerate_box", "neg.jpg")),
    ready(
        "nan_coordinate", second_image("nan", BOX, ("plate", "nan", 8, 40, 30)), 2, ("invalid_coordinate", "nan.xml")
    ),
    ready("negative_image_size", second_image("size", BOX, size=(-64, 48)), 2, ("invalid_size", "size.xml")),
    ready("missing_image", voc(**{"ghost.xml": voc_xml("ghost.jpg", BOX)}), 1, ("missing_image", "ghost.xml")),
    ready(
        "coco_malformed_json",
        coco(COCO_IMAGES, [COCO_GOOD_BOX], COCO_CATEGORIES, b'{"images": [{"id": 1,'),
        2,
        ("malformed_json", "broken.json"),
    ),
    ready(
        "coco_unknown_category",
        coco_box(category_id=7, bbox=[1, 1, 20, 20]),
        1,
        ("unknown_category", "labels.json"),
        ("no_valid_boxes", "other.jpg"),
    ),
    ready("coco_negative_size", coco_box(bbox=[30, 30, -20, -20]), 1, ("degenerate_box", "other.jpg")),
    ready(
        "coco_string_bbox",
        coco_box(bbox=["1", "1", "20", "20"]),
        1,
        ("invalid_bbox", "labels.json"),
        ("no_valid_boxes", "other.jpg"),
    ),
    ready(
        "coco_unknown_image_id",
        coco(
            COCO_IMAGES,
            [COCO_GOOD_BOX, {"id": 2, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]}],
            COCO_CATEGORIES,
        ),
        2,
        ("unknown_image_id", "labels.json"),
    ),
    ready(
        "coco_nul_in_class_name",
        coco_box(category_id=2, bbox=[1, 1, 20, 20], categories=[*COCO_CATEGORIES, {"id": 2, "name": "pl\u0000ate"}]),
        1,
        ("invalid_label", "other.jpg"),
    ),
    ready("yolo_unknown_class", yolo(b"5 0.5 0.5 0.2 0.2\n"), 2, ("unknown_class_id", "other.txt")),
    ready("yolo_out_of_range", yolo(b"0 1.7 0.5 0.2 0.2\n"), 2, ("box_outside_image", "other.jpg")),
    ready("yolo_short_line", yolo(b"0 0.5 0.5\n"), 2, ("invalid_line", "other.txt")),
    ready("yolo_binary_labels", yolo(b"\xff\xfe\x00garbage"), 1, ("unreadable_file", "other.txt")),
    ready("csv_non_numeric", csv("other.jpg,a,b,c,d,plate\n"), 1, ("invalid_coordinate", "boxes.csv")),
    ready("csv_unknown_image", csv("ghost.jpg,1,1,20,20,plate\n"), 1, ("missing_image", "boxes.csv")),
    ready(
        "cp437_names",
        with_raw_name(
            {**GOOD, "ds/cafX.jpg": image(66, 48), "ds/cafX.xml": voc_xml("unnamed.jpg", BOX)}, "cafX", b"caf\x82"
        ),
        2,
    ),
]
