"""Serving predictions: cheap upload checks, a bounded LRU of loaded models, and one inference thread.

A model version is served by one of its exported formats, its runtime (effdet.formats): the SavedModel through
TensorFlow, imported by effdet.predict on the first SavedModel load only, or a TFLite file through LiteRT
(effdet.tflite_runtime), so an API that serves only TFLite models never imports TensorFlow. Each (model,
runtime) is loaded once and kept until it is the least recently used beyond `predict_cache_size`; concurrent
first requests for one wait for a single load.

Why the request path looks like this (bench/predict_load.py measures it against the raw SavedModel):
- Uploads are checked from their header only (format, size): the SavedModel decodes the image itself, so a
  full Pillow decode here would decode every image twice. An image whose data is broken past its header makes
  the model's decode fail; only then is each image of that request decoded by Pillow to name the bad one.
- One thread runs every inference (`InferenceQueue`), a request at a time in arrival order. TensorFlow already
  uses every core for one call, so concurrent calls from many request threads only thrash and hold one set of
  activations each. Batching waiting requests was measured and dropped: on the 2-core CPU, 8 clients served
  in batches of up to 8 images got 0.38x the throughput of sequential batch-1 calls (BENCHMARKS.md).
- A request that finds more than EFFDET_PREDICT_MAX_QUEUED_IMAGES images waiting is answered 503 with
  Retry-After (the seconds the queue needs at the recent pace) instead of queueing without bound.
"""

from __future__ import annotations

import io
import math
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, status
from PIL import Image, UnidentifiedImageError

from core.layout import saved_model_dir
from effdet.formats import SAVED_MODEL, ExportFormat, FormatsManifest
from effdet.predict import ExportedModel, ImagePrediction, load_exported, predict_batch
from effdet.tflite_runtime import TFLiteModel, load_tflite_export, predict_tflite

TF_DECODABLE = frozenset({"JPEG", "PNG", "GIF", "BMP"})
"""Formats the SavedModel decodes itself; others (WebP, TIFF, ...) are re-encoded as PNG first."""


@dataclass(frozen=True)
class ModelSource:
    """A model version as one runtime serves it: its folder and manifest (None: exported before manifests, a
    SavedModel only)."""

    model_id: str
    runtime: ExportFormat
    folder: Path
    manifest: FormatsManifest | None

    @property
    def key(self) -> str:
        """The cache key: one loaded model per version and runtime."""
        return f"{self.model_id}/{self.runtime}"


Loaded = ExportedModel | TFLiteModel


def load_source(source: ModelSource, tflite_threads: int) -> Loaded:
    """Load the model version in its runtime."""
    saved_model = saved_model_dir(source.folder)
    if source.runtime == SAVED_MODEL:
        return load_exported(saved_model)
    if source.manifest is None or source.runtime not in source.manifest.formats:
        raise FileNotFoundError(f"model {source.model_id!r} has no {source.runtime} export")
    path = source.manifest.path(source.folder, source.runtime)
    return load_tflite_export(path, saved_model, tflite_threads, source.manifest.min_score)


def run_inference(loaded: Loaded, images: Sequence[bytes], threshold: float | None) -> list[ImagePrediction]:
    """Detections (and a segmentation model's class map) for each image through the loaded model's runtime."""
    if isinstance(loaded, TFLiteModel):
        return [ImagePrediction(found, None) for found in predict_tflite(loaded, images, score_threshold=threshold)]
    return predict_batch(loaded, images, score_threshold=threshold)


