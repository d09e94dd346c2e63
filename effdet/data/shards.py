"""TFRecord shards with exactly google/automl's feature keys, so records move freely between the two.

Boxes are stored normalised to [0, 1] of the stored image; class ids are 1-based; `image/source_id` is an
integer written as a string (automl's COCO evaluation needs it to be one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from effdet.data.validate import ValidItem, encoded_image

SEG_MASK_KEY = "image/segmentation/class/encoded"
"""The image's per-pixel class map as a greyscale PNG (0 background, k label id k, 255 ignore), under the key
DeepLab and the TF Model Garden use (automl's records have none: it decodes per-instance masks it cannot batch).
An image without one parses as an empty string."""

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    "image/height": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
    "image/width": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
    "image/filename": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    "image/object/area": tf.io.VarLenFeature(tf.float32),
    SEG_MASK_KEY: tf.io.FixedLenFeature((), tf.string, default_value=""),
}
"""google/automl's keys and types (create_coco_tfrecord.py / tf_example_decoder.py), and one per-pixel class map."""


def _bytes(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values: Iterable[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _ints(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def make_example(
    item: ValidItem, image: bytes, source_id: int, label_ids: Mapping[str, int], mask_png: bytes | None = None
) -> tf.train.Example:
    """The automl tf.train.Example of one validated image (boxes in pixels -> normalised), with its class map when
    it has one (`mask_png`, the stored image's size)."""
    w, h = float(item.width), float(item.height)
    boxes = item.boxes
    feature = {
        "image/encoded": _bytes([image]),
        "image/format": _bytes([item.image_format.encode()]),
        "image/height": _ints([item.height]),
        "image/width": _ints([item.width]),
        "image/filename": _bytes([item.filename.encode()]),
        "image/source_id": _bytes([str(source_id).encode()]),
        "image/key/sha256": _bytes([item.sha1.encode()]),
        "image/object/bbox/xmin": _floats(b.xmin / w for b in boxes),
        "image/object/bbox/ymin": _floats(b.ymin / h for b in boxes),
        "image/object/bbox/xmax": _floats(b.xmax / w for b in boxes),
        "image/object/bbox/ymax": _floats(b.ymax / h for b in boxes),
        "image/object/class/label": _ints(label_ids[b.label] for b in boxes),
        "image/object/class/text": _bytes(b.label.encode() for b in boxes),
        "image/object/is_crowd": _ints(int(b.is_crowd) for b in boxes),
        "image/object/area": _floats((b.xmax - b.xmin) * (b.ymax - b.ymin) for b in boxes),
        "image/object/difficult": _ints(int(b.difficult) for b in boxes),
        "image/object/truncated": _ints(int(b.truncated) for b in boxes),
    }
    if mask_png is not None:
        feature[SEG_MASK_KEY] = _bytes([mask_png])
        feature["image/segmentation/class/format"] = _bytes([b"png"])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_shard(path: Path, items: Iterable[tuple[int, ValidItem]], label_ids: Mapping[str, int]) -> int:
    """Write (source_id, item) pairs to one TFRecord file, reading each image only when written."""
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for source_id, item in items:
            writer.write(make_example(item, encoded_image(item), source_id, label_ids).SerializeToString())
            count += 1
    return count


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse one serialized automl Example into dense tensors (boxes as [N, 4] yxyx normalised)."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for k, v in parsed.items()}
    boxes = tf.stack(
        [
            dense["image/object/bbox/ymin"],
            dense["image/object/bbox/xmin"],
            dense["image/object/bbox/ymax"],
            dense["image/object/bbox/xmax"],
        ],
        axis=-1,
    )
    return {
        "image": dense["image/encoded"],
        "source_id": dense["image/source_id"],
        "height": dense["image/height"],
        "width": dense["image/width"],
        "boxes": tf.reshape(boxes, [-1, 4]),
        "classes": tf.cast(dense["image/object/class/label"], tf.int32),
        "is_crowd": tf.cast(dense["image/object/is_crowd"], tf.bool),
        "seg_mask": dense[SEG_MASK_KEY],
    }


def record_files(files: str | Sequence[str]) -> list[str]:
    """The sorted, de-duplicated TFRecord paths that glob patterns (one or several) name; none is an error."""
    patterns = [files] if isinstance(files, str) else list(files)
    paths = sorted({p for pattern in patterns for p in tf.io.gfile.glob(pattern)})
    if not paths:
        raise FileNotFoundError(f"no TFRecord file matches {patterns}")
    return paths


def read_box_shapes(files: str | Sequence[str], skip_crowd: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Every box's (width, height) and its image's (width, height) in stored-image pixels, both float64 [N, 2],
    read from the records' box and size features (images are not decoded); crowd boxes are left out with
    skip_crowd, as training leaves them out. Images without a stored size are skipped."""
    boxes_wh: list[tuple[float, float]] = []
    images_wh: list[tuple[float, float]] = []
    for serialized in tf.data.TFRecordDataset(record_files(files)).as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature

        def values(key: str, feature: Any = feature) -> list[Any]:
            entry = feature.get(key)
            if entry is None:
                return []
            return list(entry.int64_list.value or entry.float_list.value)

        width, height = values("image/width"), values("image/height")
        if not width or not height or width[0] <= 0 or height[0] <= 0:
            continue
        xmin, ymin, xmax, ymax = (values(f"image/object/bbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax"))
        crowd = values("image/object/is_crowd") or [0] * len(xmin)
        for x0, y0, x1, y1, is_crowd in zip(xmin, ymin, xmax, ymax, crowd, strict=False):
            if skip_crowd and is_crowd:
                continue
            boxes_wh.append(((x1 - x0) * width[0], (y1 - y0) * height[0]))
            images_wh.append((float(width[0]), float(height[0])))
    return (
        np.array(boxes_wh, dtype=np.float64).reshape(-1, 2),
        np.array(images_wh, dtype=np.float64).reshape(-1, 2),
    )
