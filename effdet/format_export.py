"""Export a trained model in the formats a job asks for and score each on the val split the same way.

Every TFLite file holds the network alone, taking the letterboxed canvas [1, H, W, 3] at the model's input
size: the serving code decodes and suppresses its boxes (effdet.tflite_runtime), at any score threshold. That
was first forced on the int8 file (the calibrator cannot run the in-graph NMS); the float files followed because
TFLite's reference NMS kernels cost more than the same work in NumPy. The int8 file is calibrated on the job's
own training images, letterboxed exactly as serving does (effdet.tflite_runtime.letterbox), so nobody writes a
calibration script. Scoring runs each format through its serving path (the SavedModel's `predict_images`, LiteRT
for TFLite) on the val records' original image bytes, at the export's score threshold, with the same COCO code
(effdet.evaluate.coco_metrics), and times every call after one warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from effdet.config import Config
from effdet.data.shards import parse_example, record_files
from effdet.evaluate import coco_metrics
from effdet.export import Quantization, export_tflite_network, refuse_tflite_for_segmentation
from effdet.formats import SAVED_MODEL, ExportFormat, FormatScore, format_file
from effdet.predict import Detection, load_exported, predict_images
from effdet.tflite_runtime import letterbox, load_tflite_export, pad_colour, predict_tflite

CALIBRATION_IMAGES = 100
"""Training images an int8 model is calibrated on."""
_QUANTIZATION: dict[ExportFormat, Quantization] = {
    "tflite": "float32",
    "tflite_float16": "float16",
    "tflite_int8": "int8",
}


def export_tflite_formats(
    model: keras.Model,
    config: Config,
    folder: Path,
    formats: Sequence[ExportFormat],
    train_files: str | None,
) -> None:
    """Write each TFLite format asked for into the model folder (one already there, from an earlier attempt of
    the same job, is kept: files are written atomically). A segmentation model gets a ValueError before any
    file is written: TFLite formats carry detections only."""
    if any(format != SAVED_MODEL for format in formats):
        refuse_tflite_for_segmentation(config)
    for format in formats:
        path = folder / format_file(format)
        if format == SAVED_MODEL or path.is_file():
            continue
        quantization = _QUANTIZATION[format]
        calibration = None
        if quantization == "int8":
            if train_files is None:
                raise ValueError("an int8 model is calibrated on training images, and there are none")
            calibration = representative_images(train_files, config)
        export_tflite_network(model, config, path, quantization, calibration)


def representative_images(
    train_files: str, config: Config, count: int = CALIBRATION_IMAGES
) -> Callable[[], Iterable[np.ndarray]]:
    """The first `count` training images, letterboxed to the model's input size as serving letterboxes them."""
    size = config.model.image_size
    pad = pad_colour(config.model.mean_rgb)

    def images() -> Iterator[np.ndarray]:
        for image, _ in _records(train_files, count):
            pixels = tf.io.decode_image(image, channels=3, expand_animations=False).numpy()
            yield letterbox(pixels, size, pad)[0]

    return images


def _records(files: str | Sequence[str], limit: int | None = None) -> Iterator[tuple[bytes, int]]:
    """(encoded image, source id) of the records, in order."""
    dataset = tf.data.TFRecordDataset(record_files(files)).map(parse_example)
    if limit is not None:
        dataset = dataset.take(limit)
    for example in dataset:
        yield example["image"].numpy(), int(example["source_id"].numpy())


def score_formats(
    folder: Path,
    formats: Sequence[ExportFormat],
    min_score: float,
    val_files: str | None,
    ground_truth: Path | None,
    num_threads: int,
) -> dict[ExportFormat, FormatScore]:
    """Each format's file, size and (with a val split) COCO metrics and milliseconds per image."""
    scores: dict[ExportFormat, FormatScore] = {}
    for format in formats:
        path = folder / format_file(format)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
        score = FormatScore(file=format_file(format), size_bytes=size)
        if val_files is not None and ground_truth is not None:
            score = _scored(score, format_predictor(folder, format, min_score, num_threads), val_files, ground_truth)
        scores[format] = score
    return scores


def format_predictor(
    folder: Path, format: ExportFormat, min_score: float, num_threads: int, score_threshold: float | None = None
) -> Callable[[bytes], list[list[Detection]]]:
    """One image's detections through the format's serving path, at `score_threshold` (default: the export's;
    a float TFLite file of an older export, with its NMS inside, cannot go below it)."""
    threshold = min_score if score_threshold is None else score_threshold
    saved_model = folder / format_file(SAVED_MODEL)
    if format == SAVED_MODEL:
        loaded = load_exported(saved_model)
        return lambda data: predict_images(loaded, [data], score_threshold=threshold)
    lite = load_tflite_export(folder / format_file(format), saved_model, num_threads, min_score)
    return lambda data: predict_tflite(lite, [data], score_threshold=threshold)


class RecordDetections(NamedTuple):
    """What a predictor found on records: COCO results and the mean inference milliseconds per image."""

    detections: list[dict[str, Any]]
    ms_per_image: float


def record_detections(
    predict: Callable[[bytes], list[list[Detection]]],
    files: str | Sequence[str],
    on_image: Callable[[int], None] | None = None,
) -> RecordDetections:
    """Run `predict` on every record's original image bytes, timing each call after one warm-up (the first call
    traces or allocates, and would dominate a small split); `on_image(done)` after each image, and may raise to
    stop."""
    detections: list[dict[str, Any]] = []
    seconds, images = 0.0, 0
    for image, _ in _records(files, 1):
        predict(image)
    for image, source_id in _records(files):
        start = time.perf_counter()
        (found,) = predict(image)
        seconds += time.perf_counter() - start
        images += 1
        detections += [
            {
                "image_id": source_id,
                "category_id": d.class_id,
                "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]],
                "score": d.score,
            }
            for d in found
        ]
        if on_image is not None:
            on_image(images)
    return RecordDetections(detections, round(1000 * seconds / max(images, 1), 2))


def _scored(
    score: FormatScore, predict: Callable[[bytes], list[list[Detection]]], val_files: str, ground_truth: Path
) -> FormatScore:
    """The score with the COCO metrics and mean milliseconds per image of `predict` over the val records."""
    found = record_detections(predict, val_files)
    metrics = coco_metrics(ground_truth, found.detections)
    return score.model_copy(
        update={"ap": metrics.ap, "ap50": metrics.ap50, "ap75": metrics.ap75, "ms_per_image": found.ms_per_image}
    )