class ModelCache:
    """Loaded models keyed by version and runtime, least recently used evicted beyond `size`; owns the inference
    queue."""

    def __init__(self, size: int, max_queued_images: int, tflite_threads: int = 1) -> None:
        self.size = size
        self.tflite_threads = tflite_threads
        self._models: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.queue = InferenceQueue(self, max_queued_images=max_queued_images)

    def get(self, source: ModelSource) -> Loaded:
        """The loaded model (loading it on first use; blocking, call from a worker thread)."""
        key = source.key
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            loaded = load_source(source, self.tflite_threads)
            with self._lock:
                self._models[key] = loaded
                self._loading.pop(key, None)
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
            return loaded

    def loaded(self, source: ModelSource) -> bool:
        """Whether the model is in memory now in that runtime (so a request need not load it first)."""
        with self._lock:
            return source.key in self._models

    def forget(self, model_id: str) -> None:
        """Drop a model version from memory in every runtime (it was deleted)."""
        with self._lock:
            for key in [key for key in self._models if key.startswith(f"{model_id}/")]:
                del self._models[key]

    def clear(self) -> None:
        """Stop the inference thread and forget every loaded model."""
        self.queue.stop()
        with self._lock:
            self._models.clear()


class QueueFullError(Exception):
    """Too many images wait for inference; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the prediction queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Request:
    """One predict request waiting in the queue."""

    source: ModelSource
    names: list[str]
    images: list[bytes]
    threshold: float | None
    future: Future[list[ImagePrediction]] = field(default_factory=Future)


class InferenceQueue:
    """Runs every prediction on one thread, one request (all its images) at a time, in arrival order."""

    def __init__(self, cache: ModelCache, max_queued_images: int) -> None:
        self._cache = cache
        self.max_queued_images = max_queued_images
        self._pending: deque[_Request] = deque()
        self._queued_images = 0
        self._seconds_per_image = 0.1
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(
        self, source: ModelSource, names: Sequence[str], images: Sequence[bytes], threshold: float | None
    ) -> Future[list[ImagePrediction]]:
        """Queue a request; its future gives what the model found per image. QueueFullError when too much waits."""
        request = _Request(source, list(names), list(images), threshold)
        with self._wakeup:
            if self._queued_images and self._queued_images + len(images) > self.max_queued_images:
                raise QueueFullError(max(1, math.ceil(self._queued_images * self._seconds_per_image)))
            self._stopping = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
                self._thread.start()
            self._pending.append(request)
            self._queued_images += len(images)
            self._wakeup.notify()
        return request.future

    def stop(self) -> None:
        """Let the thread finish its current request and exit; requests still waiting fail."""
        with self._wakeup:
            self._stopping = True
            waiting = list(self._pending)
            self._pending.clear()
            self._queued_images = 0
            self._wakeup.notify()
        for request in waiting:
            request.future.set_exception(RuntimeError("the service is shutting down"))

    def _next(self) -> _Request | None:
        """The oldest waiting request whose client is still there; None when stopping."""
        while True:
            with self._wakeup:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    self._thread = None
                    return None
                request = self._pending.popleft()
                self._queued_images -= len(request.images)
            if request.future.set_running_or_notify_cancel():
                return request

    def _run(self) -> None:
        while (request := self._next()) is not None:
            start = time.perf_counter()
            try:
                loaded = self._cache.get(request.source)
                request.future.set_result(run_inference(loaded, request.images, request.threshold))
            except Exception as err:
                request.future.set_exception(_explained(request, err))
            elapsed = time.perf_counter() - start
            self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * elapsed / len(request.images)


def _explained(request: _Request, err: Exception) -> Exception:
    """A failed inference as the client's error when an image cannot be decoded (422), else as it is."""
    decoding = type(err).__name__ == "InvalidArgumentError" or isinstance(err, UnidentifiedImageError | OSError)
    if not decoding:
        return err
    for name, data in zip(request.names, request.images, strict=True):
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as bad:
            return _unreadable(name, bad)
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"the images could not be decoded ({str(err).splitlines()[0]}); send JPEG or PNG files",
    )


def _unreadable(name: str, err: Exception) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name} is not a readable image ({err}); send a JPEG or PNG"
    )


def checked_image(name: str, data: bytes, max_pixels: int) -> bytes:
    """The bytes to feed the model for one upload, checked from the header; 422 when it is not an image, 413 when
    too large. Formats the model cannot decode are decoded here and re-encoded as PNG."""
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
            if image.format in TF_DECODABLE and not getattr(image, "is_animated", False):
                return data
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            return buffer.getvalue()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"{name}: {err}; send a smaller image") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise _unreadable(name, err) from err
