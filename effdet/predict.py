"""Prediction with an exported SavedModel: load it, detect objects (and segment) encoded images, draw the results.

Only TensorFlow and the SavedModel's own assets are used (no model code, no config), so a server can answer
predictions from the exported folder alone. TensorFlow is imported on first load, not with this module.
A segmentation model's class map (uint8 [height, width] at the image's size: 0 background, k label id k) is
answered as a paletted PNG (`mask_png`), as COCO compressed RLE per class (`mask_rle`) or drawn over the image
(`draw_segmentation`, which `draw_detections` can draw on).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as coco_mask
from pydantic import BaseModel

from effdet.data.masks import BACKGROUND, IGNORE, voc_colormap

LABEL_MAP_ASSET = "label_map.json"
CONFIG_ASSET = "config.yaml"
SEGMENTATION_ASSET = "segmentation_classes.json"
"""Present in a segmentation model's assets only: {"id": "name"} for every class map value, "0" background."""
DEFAULT_MIN_SCORE_THRESH = 0.3
"""The score threshold an export bakes in unless told another: the exported model drops detections below it
when the caller gives no threshold (the CLI's `export --min-score`, a job's `min_score_thresh`)."""
_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


class Detection(BaseModel):
    """One detected object: box [xmin, ymin, xmax, ymax] in pixels of the original image."""

    box: tuple[float, float, float, float]
    class_id: int
    label: str
    score: float


class MaskRle(BaseModel):
    """The pixels of one class in an image's class map, as COCO compressed RLE (pycocotools' string counts)."""

    class_id: int
    label: str
    counts: str
    size: tuple[int, int]
    """(height, width) of the image."""
    area: int
    """Pixels of the class."""


@dataclass(frozen=True)
class ImagePrediction:
    """What a model found in one image: its detections, best first, and (segmentation models only) its class map
    uint8 [height, width] at the image's size."""

    detections: list[Detection]
    class_map: np.ndarray | None


@dataclass(frozen=True)
class ExportedModel:
    """A loaded SavedModel, its label map (class id -> name) and, for a segmentation model, the name of every
    class map value (None for a detector)."""

    path: Path
    module: Any
    label_map: dict[int, str]
    segmentation_classes: dict[int, str] | None = None

    @property
    def segments(self) -> bool:
        """Whether the model answers a class map beside its detections."""
        return self.segmentation_classes is not None


def load_exported(path: Path | str) -> ExportedModel:
    """Load an exported SavedModel folder and its label_map.json (and segmentation_classes.json) assets."""
    import tensorflow as tf

    folder = Path(path)
    return ExportedModel(
        path=folder,
        module=tf.saved_model.load(str(folder)),
        label_map=read_label_map(folder),
        segmentation_classes=read_segmentation_classes(folder),
    )


def read_label_map(saved_model: Path | str) -> dict[int, str]:
    """Class id -> name from an exported SavedModel's assets/label_map.json (every format of the export uses it)."""
    label_file = Path(saved_model) / "assets" / LABEL_MAP_ASSET
    if not label_file.is_file():
        raise FileNotFoundError(f"{saved_model} has no assets/{LABEL_MAP_ASSET}; is it a model exported by effdet?")
    return {int(k): str(v) for k, v in json.loads(label_file.read_text()).items()}


def read_segmentation_classes(saved_model: Path | str) -> dict[int, str] | None:
    """Class map value -> name from an export's assets/segmentation_classes.json; None for a detector."""
    classes_file = Path(saved_model) / "assets" / SEGMENTATION_ASSET
    if not classes_file.is_file():
        return None
    return {int(k): str(v) for k, v in json.loads(classes_file.read_text()).items()}


def predict_images(
    loaded: ExportedModel,
    image_bytes_list: Sequence[bytes],
    score_threshold: float | None = None,
    max_detections: int | None = None,
) -> list[list[Detection]]:
    """Detections for each encoded image (JPEG, PNG, ...), best first, scoring at least score_threshold.

    score_threshold defaults to the one chosen at export; max_detections caps each image's list (the
    export-time maximum always applies).
    """
    found = predict_batch(loaded, image_bytes_list, score_threshold, max_detections)
    return [prediction.detections for prediction in found]


def predict_batch(
    loaded: ExportedModel,
    image_bytes_list: Sequence[bytes],
    score_threshold: float | None = None,
    max_detections: int | None = None,
) -> list[ImagePrediction]:
    """Detections and (for a segmentation model) the class map of each encoded image, in one run of the model.

    Arguments as `predict_images`'; each class map is cut from the export's padded batch to its image's size.
    """
    import tensorflow as tf

    if not image_bytes_list:
        return []
    images = tf.constant(list(image_bytes_list), tf.string)
    if score_threshold is None:
        outputs = loaded.module.signatures["serving_default"](images=images)
    else:
        outputs = loaded.module.signatures["serving_with_threshold"](
            images=images, score_threshold=tf.constant(score_threshold, tf.float32)
        )
    arrays = {name: tensor.numpy() for name, tensor in outputs.items()}
    detections = _detections(arrays, loaded.label_map, max_detections)
    maps = _class_maps(arrays) if "segmentation" in arrays else [None] * len(detections)
    return [ImagePrediction(found, class_map) for found, class_map in zip(detections, maps, strict=True)]


