"""Prediction with an exported TFLite file through LiteRT, without TensorFlow: a server that serves only TFLite
models never imports it.

`effdet.export.export_tflite` (`effdet export --tflite`, and jobs' float files before they held the network
alone) writes a graph that takes one uint8 image [1, H, W, 3] of a fixed size and holds the SavedModel's pre-
and post-processing. Given exactly its input size, its own resize is the identity, so this
module places each image on an (H, W) canvas first, as the SavedModel's `prepare` would place it
(effdet.data.augment.resize_and_crop): scale = min(H / h, W / w) in float32, the scaled size rounded half to
even, bilinear resampling with half-pixel centres and no antialiasing (tf.image.resize's filter, run by OpenCV;
Pillow's bilinear antialiases when shrinking, which shifts scores), the image at the top-left and the rest
filled with the model's mean colour, which the graph normalises to the zeros the SavedModel pads with. The
graph's boxes come out in canvas pixels; they are divided by the scale and clipped to the original image.

As with the SavedModel (tf.io.decode_image), the stored pixels are used and an EXIF orientation is ignored, so
boxes are in pixels of the image as stored. What still differs from the SavedModel: the resized pixels and the
pad colour are rounded to whole grey levels (the graph takes uint8), Pillow decodes instead of TensorFlow, and
the file drops detections under the `min_score` it was exported with, so a lower threshold cannot be served.
Models trained with `tiles` are not served this way (the file tiles a canvas, not the original image).

A file that holds the network alone (effdet.export.export_tflite_network, every TFLite format a job exports)
answers raw head outputs for the same canvas; its boxes are decoded and suppressed here (effdet.postprocess_numpy,
TensorFlow's semantics) with the anchors and NMS settings of the export's config, so it serves any threshold.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from effdet.anchor_grid import anchors_for
from effdet.config import Config, NmsConfig
from effdet.postprocess_numpy import postprocess_image
from effdet.predict import CONFIG_ASSET, Detection, read_label_map

_OUTPUTS = ("boxes", "scores", "classes", "num_detections")
NETWORK_OUTPUTS = ("box_codes", "class_logits")
"""The outputs of a file holding the network alone (effdet.export.export_tflite_network)."""


@dataclass(frozen=True)
class HeadDecoder:
    """What a network-only file needs around it: the input's quantization (scale, zero point; scale 0 for a
    float input), the anchors (float32 [anchors, 4] yxyx in input pixels), NMS settings and the detection cap."""

    input_scale: float
    input_zero_point: int
    input_dtype: Any
    anchors: np.ndarray = field(repr=False)
    nms: NmsConfig
    max_detections: int


@dataclass(frozen=True)
class TFLiteModel:
    """A loaded TFLite detector: its interpreter, input size (height, width), label map (class id -> name),
    the score threshold it was exported with, and its pad colour. Call it through `predict_tflite`, which
    holds `lock` while the interpreter runs (an Interpreter is not thread-safe)."""

    path: Path
    interpreter: Any
    runner: Any
    input_size: tuple[int, int]
    label_map: dict[int, str]
    min_score: float
    pad_rgb: tuple[int, int, int]
    decoder: HeadDecoder | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def load_tflite(
    path: Path | str,
    label_map: Mapping[int, str],
    num_threads: int,
    min_score: float,
    mean_rgb: float | Sequence[float],
    config: Config | None = None,
) -> TFLiteModel:
    """Load a TFLite file written by effdet.export (export_tflite or export_tflite_network) with LiteRT (XNNPACK
    on num_threads threads).

    The file carries neither its labels, its score threshold nor its normalisation, so the caller gives them
    from the export: label_map (the SavedModel's assets/label_map.json), min_score (the min_score_thresh it
    was exported with: the default threshold, and for a file with NMS inside the lowest it can serve) and
    mean_rgb (config.model.mean_rgb, one number or R, G, B: the colour that pads an image to the input size).
    A network-only file also needs the export's config (anchors, NMS settings).
    """
    from ai_edge_litert.interpreter import Interpreter

    if num_threads < 1:
        raise ValueError(f"num_threads {num_threads} must be 1 or more (the cores inference may use)")
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score {min_score} is not a score; give the min_score_thresh of the export, in [0, 1]")
    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    signatures = interpreter.get_signature_list()
    outputs = sorted(signatures.get("serving_default", {}).get("outputs", []))
    if outputs not in (sorted(_OUTPUTS), sorted(NETWORK_OUTPUTS)):
        raise ValueError(f"{path} is not a detector exported by effdet (signatures: {signatures})")
    runner = interpreter.get_signature_runner("serving_default")
    details = runner.get_input_details()["images"]
    shape = [int(v) for v in details["shape"]]
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise ValueError(f"{path} takes images of shape {shape}; an effdet export takes [1, height, width, 3]")
    decoder = None
    if outputs == sorted(NETWORK_OUTPUTS):
        if config is None:
            raise ValueError(f"{path} holds the network alone; give the export's config to decode its outputs")
        if tuple(config.model.image_size) != (shape[1], shape[2]):
            raise ValueError(f"{path} takes {shape[1:3]} images but the config says {config.model.image_size}")
        scale, zero_point = details["quantization"]
        decoder = HeadDecoder(
            input_scale=float(scale),
            input_zero_point=int(zero_point),
            input_dtype=details["dtype"],
            anchors=anchors_for(config.model).boxes,
            nms=config.eval.nms_configs,
            max_detections=config.eval.tflite_max_detections,
        )
    return TFLiteModel(
        path=Path(path),
        interpreter=interpreter,
        runner=runner,
        input_size=(shape[1], shape[2]),
        label_map=dict(label_map),
        min_score=float(min_score),
        pad_rgb=pad_colour(mean_rgb),
        decoder=decoder,
    )


def load_tflite_export(path: Path | str, saved_model: Path | str, num_threads: int, min_score: float) -> TFLiteModel:
    """Load a TFLite file of an export with the label map and config from its SavedModel's assets."""
    config = Config.from_yaml(Path(saved_model) / "assets" / CONFIG_ASSET)
    return load_tflite(path, read_label_map(saved_model), num_threads, min_score, config.model.mean_rgb, config)


