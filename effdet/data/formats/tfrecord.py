"""Reader for ready google/automl TFRecords: each tf.train.Example becomes a common Record.

Files are streamed one example at a time; each image's bytes are written to a scratch folder (the caller's,
removed after conversion), so memory holds only the boxes. Boxes are normalised to the stored pixels, as
automl's decoder reads them; they are placed on the image's real size, whatever `image/height` and
`image/width` declare. Class ids are kept: a box takes its `image/object/class/text`, or the name its id has
elsewhere (or in the user's label map), and `ReadResult.label_ids` carries the ids for the label map.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, UnidentifiedImageError

from effdet.data.formats.common import announced_splits, relative_name, walk_files
from effdet.data.read_result import ReadResult
from effdet.data.records import Box, Problem, Record, error, warning
from effdet.data.validate import CLIP_TOLERANCE

TFRECORD_SUFFIXES = frozenset({".tfrecord", ".record", ".tfrec"})
"""File names a TFRecord upload may use."""

_COORDINATES = ("xmin", "ymin", "xmax", "ymax")
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}


class _Object(NamedTuple):
    """One box as stored: normalised corners, class id (None when absent) and text ('' when absent)."""

    corners: tuple[float, float, float, float]
    class_id: int | None
    text: str
    is_crowd: bool


class _Pending(NamedTuple):
    """An example read and spilled, waiting for the dataset-wide class names."""

    record: Record
    objects: list[_Object]
    real_size: tuple[int, int]


def _feature_values(example: Any, key: str) -> list[Any]:
    """The values of one feature, whichever list type holds them ([] when the key is missing)."""
    feature = example.features.feature.get(key)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _examples(path: Path, problems: list[Problem], name: str) -> Iterator[tuple[int, Any]]:
    """(index, tf.train.Example) for each record of one file; a damaged file ends with a problem, not a raise."""
    import tensorflow as tf

    index = -1
    try:
        for index, raw in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            try:
                yield index, tf.train.Example.FromString(raw)
            except Exception:  # protobuf's DecodeError has no stable import path across versions
                problems.append(error(f"{name}#{index}", "bad_example", "record is not a tf.train.Example"))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
        problems.append(
            error(
                name,
                "corrupt_tfrecord",
                f"the file is truncated or damaged after record {index + 1}; the records before it were kept, "
                "re-create or re-upload the file",
            )
        )


def _real_size(data: bytes) -> tuple[tuple[int, int], str] | None:
    """((width, height), extension) from the image header, or None when Pillow cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size, _EXTENSIONS.get(image.format or "", ".img")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _objects(example: Any, file: str, problems: list[Problem]) -> list[_Object] | None:
    """The example's boxes; None (with an error) when its per-box lists do not line up."""
    corners = {key: _feature_values(example, f"image/object/bbox/{key}") for key in _COORDINATES}
    ids = [int(value) for value in _feature_values(example, "image/object/class/label")]
    texts = [
        bytes(value).decode("utf-8", "replace").strip() for value in _feature_values(example, "image/object/class/text")
    ]
    crowd = [bool(value) for value in _feature_values(example, "image/object/is_crowd")]
    count = len(corners["xmin"])
    lengths = {len(values) for values in corners.values()} | {len(v) for v in (ids, texts, crowd) if v}
    if lengths - {count}:
        problems.append(
            error(
                file,
                "mismatched_object_lists",
                "the bbox/xmin, ymin, xmax, ymax, class/label and class/text lists have different lengths "
                f"({sorted(lengths)}); every object needs one value in each",
            )
        )
        return None
    if not ids and not texts and count:
        problems.append(error(file, "no_class", "objects have neither class/label nor class/text; add either"))
        return None
    return [
        _Object(
            (
                float(corners["xmin"][i]),
                float(corners["ymin"][i]),
                float(corners["xmax"][i]),
                float(corners["ymax"][i]),
            ),
            ids[i] if ids else None,
            texts[i] if texts else "",
            crowd[i] if crowd else False,
        )
        for i in range(count)
    ]


def _usable(obj: _Object, index: int, file: str, problems: list[Problem]) -> bool:
    """Whether a box's id and coordinates can be used; an error for each that cannot."""
    if obj.class_id is not None and obj.class_id < 1:
        problems.append(
            error(
                file, "bad_class_id", f"class/label {obj.class_id} is below 1 (ids start at 1, 0 is background)", index
            )
        )
        return False
    low, high = -CLIP_TOLERANCE, 1.0 + CLIP_TOLERANCE
    if not all(math.isfinite(c) and low <= c <= high for c in obj.corners):
        problems.append(
            error(
                file,
                "box_not_normalised",
                f"box {obj.corners} (xmin, ymin, xmax, ymax) is not within [0, 1]; automl TFRecords store "
                "coordinates divided by the image width and height",
                index,
            )
        )
        return False
    return True


