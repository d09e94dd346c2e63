"""Per-pixel semantic class maps: uint8 [height, width], 0 = background, k = our 1-based label id, 255 = ignore.

They come from COCO `segmentation` fields (polygons, uncompressed or compressed RLE, rasterised with pycocotools)
or from Pascal VOC `SegmentationClass` PNGs (palette indices or colours, remapped to our label ids by class name:
VOC's 20 classes, or the dataset's own through a CVAT / Datumaro labelmap.txt), and are stored as lossless greyscale
PNGs. Every input is checked before it reaches pycocotools' C code, which crashes on far-out polygon points and reads
uninitialised memory for RLE counts that do not cover the image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

BACKGROUND = 0
BACKGROUND_NAME = "background"
"""The name of class id 0, in reports and in the class lists of mask PNGs."""
IGNORE = 255
"""The void / don't-care value: crowd regions, VOC object borders, images without a mask."""

VOC_CLASS_NAMES: tuple[str, ...] = (
    BACKGROUND_NAME,
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""Pascal VOC's class of each palette index (index 0 is the background)."""

_PNG_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class MaskError(ValueError):
    """A mask that cannot be read or does not fit its image; the message says what to fix."""


class UnknownMaskClassError(MaskError):
    """A class PNG whose pixels name a class the dataset does not have (or a colour or index naming none)."""


RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ClassColours:
    """A dataset's own classes for its VOC class PNGs, as a CVAT / Datumaro labelmap.txt lists them: each class's
    name in line order with the RGB colour its pixels are painted in (None where the line gives none)."""

    classes: tuple[tuple[str, RGB | None], ...]

    def names_by_colour(self) -> dict[int, str]:
        """Packed colour (0xRRGGBB, as `_pack` packs pixels) -> class name."""
        return {(rgb[0] << 16) | (rgb[1] << 8) | rgb[2]: name for name, rgb in self.classes if rgb is not None}


class Instance(NamedTuple):
    """One object's pixels for `paint_class_map`: a bool [height, width] mask, its label id, whether a crowd."""

    mask: np.ndarray
    label: int
    is_crowd: bool


def coco_segmentation_mask(segmentation: object, height: int, width: int) -> np.ndarray:
    """One COCO annotation's `segmentation` as a bool [height, width] mask.

    Accepts polygons (a list of flat [x1, y1, x2, y2, ...] lists), uncompressed RLE ({"counts": [int, ...],
    "size": [h, w]}) and compressed RLE ({"counts": "string", "size": [h, w]}). Raises MaskError otherwise.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size {width}x{height} must be positive")
    if isinstance(segmentation, list):
        rles = coco_mask.frPyObjects(_polygons(segmentation, height, width), height, width)
        return _decode(coco_mask.merge(rles))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        _check_rle_size(segmentation["size"], height, width)
        counts = segmentation["counts"]
        if isinstance(counts, str | bytes):
            counts = _compressed_counts(counts)
        _check_counts(counts, height, width)
        return _decode(coco_mask.frPyObjects({"counts": counts, "size": [height, width]}, height, width))
    raise MaskError(
        f"segmentation {segmentation!r:.80} is neither polygons ([[x1, y1, x2, y2, ...], ...]) "
        'nor RLE ({"counts": ..., "size": [height, width]}); fix the annotation'
    )


def _polygons(segmentation: list[object], height: int, width: int) -> list[list[float]]:
    """The polygons as float lists, after checking each has 3+ points that lie near the image."""
    if not segmentation:
        raise MaskError("segmentation is an empty polygon list; give at least one [x1, y1, x2, y2, x3, y3, ...]")
    polygons = []
    for position, polygon in enumerate(segmentation):
        if not isinstance(polygon, list) or not all(_is_number(value) for value in polygon):
            raise MaskError(f"polygon {position} is {polygon!r:.80}, not a flat list [x1, y1, x2, y2, ...] of numbers")
        if len(polygon) < 6 or len(polygon) % 2:
            raise MaskError(
                f"polygon {position} has {len(polygon)} numbers; a polygon needs at least 3 points "
                "(6 numbers, x and y alternating): fix or remove it"
            )
        coords = [float(value) for value in polygon]
        _check_near_image(coords, position, height, width)
        polygons.append(coords)
    return polygons


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_near_image(coords: list[float], position: int, height: int, width: int) -> None:
    """Reject points more than one image size outside the image: an annotation bug, and unsafe to rasterise."""
    for x, y in zip(coords[::2], coords[1::2], strict=True):
        if not (-width <= x <= 2 * width and -height <= y <= 2 * height):
            raise MaskError(
                f"polygon {position} has the point ({x:g}, {y:g}), far outside the {width}x{height} image; "
                "fix the coordinates (pixels, not normalised or swapped)"
            )


def _check_rle_size(size: object, height: int, width: int) -> None:
    if size != [height, width] and size != (height, width):
        raise MaskError(
            f"RLE size {size!r:.40} differs from the image's [height, width] [{height}, {width}]; "
            "encode the mask at the image's size"
        )


def _compressed_counts(counts: str | bytes) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools' rleFrString): 5-bit groups, later counts as deltas."""
    text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
    values: list[int] = []
    position = 0
    while position < len(text):
        value = shift = 0
        more = True
        while more:
            if position == len(text) or not 48 <= ord(text[position]) < 112:
                raise MaskError("compressed RLE counts are not a valid COCO RLE string; re-encode the mask")
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value -= 1 << shift
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def _check_counts(counts: object, height: int, width: int) -> None:
    """RLE run lengths must be non-negative integers that cover the image exactly."""
    if not isinstance(counts, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in counts):
        raise MaskError(f"RLE counts {counts!r:.60} are not a list of integers or a COCO RLE string")
    if any(n < 0 for n in counts) or sum(counts) != height * width:
        raise MaskError(
            f"RLE counts cover {sum(counts)} pixels (or hold a negative run), but the image has "
            f"{height}x{width} = {height * width}; re-encode the mask at the image's size"
        )


def _decode(rle: object) -> np.ndarray:
    return np.ascontiguousarray(coco_mask.decode(rle), dtype=bool)


def paint_class_map(instances: Sequence[tuple[np.ndarray, int, bool]], height: int, width: int) -> np.ndarray:
    """A uint8 [height, width] class map from (bool mask, label id, is_crowd) instances.

    Background is 0. Larger instances are painted first, so where objects overlap the smaller one stays visible;
    crowd regions are painted IGNORE last, so they win: their pixels are neither background nor one object.
    """
    class_map = np.full((height, width), BACKGROUND, dtype=np.uint8)
    checked = [Instance(_checked_mask(mask, height, width), label, is_crowd) for mask, label, is_crowd in instances]
    for instance in checked:
        if not 0 < instance.label < IGNORE:
            raise ValueError(f"label id {instance.label} must lie in 1..{IGNORE - 1} (0 is the background)")
    objects = sorted((i for i in checked if not i.is_crowd), key=lambda instance: -int(instance.mask.sum()))
    for instance in objects:
        class_map[instance.mask] = instance.label
    for instance in checked:
        if instance.is_crowd:
            class_map[instance.mask] = IGNORE
    return class_map


def _checked_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    check_mask_size(mask, height, width)
    return np.asarray(mask, dtype=bool)


def voc_palette_names() -> dict[int, str]:
    """Pascal VOC's palette index -> class name, for indices 1..20 (0 is the background, 255 the void)."""
    return {index: name for index, name in enumerate(VOC_CLASS_NAMES) if index > 0}


def voc_colormap() -> np.ndarray:
    """VOC's standard colour map, uint8 [256, 3] RGB: index i's bits, 3 at a time, spread over R, G, B from the
    most significant bit down (1 = (128, 0, 0), 15 = (192, 128, 128), 255 = (224, 224, 192))."""
    colormap = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        rgb = [0, 0, 0]
        bits = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        colormap[index] = rgb
    return colormap


def read_voc_class_png(
    data: bytes,
    *,
    label_ids: Mapping[str, int],
    palette_names: Mapping[int, str] | None = None,
    colours: ClassColours | None = None,
) -> np.ndarray:
    """A VOC `SegmentationClass` PNG as our uint8 class map, remapped by class name to `label_ids`.

    Without `colours`, pixel values of a palette (P) or greyscale (L) PNG are palette indices: 0 background, 255
    void, i > 0 the class `palette_names[i]` (VOC's own by default); an RGB PNG is mapped back to indices through the
    VOC colour map. With the dataset's `colours` (its labelmap.txt), see `_read_by_colours`. Raises MaskError for an
    unreadable PNG or another mode, UnknownMaskClassError (a MaskError) for an unknown colour or index, or a class
    not in `label_ids`.
    """
    image = _open_png(data)
    if image.mode not in ("P", "L", "RGB"):
        raise MaskError(f"class PNG has mode {image.mode}; save it as palette (P), greyscale (L) or RGB")
    if colours is not None:
        return _read_by_colours(image, colours, label_ids)
    if image.mode in ("P", "L"):
        indices = np.asarray(image, dtype=np.uint8)
    else:
        indices = _voc_indices(np.asarray(image, dtype=np.uint8))
    lookup = _index_lookup(np.unique(indices), palette_names or voc_palette_names(), label_ids)
    return lookup[indices]


def _read_by_colours(image: Image.Image, colours: ClassColours, label_ids: Mapping[str, int]) -> np.ndarray:
    """A class PNG read through the dataset's labelmap.txt, as Datumaro (CVAT's importer) reads it: the colour of each
    pixel of an RGB PNG, or of a palette PNG through its own palette, names its class; a greyscale PNG's value i
    names the labelmap's i-th class (255 stays void). The class named 'background' is id 0."""
    if image.mode == "L":
        values = np.asarray(image, dtype=np.uint8)
        return _remap(values, lambda value: _line_label(value, colours, label_ids))
    names = colours.names_by_colour()
    packed = _pack(np.asarray(image.convert("RGB"), dtype=np.uint8))
    return _remap(packed, lambda colour: _colour_label(colour, names, label_ids))


def _remap(keys: np.ndarray, label_of: Callable[[int], int]) -> np.ndarray:
    """uint8 [H, W] class map: `label_of` each distinct value of `keys` (an int [H, W] array), asked once per value."""
    present, inverse = np.unique(keys, return_inverse=True)
    labels = np.array([label_of(int(key)) for key in present], dtype=np.uint8)
    return labels[inverse.reshape(keys.shape)]


def _line_label(value: int, colours: ClassColours, label_ids: Mapping[str, int]) -> int:
    if value < len(colours.classes):
        return _label_id(colours.classes[value][0], f"greyscale value {value}", label_ids)
    if value == IGNORE:
        return IGNORE
    raise UnknownMaskClassError(
        f"class PNG is greyscale with value {value}, but labelmap.txt lists {len(colours.classes)} classes (values "
        f"0..{len(colours.classes) - 1}, 255 void); add the class to labelmap.txt or repaint those pixels"
    )


def _colour_label(colour: int, names: Mapping[int, str], label_ids: Mapping[str, int]) -> int:
    name = names.get(colour)
    rgb = f"{colour >> 16},{(colour >> 8) & 0xFF},{colour & 0xFF}"
    if name is None:
        raise UnknownMaskClassError(
            f"class PNG has pixels of colour #{colour:06x} ({rgb}), which labelmap.txt does not list; add a line "
            f"'name:{rgb}::' for its class or repaint those pixels"
        )
    return _label_id(name, f"colour #{colour:06x}", label_ids)


def _voc_indices(rgb: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] VOC colours -> uint8 [H, W] palette indices; MaskError names colours outside the map."""
    packed_map = _pack(voc_colormap())
    order = np.argsort(packed_map)
    colours, inverse = np.unique(_pack(rgb), return_inverse=True)
    slots = np.searchsorted(packed_map, colours, sorter=order).clip(max=255)
    known = packed_map[order[slots]] == colours
    if not known.all():
        unknown = [f"#{colour:06x}" for colour in colours[~known][:5]]
        raise UnknownMaskClassError(
            f"class PNG is RGB with colours outside the VOC colour map ({', '.join(unknown)}); "
            "use VOC's palette colours or save palette indices (mode P)"
        )
    return order[slots].astype(np.uint8)[inverse.reshape(rgb.shape[:2])]


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _index_lookup(present: np.ndarray, palette_names: Mapping[int, str], label_ids: Mapping[str, int]) -> np.ndarray:
    """uint8 [256] palette index -> our label id, for the indices present in one PNG."""
    lookup = np.full(256, IGNORE, dtype=np.uint8)
    lookup[BACKGROUND] = BACKGROUND
    for index in (int(i) for i in present if BACKGROUND < i < IGNORE):
        name = palette_names.get(index)
        if name is None:
            raise UnknownMaskClassError(f"class PNG uses palette index {index}, which names no class; fix the mask")
        lookup[index] = _label_id(name, f"palette index {index}", label_ids)
    return lookup


def _label_id(name: str, source: str, label_ids: Mapping[str, int]) -> int:
    """Our label id of the class `name` that a PNG's `source` (an index or colour) names; 'background' is 0."""
    if name == BACKGROUND_NAME:
        return BACKGROUND
    if name not in label_ids:
        raise UnknownMaskClassError(
            f"class PNG has pixels of class {name!r} ({source}), which is not one of the dataset's classes "
            f"({', '.join(sorted(label_ids))}); add the class or repaint those pixels"
        )
    label = label_ids[name]
    if not 0 < label < IGNORE:
        raise ValueError(f"label id {label} of {name!r} must lie in 1..{IGNORE - 1}")
    return label


def check_mask_size(mask: np.ndarray, height: int, width: int) -> None:
    """Raise MaskError unless the mask's [height, width] equals its image's."""
    if mask.shape[:2] != (height, width):
        mask_height, mask_width = mask.shape[:2]
        raise MaskError(f"mask is {mask_width}x{mask_height} but its image is {width}x{height}")


def encode_png(class_map: np.ndarray) -> bytes:
    """A uint8 [H, W] class map as a lossless greyscale (mode L) PNG."""
    if class_map.dtype != np.uint8 or class_map.ndim != 2:
        raise ValueError(f"a class map is uint8 [height, width], got {class_map.dtype} {list(class_map.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(class_map).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """The uint8 [H, W] class map of a greyscale PNG written by `encode_png`; MaskError for anything else."""
    image = _open_png(data)
    if image.mode != "L":
        raise MaskError(f"class map PNG has mode {image.mode}; expected greyscale (L), as encode_png writes")
    return np.asarray(image, dtype=np.uint8)


def _open_png(data: bytes) -> Image.Image:
    """The PNG, fully loaded; MaskError for empty data, a broken file or another format (masks must be lossless)."""
    if not data:
        raise MaskError("mask PNG is empty; write the mask again")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except _PNG_ERRORS as exc:
        raise MaskError(f"mask is not a readable PNG ({exc}); write it again") from exc
    if image.format != "PNG":
        raise MaskError(f"mask is {image.format}, not PNG; save masks as PNG (lossy formats blur class ids)")
    return image


def class_pixel_counts(class_map: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [num_classes + 1]: pixels of background and each class, IGNORE left out (sum these over a dataset)."""
    values = class_map[class_map != IGNORE].astype(np.int64)
    if values.size and values.max() > num_classes:
        raise ValueError(f"class map holds id {values.max()}, above num_classes={num_classes}")
    return np.bincount(values, minlength=num_classes + 1)


def class_pixel_shares(class_map: np.ndarray, num_classes: int) -> np.ndarray:
    """float64 [num_classes + 1]: each class's share of the non-ignored pixels, background first; all zeros when
    every pixel is ignored."""
    counts = class_pixel_counts(class_map, num_classes)
    total = counts.sum()
    return counts / total if total else np.zeros(num_classes + 1)