def _detections(
    outputs: dict[str, np.ndarray], label_map: dict[int, str], max_detections: int | None
) -> list[list[Detection]]:
    """Each image's detections from the signature's batched outputs, at most max_detections of them."""
    boxes, scores, classes, counts = (outputs[k].tolist() for k in ("boxes", "scores", "classes", "num_detections"))
    results = []
    for row in range(len(counts)):
        count = counts[row] if max_detections is None else min(counts[row], max_detections)
        results.append(
            [
                Detection(
                    box=tuple(boxes[row][i]),
                    class_id=classes[row][i],
                    label=label_map.get(classes[row][i], str(classes[row][i])),
                    score=scores[row][i],
                )
                for i in range(count)
            ]
        )
    return results


def _class_maps(outputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each image's class map cut from the padded `segmentation` output to its `image_sizes`."""
    return [
        np.ascontiguousarray(padded[:height, :width])
        for padded, (height, width) in zip(outputs["segmentation"], outputs["image_sizes"], strict=True)
    ]


def mask_png(class_map: np.ndarray) -> bytes:
    """A paletted PNG whose pixel values are the class ids of class_map (uint8 [height, width]): it reads back as
    the ids and shows in Pascal VOC's colours, as a VOC SegmentationClass PNG does (255 in VOC's void colour)."""
    image = Image.fromarray(np.asarray(class_map, np.uint8), mode="P")
    image.putpalette(voc_colormap().flatten().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mask_rle(class_map: np.ndarray, names: Mapping[int, str]) -> list[MaskRle]:
    """One COCO compressed RLE per class present in class_map (uint8 [height, width]), by class id; background
    (0) and ignore (255) are left out, since a mask's absence already says them. names: class id -> label."""
    height, width = class_map.shape
    masks = []
    for class_id in np.unique(class_map).tolist():
        if class_id in (BACKGROUND, IGNORE):
            continue
        pixels = np.asfortranarray(class_map == class_id, dtype=np.uint8)
        encoded = coco_mask.encode(pixels)
        masks.append(
            MaskRle(
                class_id=class_id,
                label=names.get(class_id, str(class_id)),
                counts=encoded["counts"].decode("ascii"),
                size=(height, width),
                area=int(pixels.sum()),
            )
        )
    return masks


def _rgb(image: bytes | Image.Image) -> Image.Image:
    """An RGB copy of an image given encoded or decoded, for drawing on."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.open(io.BytesIO(image)).convert("RGB")


def draw_segmentation(image: bytes | Image.Image, class_map: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The image (RGB) with each class but background and ignore blended at `alpha` in its colour (VOC's, as
    `mask_png`); give the result to `draw_detections` to draw boxes on top."""
    picture = _rgb(image)
    if class_map.shape != (picture.height, picture.width):
        raise ValueError(
            f"class map {class_map.shape} is not the image's size {(picture.height, picture.width)}; crop a padded "
            "batch map to the image's image_sizes first"
        )
    pixels = np.asarray(picture, np.float32)
    painted = (class_map != BACKGROUND) & (class_map != IGNORE)
    blended = (1.0 - alpha) * pixels + alpha * voc_colormap().astype(np.float32)[class_map]
    pixels = np.where(painted[..., np.newaxis], blended, pixels)
    return Image.fromarray(np.round(pixels).astype(np.uint8), mode="RGB")


def draw_detections(image_bytes: bytes | Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """The image (RGB; encoded, or decoded such as `draw_segmentation`'s result) with each detection drawn as a
    box and a 'label score' caption, a colour per class."""
    image = _rgb(image_bytes)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    width = max(2, round(min(image.size) / 200))
    for detection in detections:
        colour = _COLOURS[detection.class_id % len(_COLOURS)]
        xmin, ymin, xmax, ymax = detection.box
        draw.rectangle([xmin, ymin, xmax, ymax], outline=colour, width=width)
        caption = f"{detection.label} {detection.score:.2f}"
        left, top, right, bottom = draw.textbbox((xmin, ymin), caption, font=font)
        lift = min(bottom - top + 2, ymin)
        draw.rectangle([left, top - lift, right + 2, bottom - lift], fill=colour)
        draw.text((xmin + 1, ymin - lift), caption, fill="white", font=font)
    return image
