"""Synthetic licence-plate scenes, for learning tests that need data which is quick to make and exactly labelled.

A scene is a cluttered background (gradient, shapes, noise) with one plate, sometimes two or three that do not
overlap: a light rectangle with a dark border and dark glyphs, 15%..60% of the image width (up to 35% beside other
plates), rotated and put in mild perspective, dimmed or brightened, blurred and noised. Each plate is pasted
through a binary mask, so its box is the exact axis-aligned bounding box of the pixels it covers: [xmin, ymin,
xmax, ymax] as pixel edges (xmax is the last covered column + 1). Everything is drawn from one
`np.random.Generator`, so a seed fixes every pixel and every byte `write_dataset` writes.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from effdet.data.records import Box

SyntheticFormat = Literal["voc", "coco", "ccpd"]
SYNTHETIC_FORMATS: tuple[str, ...] = get_args(SyntheticFormat)
PLATE_ASPECTS = (2.0, 4.7)
"""Width / height of a drawn plate face, drawn uniformly: from square-ish two-row plates to long EU plates."""
PLATE_LABEL = "plate"

# CCPD's character tables (detectRecog/CCPD README): a plate number is one province, one letter, five
# letters or digits, written in a file name as indices into these; the trailing "O" means "no character".
CCPD_PROVINCES = "皖沪津渝冀晋蒙辽吉黑苏浙京闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新警学O"
CCPD_ALPHABETS = "ABCDEFGHJKLMNPQRSTUVWXYZO"
CCPD_ADS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789O"

_FACE_HEIGHT = 48
"""Height in pixels at which a plate face is drawn before it is warped into the scene."""
_GLYPHS = CCPD_ADS[:-1]
_PLATE_COUNTS = (1, 2, 3)
_PLATE_COUNT_PROBABILITIES = (0.75, 0.17, 0.08)
_JPEG_QUALITY = 90


@dataclass(frozen=True)
class RenderedPlate:
    """One plate as placed in a scene.

    box: its exact pixel bounding box. corners: float [4, 2] as (x, y) of the face's top-left, top-right,
    bottom-right and bottom-left corners in scene pixels. brightness: mean face luminance in 0..255.
    blur: Gaussian blur radius in scene pixels.
    """

    box: Box
    corners: np.ndarray
    brightness: float
    blur: float


def render_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A plate-free scene: a two-colour gradient at a random angle, random shapes, Gaussian noise.

    `render_scene` draws this first from the same generator, so for equal generator states its result is
    this image with plates pasted on: every pixel that differs belongs to a plate.
    """
    start, end = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    gradient = start + ramp[..., None] * (end - start)
    image = Image.fromarray(gradient.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 13))):
        _draw_clutter(rng, draw, width, height)
    noise = rng.normal(0.0, rng.uniform(2.0, 14.0), size=(height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def render_scene(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, list[Box]]:
    """An RGB scene of width x height with 1 plate (sometimes 2 or 3) and their exact boxes, label 'plate'."""
    image, plates = render_plates(rng, width, height, max_plates=len(_PLATE_COUNTS))
    return image, [plate.box for plate in plates]


def render_plates(
    rng: np.random.Generator,
    width: int,
    height: int,
    max_plates: int,
    plate_width: tuple[int, int] | None = None,
    plate_aspect: tuple[float, float] = PLATE_ASPECTS,
) -> tuple[Image.Image, list[RenderedPlate]]:
    """`render_scene` with the plates' corners, brightness and blur, and at most `max_plates` plates; plate_width
    (min, max) in pixels replaces the default of 15-60 % of the scene's width (small plates in large scenes), and
    plate_aspect (min, max width / height of the face) the default PLATE_ASPECTS."""
    if width < 32 or height < 32:
        raise ValueError(f"scene size {width}x{height} is too small for a plate; use at least 32x32")
    image = render_background(rng, width, height)
    count = min(max_plates, int(rng.choice(_PLATE_COUNTS, p=_PLATE_COUNT_PROBABILITIES)))
    plates: list[RenderedPlate] = []
    for _ in range(count):
        fraction = 0.6 if count == 1 else 0.35
        widths = plate_width or (0.15 * width, fraction * width)
        plate = _paste_plate(rng, image, plates, widths, plate_aspect)
        if plate is None:
            break
        plates.append(plate)
    return image, plates


def plate_class_map(plates: list[RenderedPlate], width: int, height: int, label: int = 1) -> np.ndarray:
    """uint8 [height, width] class map of a scene: `label` inside each plate's quadrilateral, 0 elsewhere (drawn
    from the corners, with no draw of the generator, so scenes stay byte-identical for a seed)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for plate in plates:
        draw.polygon([(float(x), float(y)) for x, y in plate.corners], fill=label)
    return np.asarray(canvas, dtype=np.uint8)


def _draw_clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    x0, x1 = sorted(rng.uniform(-0.2, 1.2, size=2) * width)
    y0, y1 = sorted(rng.uniform(-0.2, 1.2, size=2) * height)
    kind = int(rng.integers(0, 4))
    if kind == 0:
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif kind == 1:
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif kind == 2:
        draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 8)))
    else:
        points = rng.uniform(0, 1, size=(int(rng.integers(3, 7)), 2)) * (width, height)
        draw.polygon([(float(x), float(y)) for x, y in points], fill=colour)


def _paste_plate(
    rng: np.random.Generator,
    image: Image.Image,
    placed: list[RenderedPlate],
    widths: tuple[float, float],
    aspects: tuple[float, float],
) -> RenderedPlate | None:
    """Warp a new plate face into `image` away from the `placed` plates; None when no free spot was found."""
    width, height = image.size
    face = _plate_face(rng, aspect=rng.uniform(*aspects))
    plate_width = rng.uniform(*widths)
    corners = _plate_quad(rng, plate_width, plate_width * face.height / face.width)
    extent = corners.max(axis=0) - corners.min(axis=0)
    corners = (corners - corners.min(axis=0)) * min(1.0, (width - 4) / extent[0], (height - 4) / extent[1])
    spot = _free_spot(rng, corners.max(axis=0), image.size, placed)
    if spot is None:
        return None
    left, top, right, bottom = spot
    quad = corners + np.array([left + 1, top + 1]) + rng.uniform(0.0, 1.0, size=2)
    size = (right - left, bottom - top)
    coefficients = _perspective_coefficients(quad - (left, top), face.size)
    mask = Image.new("L", face.size, 255).transform(
        size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.NEAREST
    )
    covered = mask.getbbox()
    if covered is None:
        return None
    fill = tuple(int(c) for c in np.asarray(face)[0, 0])
    layer = face.transform(size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR, fillcolor=fill)
    blur = float(rng.choice([0.0, rng.uniform(0.3, 1.5)], p=[0.4, 0.6]))
    if blur:
        layer = layer.filter(ImageFilter.GaussianBlur(blur))
    noisy = np.asarray(layer, dtype=np.float32) + rng.normal(0.0, rng.uniform(1.0, 8.0), size=(size[1], size[0], 3))
    image.paste(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), (left, top), mask)
    x0, y0, x1, y1 = covered
    box = Box(xmin=left + x0, ymin=top + y0, xmax=left + x1, ymax=top + y1, label=PLATE_LABEL)
    brightness = float(np.asarray(face.convert("L"), dtype=np.float32).mean())
    return RenderedPlate(box=box, corners=quad, brightness=brightness, blur=blur)


def _free_spot(
    rng: np.random.Generator, extent: np.ndarray, image_size: tuple[int, int], placed: list[RenderedPlate]
) -> tuple[int, int, int, int] | None:
    """A pixel rectangle (left, top, right, bottom) inside the image and clear of the placed plates, that holds
    a quad of `extent` (width, height) shifted by (left + 1, top + 1) plus up to a pixel; None after 20 tries."""
    width, height = image_size
    span_x, span_y = (int(v) + 3 for v in np.ceil(extent))
    for _ in range(20):
        left, top = (int(rng.integers(0, size - span + 1)) for size, span in ((width, span_x), (height, span_y)))
        right, bottom = left + span_x, top + span_y
        if not any(_near(plate.box, (left, top, right, bottom)) for plate in placed):
            return left, top, right, bottom
    return None


def _near(box: Box, other: tuple[int, int, int, int], gap: int = 2) -> bool:
    """Whether `box` and the pixel rectangle `other` (left, top, right, bottom) come within `gap` pixels."""
    left, top, right, bottom = other
    return not (box.xmax + gap <= left or right + gap <= box.xmin or box.ymax + gap <= top or bottom + gap <= box.ymin)


def _plate_quad(rng: np.random.Generator, plate_width: float, plate_height: float) -> np.ndarray:
    """Corners (top-left, top-right, bottom-right, bottom-left) of a rotated rectangle with jittered corners."""
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * (plate_width / 2, plate_height / 2)
    angle = math.radians(rng.uniform(-12.0, 12.0))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    jitter = rng.uniform(-0.06, 0.06, size=(4, 2)) * (plate_width, plate_height)
    return np.asarray(half @ rotation.T + jitter)


def _perspective_coefficients(quad: np.ndarray, face_size: tuple[int, int]) -> tuple[float, ...]:
    """PIL's PERSPECTIVE data (a..h), mapping output pixels inside `quad` back onto the face's corners."""
    face_width, face_height = face_size
    face_corners = [(0, 0), (face_width, 0), (face_width, face_height), (0, face_height)]
    rows, targets = [], []
    for (x, y), (u, v) in zip(quad, face_corners, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        targets.extend([u, v])
    solution = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(targets, dtype=np.float64))
    return tuple(float(c) for c in solution)


def _plate_face(rng: np.random.Generator, aspect: float) -> Image.Image:
    """A flat plate: light fill, dark border, a row of dark glyphs, lit by a random brightness factor."""
    face_width = round(_FACE_HEIGHT * aspect)
    base = rng.uniform(200, 250)
    fill = np.clip(base + rng.uniform(-15, 15, size=3), 0, 255)
    ink = rng.uniform(0, 60, size=3)
    face = Image.new("RGB", (face_width, _FACE_HEIGHT), tuple(int(c) for c in fill))
    draw = ImageDraw.Draw(face)
    border = int(rng.integers(2, 5))
    ink_colour = tuple(int(c) for c in ink)
    draw.rectangle((0, 0, face_width - 1, _FACE_HEIGHT - 1), outline=ink_colour, width=border)
    font = _font(round(_FACE_HEIGHT * 0.62))
    room = face_width - 4 * border
    count = int(rng.integers(4, 8))
    text = "".join(str(c) for c in rng.choice(list(_GLYPHS), size=count))
    while len(text) > 2 and draw.textlength(text, font=font) > room:
        text = text[:-1]
    draw.text((face_width / 2, _FACE_HEIGHT / 2), text, fill=ink_colour, font=font, anchor="mm")
    lit = np.asarray(face, dtype=np.float32) * rng.uniform(0.7, 1.1)
    return Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8))


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def write_dataset(
    output: Path,
    num_images: int,
    format: SyntheticFormat,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 240),
    progress: Callable[[int, int], None] | None = None,
    plate_width: tuple[int, int] | None = None,
    plate_aspect: tuple[float, float] = PLATE_ASPECTS,
    masks: bool = False,
) -> Path:
    """Write `num_images` synthetic scenes of image_size (width, height) under `output` and return it.

    Layout: `images/*.jpg` plus `annotations/*.xml` (voc, labelImg style) or `annotations.json` (coco), or
    CCPD file names that carry the one plate of each image (ccpd). Image i depends only on (seed, i), so the
    same arguments write the same bytes. `progress(done, total)` is called after each image; plate_width
    (min, max pixels) makes plates of that width instead of a share of the scene, plate_aspect of that shape.
    With masks (coco only), each annotation also gets its plate's quadrilateral as a COCO `segmentation` polygon,
    for segmentation; the images stay the same bytes. VOC's SegmentationClass PNGs name classes by VOC's palette,
    which has no 'plate', so the voc layout cannot carry them.
    """
    if format not in SYNTHETIC_FORMATS:
        raise ValueError(f"unknown synthetic format {format!r}; choose one of {', '.join(SYNTHETIC_FORMATS)}")
    if masks and format != "coco":
        raise ValueError(
            f"masks are written as COCO polygons; use format 'coco', not {format!r} (VOC SegmentationClass PNGs "
            "name their classes by VOC's palette, which has no 'plate')"
        )
    if num_images < 0:
        raise ValueError(f"num_images must be 0 or more, got {num_images}")
    width, height = image_size
    images_dir = output / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(num_images - 1)))
    coco: dict[str, list[dict[str, Any]]] = {"images": [], "annotations": []}
    used_names: set[str] = set()
    for index in range(num_images):
        rng = np.random.default_rng([seed, index])
        most = 1 if format == "ccpd" else len(_PLATE_COUNTS)
        image, plates = render_plates(rng, width, height, most, plate_width, plate_aspect)
        if format == "ccpd":
            name = _ccpd_name(rng, plates[0], width, height)
            while name in used_names:
                name = _ccpd_name(rng, plates[0], width, height)
            used_names.add(name)
        else:
            name = f"synthetic-{index:0{digits}d}.jpg"
        image.save(images_dir / name, format="JPEG", quality=_JPEG_QUALITY)
        boxes = [plate.box for plate in plates]
        if format == "voc":
            annotations_dir = output / "annotations"
            annotations_dir.mkdir(exist_ok=True)
            (annotations_dir / f"{Path(name).stem}.xml").write_text(_voc_xml(name, width, height, boxes))
        elif format == "coco":
            _add_coco_image(coco, index + 1, name, (width, height), plates, masks)
        if progress is not None:
            progress(index + 1, num_images)
    if format == "coco":
        document = {**coco, "categories": [{"id": 1, "name": PLATE_LABEL, "supercategory": "none"}]}
        (output / "annotations.json").write_text(json.dumps(document, indent=1) + "\n")
    return output


def _voc_xml(filename: str, width: int, height: int, boxes: list[Box]) -> str:
    """A labelImg-style Pascal VOC annotation with integer pixel coordinates."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "images"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = box.label
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            ET.SubElement(bndbox, tag).text = str(round(getattr(box, tag)))
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _add_coco_image(
    coco: dict[str, list[dict[str, Any]]],
    image_id: int,
    filename: str,
    size: tuple[int, int],
    plates: list[RenderedPlate],
    masks: bool,
) -> None:
    """Add one image of size (width, height) and its plates (with their quadrilaterals when masks) to `coco`."""
    width, height = size
    coco["images"].append({"id": image_id, "file_name": filename, "width": width, "height": height})
    for plate in plates:
        box = plate.box
        box_width, box_height = box.xmax - box.xmin, box.ymax - box.ymin
        annotation: dict[str, Any] = {
            "id": len(coco["annotations"]) + 1,
            "image_id": image_id,
            "category_id": 1,
            "bbox": [box.xmin, box.ymin, box_width, box_height],
            "area": box_width * box_height,
            "iscrowd": 0,
        }
        if masks:
            annotation["segmentation"] = [[round(float(c), 2) for c in plate.corners.ravel()]]
        coco["annotations"].append(annotation)


def _ccpd_name(rng: np.random.Generator, plate: RenderedPlate, width: int, height: int) -> str:
    """A CCPD file name: area-tilt-box-corners-number-brightness-blur.jpg.

    area: plate box area per mille of the image; tilt: 90 + the angle in degrees of the bottom edge and of the
    left edge (90_90 is an upright plate); corners from the bottom-right one, clockwise, clipped to the box;
    number: random CCPD indices (the glyphs drawn are not this number); brightness: mean face luminance in
    percent; blur: the blur radius in tenths of a pixel.
    """
    box = plate.box
    area = round(1000 * (box.xmax - box.xmin) * (box.ymax - box.ymin) / (width * height))
    top_left, top_right, bottom_right, bottom_left = plate.corners
    horizontal = 90 + math.degrees(math.atan2(bottom_right[1] - bottom_left[1], bottom_right[0] - bottom_left[0]))
    vertical = 90 + math.degrees(math.atan2(bottom_left[0] - top_left[0], bottom_left[1] - top_left[1]))
    low, high = (box.xmin, box.ymin), (box.xmax, box.ymax)
    corners = "_".join(
        "&".join(str(round(c)) for c in np.clip(point, low, high))
        for point in (bottom_right, bottom_left, top_left, top_right)
    )
    number = [
        int(rng.integers(0, len(CCPD_PROVINCES) - 1)),
        int(rng.integers(0, len(CCPD_ALPHABETS) - 1)),
        *(int(i) for i in rng.integers(0, len(CCPD_ADS) - 1, size=5)),
    ]
    fields = [
        f"{area:03d}",
        f"{round(horizontal)}_{round(vertical)}",
        f"{round(box.xmin)}&{round(box.ymin)}_{round(box.xmax)}&{round(box.ymax)}",
        corners,
        "_".join(str(i) for i in number),
        str(round(plate.brightness / 255 * 100)),
        str(round(plate.blur * 10)),
    ]
    return "-".join(fields) + ".jpg"
