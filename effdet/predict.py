"""Prediction with an exported SavedModel: load it, detect objects in encoded images, draw the boxes.

Only TensorFlow and the SavedModel's own assets are used (no model code, no config), so a server can answer
predictions from the exported folder alone. TensorFlow is imported on first load, not with this module.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel

LABEL_MAP_ASSET = "label_map.json"
CONFIG_ASSET = "config.yaml"
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


@dataclass(frozen=True)
class ExportedModel:
    """A loaded SavedModel and its label map (class id -> name)."""

    path: Path
    module: Any
    label_map: dict[int, str]


def load_exported(path: Path | str) -> ExportedModel:
    """Load an exported SavedModel folder and its label_map.json asset."""
    import tensorflow as tf

    folder = Path(path)
    label_map = read_label_map(folder)
    return ExportedModel(path=folder, module=tf.saved_model.load(str(folder)), label_map=label_map)


def read_label_map(saved_model: Path | str) -> dict[int, str]:
    """Class id -> name from an exported SavedModel's assets/label_map.json (every format of the export uses it)."""
    label_file = Path(saved_model) / "assets" / LABEL_MAP_ASSET
    if not label_file.is_file():
        raise FileNotFoundError(f"{saved_model} has no assets/{LABEL_MAP_ASSET}; is it a model exported by effdet?")
    return {int(k): str(v) for k, v in json.loads(label_file.read_text()).items()}


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
    boxes, scores, classes, counts = (
        outputs[k].numpy().tolist() for k in ("boxes", "scores", "classes", "num_detections")
    )
    results = []
    for row in range(len(image_bytes_list)):
        count = counts[row] if max_detections is None else min(counts[row], max_detections)
        results.append(
            [
                Detection(
                    box=tuple(boxes[row][i]),
                    class_id=classes[row][i],
                    label=loaded.label_map.get(classes[row][i], str(classes[row][i])),
                    score=scores[row][i],
                )
                for i in range(count)
            ]
        )
    return results


def draw_detections(image_bytes: bytes, detections: Sequence[Detection]) -> Image.Image:
    """The image (RGB) with each detection drawn as a box and a 'label score' caption, a colour per class."""
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
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
