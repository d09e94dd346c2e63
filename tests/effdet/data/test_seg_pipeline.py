"""Class maps in the records and the input pipeline: stored beside the boxes, moved with the image by flip and
scale jitter (nearest, never blended), padded with the ignore label and sampled to the segmentation logits' size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from effdet.config import get_config
from effdet.data.masks import IGNORE, encode_png
from effdet.data.pipeline import build_dataset, seg_label_size
from effdet.data.records import Box
from effdet.data.shards import make_example
from effdet.data.validate import ValidItem

RED, GREY = (220, 30, 30), (90, 90, 90)


def _record(folder: Path, name: str, with_mask: bool) -> bytes:
    """A 96x64 photo whose left third is red (class 1 in its map), the rest grey (background)."""
    pixels = np.empty((64, 96, 3), np.uint8)
    pixels[:] = GREY
    pixels[:, :32] = RED
    path = folder / name
    Image.fromarray(pixels).save(path)
    item = ValidItem(
        image_path=path,
        filename=name,
        width=96,
        height=64,
        boxes=[Box(xmin=0, ymin=0, xmax=32, ymax=64, label="red")],
        sha1=name,
        image_format="png",
    )
    class_map = np.zeros((64, 96), np.uint8)
    class_map[:, :32] = 1
    mask = encode_png(class_map) if with_mask else None
    return make_example(item, path.read_bytes(), 0, {"red": 1}, mask).SerializeToString()


def _records(tmp_path: Path, with_mask: bool) -> str:
    path = tmp_path / "train.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(4):
            writer.write(_record(tmp_path, f"{i}.png", with_mask))
    return str(path)


def _config(**overrides: object) -> object:
    settings = {"image_size": 128, "num_classes": 1, "heads": ["segmentation"], "jitter_min": 0.6, "jitter_max": 1.8}
    return get_config("efficientdet-d0", {**settings, **overrides})


def test_the_class_map_moves_with_the_image_under_flip_and_jitter(tmp_path: Path) -> None:
    config = _config()
    data = build_dataset(_records(tmp_path, with_mask=True), config, batch_size=4, training=True, seed=5)
    mean = np.asarray(config.model.mean_rgb, np.float32)
    std = np.asarray(config.model.stddev_rgb, np.float32)
    flipped = agree = total = 0
    for batch in data.take(6):
        labels = batch["seg_labels"].numpy()
        assert labels.shape == (4, *seg_label_size(config)) == (4, 32, 32)
        assert labels.dtype == np.uint8
        # The photo's colour at each label's pixel (the labels are a quarter of the input, nearest-sampled).
        colours = batch["images"].numpy()[:, 2::4, 2::4] * std + mean
        red = np.abs(colours - RED).sum(-1) < 30
        grey = np.abs(colours - GREY).sum(-1) < 30
        counted = labels != IGNORE
        agree += int(((labels == 1) & red).sum() + ((labels == 0) & grey).sum())
        total += int(counted.sum())
        assert not (red | grey)[~counted].any(), "padding, not the photo, is where the labels are ignored"
        flipped += int((labels[:, :, -1] == 1).any(axis=1).sum())
    assert agree / total > 0.97
    assert flipped > 0, "some flipped images put the red third on the right"


def test_an_image_without_a_class_map_is_ignored_everywhere(tmp_path: Path) -> None:
    config = _config(jitter_min=1.0, jitter_max=1.0)
    batch = next(iter(build_dataset(_records(tmp_path, with_mask=False), config, 4, training=False)))
    assert (batch["seg_labels"].numpy() == IGNORE).all()


def test_detection_batches_carry_no_labels_map(tmp_path: Path) -> None:
    config = _config(heads=["object_detection"])
    batch = next(iter(build_dataset(_records(tmp_path, with_mask=True), config, 4, training=False)))
    assert "seg_labels" not in batch
