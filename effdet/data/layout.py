"""The folder `effdet convert` writes, named once (no TensorFlow, so the service can read it too):

train-00000-of-00002.tfrecord ...   the training shards (automl's features, see effdet.data.shards)
val-00000-of-00001.tfrecord         the val shards (one, empty, when the split has no image)
val_annotations.json                the val ground truth as COCO JSON (image ids are the shards' source ids)
dataset.json                        the ConversionReport: label map, counts, statistics, problems, anchors
images.jsonl                        the image index: every image, kept or dropped, with boxes and problems
                                    (effdet.data.image_index; datasets converted before it have none)
"""

from __future__ import annotations

SHARD_SUFFIX = ".tfrecord"
TRAIN_SPLIT = "train"
VAL_SPLIT = "val"
GROUND_TRUTH_FILE = "val_annotations.json"
REPORT_FILE = "dataset.json"
IMAGE_INDEX_FILE = "images.jsonl"


def shard_name(split: str, index: int, count: int) -> str:
    """File name of one shard, e.g. 'train-00000-of-00004.tfrecord'."""
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def shard_glob(split: str) -> str:
    """The glob of every shard of a split, e.g. 'train-*.tfrecord'."""
    return f"{split}-*{SHARD_SUFFIX}"


TRAIN_SHARDS = shard_glob(TRAIN_SPLIT)
VAL_SHARDS = shard_glob(VAL_SPLIT)
