"""Serving predictions: upload checks with Pillow, a bounded LRU of loaded SavedModels, inference off the event loop.

TensorFlow is imported by effdet.predict on the first load only, so the API starts (and answers everything
else) without it. Each model version is loaded once and kept until it is the least recently used beyond
`predict_cache_size`; concurrent first requests for one model wait for a single load.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from fastapi import HTTPException, status
from PIL import Image, UnidentifiedImageError

from effdet.predict import Detection, ExportedModel, draw_detections, load_exported, predict_images

TF_DECODABLE = frozenset({"JPEG", "PNG", "GIF", "BMP"})
"""Formats the SavedModel decodes itself; others (WebP, TIFF, ...) are re-encoded as PNG first."""


class ModelCache:
    """Loaded SavedModels keyed by model id, least recently used evicted beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._models: OrderedDict[str, ExportedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, model_id: str, saved_model: Path) -> ExportedModel:
        """The loaded model (loading it on first use; blocking, call from a worker thread)."""
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            load_lock = self._loading.setdefault(model_id, threading.Lock())
        with load_lock:
            with self._lock:
                if model_id in self._models:
                    return self._models[model_id]
            loaded = load_exported(saved_model)
            with self._lock:
                self._models[model_id] = loaded
                self._loading.pop(model_id, None)
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
            return loaded

    def clear(self) -> None:
        """Forget every loaded model."""
        with self._lock:
            self._models.clear()


def checked_image(name: str, data: bytes, max_pixels: int) -> bytes:
    """The bytes to feed the model for one upload; 422 when it is not a readable image, 413 when too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"{name}: {width}x{height} is more than {max_pixels} pixels (EFFDET_MAX_IMAGE_PIXELS); "
                    "send a smaller image",
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"{name}: {err}; send a smaller image") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name} is not a readable image ({err}); send a JPEG or PNG"
        ) from err
    if image.format in TF_DECODABLE and not getattr(image, "is_animated", False):
        return data
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def predict(
    cache: ModelCache,
    model_id: str,
    saved_model: Path,
    images: Sequence[bytes],
    score_threshold: float | None,
    max_detections: int | None,
) -> list[list[Detection]]:
    """Detections per image (blocking: TensorFlow)."""
    loaded = cache.get(model_id, saved_model)
    return predict_images(loaded, images, score_threshold=score_threshold, max_detections=max_detections)


def annotate(image: bytes, detections: Sequence[Detection]) -> bytes:
    """The image as JPEG with its detections drawn."""
    buffer = io.BytesIO()
    draw_detections(image, detections).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