def predict_tflite(
    model: TFLiteModel,
    image_bytes_list: Sequence[bytes],
    score_threshold: float | None = None,
    max_detections: int | None = None,
) -> list[list[Detection]]:
    """Detections for each encoded image (any format Pillow opens), as effdet.predict.predict_images gives them
    for the SavedModel: boxes [xmin, ymin, xmax, ymax] in pixels of the image as stored, best first, scoring
    above score_threshold (default: the model's min_score, the lowest it can serve), at most max_detections.
    """
    threshold = model.min_score if score_threshold is None else score_threshold
    if model.decoder is None and np.float32(threshold) < np.float32(model.min_score):
        raise ValueError(
            f"score_threshold {threshold} is below {model.min_score}, the threshold this TFLite file was exported "
            "with; raise it, or export the model again with a lower min_score"
        )
    results = []
    for data in image_bytes_list:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
        canvas, scale = letterbox(pixels, model.input_size, model.pad_rgb)
        if model.decoder is None:
            boxes, scores, classes = _detect_in_graph(model, canvas, threshold)
        else:
            boxes, scores, classes = _detect_decoded(model, model.decoder, canvas, threshold)
        cap = slice(None) if max_detections is None else slice(max(max_detections, 0))
        boxes, scores, classes = boxes[cap], scores[cap], classes[cap]
        height, width = pixels.shape[:2]
        limits = np.array([width, height, width, height], np.float32)
        boxes = np.minimum(boxes * (np.float32(1.0) / scale), limits)
        results.append(
            [
                Detection(
                    box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                    class_id=int(class_id),
                    label=model.label_map.get(int(class_id), str(int(class_id))),
                    score=float(score),
                )
                for box, class_id, score in zip(boxes, classes, scores, strict=True)
            ]
        )
    return results


Found = tuple[np.ndarray, np.ndarray, np.ndarray]
"""boxes float32 [n, 4] xyxy in canvas pixels, scores float32 [n], classes [n] (1-based), best first."""


