"""Fixes to a converted dataset's boxes (delete, add, change the class, replace the coordinates), applied to a copy
of its records, so a new dataset version can be converted from them while the old one stays as it was.

Boxes are named as evaluations name them: an image by its record's source id, a box by its annotation id
(`annotation_id`: source id * BOXES_PER_IMAGE_ID + its index in the record). TensorFlow is imported only where
records are read and written, so the API can validate fixes with this module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BOXES_PER_IMAGE_ID = 100_000
"""Annotation ids are source id * this + the box's index in its record, so an id names the same box whatever split
or subset of the records the ground truth was read from."""

FixAction = Literal["delete_box", "add_box", "change_class", "replace_box"]
_OBJECT = "image/object/"
_ORDER = {"change_class": 0, "replace_box": 0, "add_box": 1, "delete_box": 2}
"""Fixes that keep box indices first, then additions (appended), then deletions from the last index down."""


def annotation_id(source_id: int, index: int) -> int:
    """The stable id of the index-th box of the record with this source id."""
    return source_id * BOXES_PER_IMAGE_ID + index


class BoxFix(BaseModel):
    """One accepted fix: delete a box, add one, change a box's class, or replace a box's coordinates."""

    model_config = ConfigDict(extra="forbid")

    action: FixAction
    image_id: int = Field(description="the image's source id, as evaluations and their findings name it")
    annotation_id: int | None = Field(None, description="the box to change (delete_box, change_class, replace_box)")
    label: str | None = Field(None, description="the class of an added box, or the new class (change_class)")
    box: list[float] | None = Field(
        None, min_length=4, max_length=4, description="[x, y, width, height] in pixels (add_box, replace_box)"
    )

    def problem(self, classes: Sequence[str]) -> str | None:
        """What is wrong with this fix for a dataset of these classes, or None."""
        needs_box = self.action in ("add_box", "replace_box")
        if self.action != "add_box" and self.annotation_id is None:
            return f"{self.action} needs the annotation_id of the box"
        if self.annotation_id is not None and self.annotation_id // BOXES_PER_IMAGE_ID != self.image_id:
            return f"annotation {self.annotation_id} is not a box of image {self.image_id}"
        if self.action in ("add_box", "change_class") and self.label not in classes:
            return f"{self.action} needs a label among the dataset's classes ({', '.join(classes)}), not {self.label!r}"
        if needs_box and (self.box is None or self.box[2] <= 0 or self.box[3] <= 0 or min(self.box[:2]) < 0):
            return f"{self.action} needs a box [x, y, width, height] with a positive width and height"
        return None


def _values(feature: Any) -> Any:
    """The repeated field a feature holds (float, int64 or bytes list)."""
    kind = feature.WhichOneof("kind")
    return getattr(feature, kind).value if kind else feature.float_list.value


def _apply(example: Any, fix: BoxFix, label_ids: Mapping[str, int]) -> None:
    """Apply one fix to a tf.train.Example of the records (boxes normalised to the stored image)."""
    features = example.features.feature
    width, height = (float(features[f"image/{k}"].int64_list.value[0]) for k in ("width", "height"))
    count = len(features[f"{_OBJECT}bbox/xmin"].float_list.value)
    index = fix.annotation_id % BOXES_PER_IMAGE_ID if fix.annotation_id is not None else count
    if fix.action != "add_box" and index >= count:
        raise ValueError(f"a fix names box {index} of image {fix.image_id}, which has {count} boxes")
    per_object = [key for key in features if key.startswith(_OBJECT) and len(_values(features[key])) == count]
    if fix.action == "delete_box":
        for key in per_object:
            del _values(features[key])[index]
        return
    if fix.action == "add_box":
        for key in per_object:
            values = _values(features[key])
            values.append(type(values[0])() if len(values) else _empty(features[key]))
    if fix.box is not None:
        x, y, w, h = fix.box
        corners = {"xmin": x / width, "ymin": y / height, "xmax": (x + w) / width, "ymax": (y + h) / height}
        for name, value in corners.items():
            features[f"{_OBJECT}bbox/{name}"].float_list.value[index] = min(1.0, max(0.0, value))
        if f"{_OBJECT}area" in features:
            features[f"{_OBJECT}area"].float_list.value[index] = w * h
    if fix.label is not None:
        features[f"{_OBJECT}class/label"].int64_list.value[index] = label_ids[fix.label]
        features[f"{_OBJECT}class/text"].bytes_list.value[index] = fix.label.encode()


def _empty(feature: Any) -> Any:
    """The zero value of a feature's list type (for an image that had no box yet)."""
    kind = feature.WhichOneof("kind")
    return {"bytes_list": b"", "int64_list": 0}.get(kind or "", 0.0)


def apply_fixes(
    files: Mapping[str, Sequence[str]], fixes: Sequence[BoxFix], label_ids: Mapping[str, int], output: Path
) -> dict[str, int]:
    """Copy the records of each split ({"train": [paths], "val": [paths]}) to output/<split>.tfrecord with the fixes
    applied; returns the images written per split. ValueError for a fix naming an image or box that is not there."""
    import tensorflow as tf

    by_image: dict[int, list[BoxFix]] = defaultdict(list)
    for fix in sorted(fixes, key=lambda f: (_ORDER[f.action], -(f.annotation_id or 0))):
        by_image[fix.image_id].append(fix)
    output.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    seen: set[int] = set()
    for split, paths in files.items():
        written[split] = 0
        with tf.io.TFRecordWriter(str(output / f"{split}.tfrecord")) as writer:
            for serialized in tf.data.TFRecordDataset(list(paths)).as_numpy_iterator():
                example = tf.train.Example.FromString(serialized)
                source_id = int(example.features.feature["image/source_id"].bytes_list.value[0])
                for fix in by_image.get(source_id, []):
                    _apply(example, fix, label_ids)
                seen.add(source_id)
                writer.write(example.SerializeToString())
                written[split] += 1
    missing = sorted(set(by_image) - seen)
    if missing:
        raise ValueError(f"fixes name images {missing[:5]} that the dataset does not have")
    return written