class _Classes:
    """The dataset's class names and ids: for each id its most common text and for each text its most common
    id; ids without text take the user's name for them, else the id itself as the name."""

    def __init__(self, pending: list[_Pending], user_names: Mapping[int, str] | None) -> None:
        pairs = Counter(
            (o.class_id, o.text) for item in pending for o in item.objects if o.class_id is not None and o.text
        )
        self.name_of: dict[int, str] = {}
        self.id_of: dict[str, int] = {}
        for (class_id, text), _ in pairs.most_common():
            self.name_of.setdefault(class_id, text)
            self.id_of.setdefault(text, class_id)
        for class_id, name in (user_names or {}).items():
            self.name_of.setdefault(class_id, name)
        self.used: dict[str, int | None] = {}

    def label(self, obj: _Object) -> str | None:
        """The object's class name, or None when its id and text contradict the rest of the dataset."""
        class_id = obj.class_id
        if obj.text:
            name = obj.text
            if class_id is None:
                class_id = self.id_of.get(name)
            elif self.name_of.get(class_id) != name or self.id_of.get(name) != class_id:
                return None
        elif class_id is not None:
            name = self.name_of.get(class_id, str(class_id))
            class_id = self.id_of.get(name, class_id)
        else:
            return None
        if self.used.get(name) is None:
            self.used[name] = class_id
        return name

    def label_ids(self) -> dict[int, str]:
        """Id -> name of the names used; names that came without an id get the next free ids."""
        ids = {class_id: name for name, class_id in self.used.items() if class_id is not None}
        for name in sorted(name for name, class_id in self.used.items() if class_id is None):
            ids[max(ids, default=0) + 1] = name
        return dict(sorted(ids.items()))


def _labelled(item: _Pending, classes: _Classes, problems: list[Problem]) -> Record | None:
    """The record with its boxes named and in pixels of the real image; None when every box was dropped."""
    width, height = item.real_size
    file = item.record.filename
    boxes = []
    for index, obj in enumerate(item.objects):
        if not _usable(obj, index, file, problems):
            continue
        label = classes.label(obj)
        if label is None:
            problems.append(
                error(
                    file,
                    "inconsistent_class",
                    f"class/label {obj.class_id} with class/text {obj.text!r}, but elsewhere id {obj.class_id} is "
                    f"{classes.name_of.get(obj.class_id or 0)!r} and {obj.text!r} is id {classes.id_of.get(obj.text)}; "
                    "fix the id or the text of this object",
                    index,
                )
            )
            continue
        xmin, ymin, xmax, ymax = obj.corners
        boxes.append(
            Box(
                xmin=xmin * width,
                ymin=ymin * height,
                xmax=xmax * width,
                ymax=ymax * height,
                label=label,
                is_crowd=obj.is_crowd,
            )
        )
    if item.objects and not boxes:
        problems.append(error(file, "no_valid_boxes", "every object of this example was unusable; it is left out"))
        return None
    return item.record.model_copy(update={"boxes": boxes})


def _spill(example: Any, file: str, image_path: Path, problems: list[Problem]) -> _Pending | None:
    """Write the example's image to image_path (extension added) and keep its boxes; None when they are unusable."""
    try:
        objects = _objects(example, file, problems)
        declared = (
            int((_feature_values(example, "image/width") or [0])[0]),
            int((_feature_values(example, "image/height") or [0])[0]),
        )
    except (TypeError, ValueError):
        problems.append(
            error(file, "bad_feature_type", "a feature has the wrong type (numbers stored as text?); use automl's keys")
        )
        return None
    if objects is None:
        return None
    encoded = _feature_values(example, "image/encoded")
    data = bytes(encoded[0]) if encoded else b""
    header = _real_size(data)
    image_path = image_path.with_suffix(header[1] if header else ".img")
    image_path.write_bytes(data)
    real = header[0] if header else declared
    if header and declared != (0, 0) and declared != real:
        problems.append(
            warning(
                file,
                "size_mismatch",
                f"image/width and image/height say {declared[0]}x{declared[1]} but the image is "
                f"{real[0]}x{real[1]}; the normalised boxes are placed on the real image",
            )
        )
    record = Record(
        image_path=image_path, filename=file, annotation_file="", width=real[0] or None, height=real[1] or None
    )
    return _Pending(record, objects, real)


def read_tfrecords(root: Path, scratch: Path, label_map: Mapping[int, str] | None = None) -> ReadResult:
    """Records for every example of the TFRecord files under root; images are written to scratch.

    label_map (id -> name), when given, names the ids of objects that have no class/text. Problems name an
    example by its image/filename, or by 'file#index' when it has none or shares it with an earlier one.
    """
    problems: list[Problem] = []
    files = [path for path in walk_files(root) if path.suffix.lower() in TFRECORD_SUFFIXES]
    if not files:
        problems.append(error(".", "no_annotation_files", "no .tfrecord, .record or .tfrec file under the root"))
    names = {path: relative_name(path, root) for path in files}
    splits = announced_splits({path: [path.stem, *path.relative_to(root).parent.parts] for path in files})
    scratch.mkdir(parents=True, exist_ok=True)
    pending: list[_Pending] = []
    seen: set[str] = set()
    read = 0
    for path in files:
        for index, example in _examples(path, problems, names[path]):
            position = f"{names[path]}#{index}"
            declared = bytes((_feature_values(example, "image/filename") or [b""])[0]).decode("utf-8", "replace")
            file = declared if declared and declared not in seen else position
            seen.add(file)
            read += 1
            spilled = _spill(example, file, scratch / f"{read:08d}", problems)
            if spilled is not None:
                record = spilled.record.model_copy(update={"annotation_file": position, "split": splits[path]})
                pending.append(spilled._replace(record=record))
    classes = _Classes(pending, label_map)
    records = [labelled for item in pending if (labelled := _labelled(item, classes, problems)) is not None]
    return ReadResult(format="tfrecord", records=records, problems=problems, label_ids=classes.label_ids())