def _detect_in_graph(model: TFLiteModel, canvas: np.ndarray, threshold: float) -> Found:
    """Detections of a file with NMS inside, above threshold."""
    with model.lock:
        outputs = model.runner(images=canvas[np.newaxis])
    count = int(outputs["num_detections"][0])
    scores = outputs["scores"][0, :count]
    # The NMS op keeps scores above its threshold, strictly, as the SavedModel's does.
    keep = np.flatnonzero(scores > np.float32(threshold))
    return outputs["boxes"][0, keep], scores[keep], outputs["classes"][0, keep]


def _detect_decoded(model: TFLiteModel, decoder: HeadDecoder, canvas: np.ndarray, threshold: float) -> Found:
    """Detections of a network-only file: its head outputs decoded and suppressed here."""
    logits, codes = head_outputs(model, decoder, canvas)
    found = postprocess_image(
        logits, codes, decoder.anchors, model.input_size, decoder.nms, threshold, decoder.max_detections
    )
    return found.boxes[:, [1, 0, 3, 2]], found.scores, found.classes


def head_outputs(model: TFLiteModel, decoder: HeadDecoder, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A network-only file's outputs for one letterboxed canvas uint8 [H, W, 3]: class logits float32
    [anchors, classes] and box codes float32 [anchors, 4]. A quantized input gets the grey levels in its steps."""
    images = canvas[np.newaxis].astype(np.float32)
    if decoder.input_scale:
        info = np.iinfo(decoder.input_dtype)
        quantized = np.rint(images / np.float32(decoder.input_scale)) + decoder.input_zero_point
        images = np.clip(quantized, info.min, info.max)
    with model.lock:
        outputs = model.runner(images=images.astype(decoder.input_dtype))
    return outputs["class_logits"][0], outputs["box_codes"][0]


def pad_colour(mean_rgb: float | Sequence[float]) -> tuple[int, int, int]:
    """The uint8 colour that the graph normalises to zero: the normalisation mean (one number or R, G, B)."""
    red, green, blue = (
        int(v) for v in np.clip(np.rint(np.broadcast_to(np.asarray(mean_rgb, np.float64), (3,))), 0, 255)
    )
    return red, green, blue


def letterbox(
    pixels: np.ndarray, size: tuple[int, int], pad_rgb: tuple[int, int, int]
) -> tuple[np.ndarray, np.float32]:
    """An image uint8 [h, w, 3] fitted into size (height, width) as the SavedModel fits it -> (canvas uint8
    [height, width, 3] with the image at the top-left and pad_rgb elsewhere, scale: canvas pixels per original
    pixel, float32)."""
    height, width = pixels.shape[:2]
    target_h, target_w = size
    scale = min(np.float32(target_h) / np.float32(height), np.float32(target_w) / np.float32(width))
    scaled_h = min(max(int(np.rint(np.float32(height) * scale)), 1), target_h)
    scaled_w = min(max(int(np.rint(np.float32(width) * scale)), 1), target_w)
    resized = resize_bilinear(pixels, scaled_h, scaled_w)
    bottom, right = target_h - scaled_h, target_w - scaled_w
    canvas = cv2.copyMakeBorder(resized, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=tuple(pad_rgb))
    return canvas, scale


def resize_bilinear(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [h, w, c] -> uint8 [height, width, c] as tf.image.resize(method='bilinear') resamples (half-pixel
    centres, no antialiasing), rounded to whole grey levels. OpenCV's bilinear in float32 is the same filter
    (within 0.02 of TensorFlow's float result) at a tenth of the time of the same steps in NumPy (0.6 against
    6.5 ms for a 650x417 photo to 512x328); its uint8 path rounds weights to 11 bits (0.8 grey levels off)."""
    if pixels.shape[:2] == (height, width):
        return pixels
    resized = cv2.resize(pixels.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    # Each output is a weighted mean of grey levels, so it rounds into [0, 255] without clipping.
    np.rint(resized, out=resized)
    return resized.astype(np.uint8).reshape(height, width, pixels.shape[2])
