"""A segmentation model's mIoU, per-class IoU and pixel accuracy on records, at each image's original size (of a
Keras model as training leaves it, or of an exported SavedModel as predict serves it).

The logits come at a quarter of the network input. Each image's are resized bilinearly to the input, cut to the
window the image fills (evaluation places it top-left, unjittered), resized to the image's own size, and then
argmaxed. So a prediction is scored against every pixel of the stored class map, and none of the labels is resampled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from effdet.config import Config
from effdet.data.masks import IGNORE, decode_png
from effdet.data.pipeline import make_preprocess
from effdet.data.shards import parse_example, record_files
from effdet.export import seg_class_names
from effdet.model.efficientdet import split_outputs
from effdet.predict import load_exported, predict_batch
from effdet.seg_metrics import ConfusionAccumulator, SegmentationMetrics
from effdet.seg_postprocess import logits_window


def class_map_at(logits: tf.Tensor, input_size: tuple[int, int], scale: float, size: tuple[int, int]) -> np.ndarray:
    """uint8 [height, width] classes of one image from its logits [h, w, C] for the network input `input_size`;
    `scale` is input pixels per original pixel, `size` the original (height, width). The window's logits are
    resized bilinearly to the image before the argmax: the exact variant of the export's class map."""
    window = logits_window(logits, input_size, tf.constant(scale, tf.float32), tf.constant(size, tf.int32))
    at_size = tf.image.resize(window[None], list(size), method="bilinear")[0]
    return tf.argmax(at_size, axis=-1, output_type=tf.int32).numpy().astype(np.uint8)


def evaluate_segmentation(model: keras.Model, config: Config, files: str | Sequence[str]) -> SegmentationMetrics:
    """Score the model's class maps on every image of the records that has one (images without are skipped)."""
    preprocess = make_preprocess(config, training=False)
    heads = config.model.heads

    @tf.function(reduce_retracing=True)
    def forward(images: tf.Tensor) -> tf.Tensor:
        logits = split_outputs(model(images, training=False), heads).seg_logits
        if logits is None:
            raise ValueError(f"the model's heads {heads} have no segmentation head to score")
        return logits

    scores = ConfusionAccumulator(seg_class_names(config))
    for example in tf.data.TFRecordDataset(record_files(files)).map(parse_example):
        stored = example["seg_mask"].numpy()
        if not stored:
            continue
        labels = decode_png(stored)
        prepared = preprocess(example)
        logits = forward(prepared["images"][None])[0]
        scale = 1.0 / float(prepared["image_scales"])
        predicted = class_map_at(logits, config.model.image_size, scale, (labels.shape[0], labels.shape[1]))
        scores.add(labels, predicted)
    return scores.metrics()


def evaluate_exported_segmentation(
    saved_model: Path,
    files: str | Sequence[str],
    class_ids: Mapping[int, int],
    class_names: Sequence[str],
    on_image: Callable[[int], None] | None = None,
) -> SegmentationMetrics:
    """Score an exported model's class maps, as predict answers them, on every image of the records that has one.

    class_ids: the model's class id -> the records' (classes matched by name); a model class the records lack
    counts as background. class_names: the records' class names by id, background first. `on_image(done)` after
    each image scored, and may raise to stop."""
    loaded = load_exported(saved_model)
    to_records = np.zeros(256, np.uint8)
    to_records[IGNORE] = IGNORE
    for model_id, records_id in class_ids.items():
        to_records[model_id] = records_id
    scores = ConfusionAccumulator(class_names)
    for example in tf.data.TFRecordDataset(record_files(files)).map(parse_example):
        stored = example["seg_mask"].numpy()
        if not stored:
            continue
        (found,) = predict_batch(loaded, [example["image"].numpy()])
        if found.class_map is None:
            raise ValueError(f"{saved_model} answers no class map: it was not exported with a segmentation head")
        scores.add(decode_png(stored), to_records[found.class_map])
        if on_image is not None:
            on_image(scores.num_images)
    return scores.metrics()
