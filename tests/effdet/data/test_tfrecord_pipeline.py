"""TFRecords carry automl's keys exactly; the pipeline turns them into labelled batches."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from effdet.config import get_config
from effdet.data.pipeline import build_dataset
from effdet.data.records import Box
from effdet.data.shards import write_shard
from effdet.data.validate import ValidItem

AUTOML_KEYS = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/source_id": tf.io.FixedLenFeature((), tf.string),
    "image/height": tf.io.FixedLenFeature((), tf.int64),
    "image/width": tf.io.FixedLenFeature((), tf.int64),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/area": tf.io.VarLenFeature(tf.float32),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
}


def item(path: Path, boxes: list[Box]) -> ValidItem:
    Image.new("RGB", (200, 100), (200, 50, 50)).save(path)
    return ValidItem(
        image_path=path, filename=path.name, width=200, height=100, boxes=boxes, sha1="x", image_format="jpeg"
    )


def test_records_parse_with_plain_automl_keys(tmp_path: Path) -> None:
    plate = Box(xmin=20, ymin=10, xmax=120, ymax=60, label="plate")
    shard = tmp_path / "train-00000-of-00001.tfrecord"
    write_shard(shard, [(7, item(tmp_path / "a.jpg", [plate]))], {"plate": 1})
    raw = next(iter(tf.data.TFRecordDataset(str(shard))))
    parsed = tf.io.parse_single_example(raw, AUTOML_KEYS)
    dense = {
        k: tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v.numpy() for k, v in parsed.items()
    }
    assert dense["image/source_id"] == b"7"
    assert (dense["image/height"], dense["image/width"]) == (100, 200)
    np.testing.assert_allclose(dense["image/object/bbox/xmin"], [0.1])
    np.testing.assert_allclose(dense["image/object/bbox/ymax"], [0.6])
    assert dense["image/object/class/label"].tolist() == [1]
    assert dense["image/object/class/text"].tolist() == [b"plate"]
    np.testing.assert_allclose(dense["image/object/area"], [5000.0])
    assert dense["image/encoded"] == (tmp_path / "a.jpg").read_bytes()  # original bytes, not re-encoded


def test_pipeline_batches_have_targets_and_padding(tmp_path: Path) -> None:
    boxes = [
        Box(xmin=20, ymin=10, xmax=120, ymax=60, label="plate"),
        Box(xmin=150, ymin=5, xmax=190, ymax=95, label="car"),
    ]
    items = [(i + 1, item(tmp_path / f"{i}.jpg", boxes[: 1 + i % 2])) for i in range(4)]
    write_shard(tmp_path / "train-00000-of-00001.tfrecord", items, {"plate": 1, "car": 2})
    config = get_config("efficientdet-d0", "image_size=128,num_classes=2,max_instances_per_image=5")

    train = next(iter(build_dataset(str(tmp_path / "train-*.tfrecord"), config, batch_size=2, training=True, seed=1)))
    assert train["images"].shape == (2, 128, 128, 3)
    assert train["cls_targets"].shape[0] == 2
    assert train["box_targets"].shape[-1] == 4
    assert train["boxes"].shape == (2, 5, 4)
    assert int(tf.reduce_sum(tf.cast(train["cls_targets"] > 0, tf.int32))) >= 2

    batches = list(build_dataset(str(tmp_path / "train-*.tfrecord"), config, batch_size=3, training=False))
    assert [int(b["images"].shape[0]) for b in batches] == [3, 1]  # eval keeps every image
    first = batches[0]
    assert first["source_ids"].numpy().tolist() == [b"1", b"2", b"3"]
    np.testing.assert_allclose(first["image_scales"].numpy(), [200 / 128] * 3, rtol=1e-5)
    np.testing.assert_allclose(first["boxes"][0, 0].numpy(), np.array([10, 20, 60, 120]) * 128 / 200, atol=1e-3)
    assert first["classes"][1].numpy().tolist() == [1, 2, 0, 0, 0]


def test_too_many_boxes_is_a_clear_error(tmp_path: Path) -> None:
    boxes = [Box(xmin=10 * i, ymin=10, xmax=10 * i + 8, ymax=50, label="plate") for i in range(4)]
    write_shard(tmp_path / "t.tfrecord", [(1, item(tmp_path / "a.jpg", boxes))], {"plate": 1})
    config = get_config("efficientdet-d0", "image_size=128,num_classes=1,max_instances_per_image=3")
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_instances_per_image=3"):
        next(iter(build_dataset(str(tmp_path / "t.tfrecord"), config, batch_size=1, training=False)))
