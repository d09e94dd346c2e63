"""COCO JSON reader: `images`, `annotations` with `bbox` [x, y, width, height], and sparse-id `categories`.

Every image a JSON file lists becomes a record, with no boxes when no annotation refers to it (COCO's way of
saying "no objects"). JSON files named for different splits (`instances_train2017.json`, `val.json`) set the split.
An annotation's `segmentation` (polygons or RLE) travels on its box; validation rasterises and checks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from effdet.data.formats.common import (
    ImageIndex,
    announced_splits,
    no_annotation_files,
    parse_number,
    relative_name,
    search_dirs,
    walk_files,
)
from effdet.data.read_result import ReadResult
from effdet.data.records import Box, Problem, Record, Segmentation, Split, error, warning

FORMAT = "coco"
_REQUIRED_KEYS = ("images", "annotations", "categories")
_SEGMENTATION: TypeAdapter[Segmentation] = TypeAdapter(Segmentation)


@dataclass
class _Context:
    """What reading one JSON file needs and builds."""

    root: Path
    file: str
    index: ImageIndex
    problems: list[Problem]
    seen: dict[Path, str]
    object_counts: dict[int | str, int] = field(default_factory=dict)


def read_coco(root: Path) -> ReadResult:
    """Read every COCO JSON under root; broken files, entries and boxes become problems, never exceptions."""
    root = root.absolute()
    files = walk_files(root)
    index = ImageIndex(root, files)
    result = ReadResult(format=FORMAT)
    loaded = [
        (path, data)
        for path in files
        if path.suffix.lower() == ".json" and (data := _load(path, root, result.problems)) is not None
    ]
    if not loaded:
        result.problems.append(no_annotation_files("COCO .json files with images, annotations and categories"))
    seen: dict[Path, str] = {}
    splits = announced_splits({path: [path.stem] for path, _ in loaded})
    for path, data in loaded:
        split = splits[path]
        context = _Context(root, relative_name(path, root), index, result.problems, seen)
        categories = _categories(data["categories"], context)
        for name in (categories[key] for key in sorted(categories)):
            if name not in result.label_names:
                result.label_names.append(name)
        records = _records(data["images"], path.parent, split, context)
        _add_boxes(data["annotations"], records, categories, context)
        result.records.extend(record for record in records.values() if record is not None)
    result.problems.extend(index.unannotated(seen, "an entry in a COCO JSON file's 'images'"))
    return result


def _load(path: Path, root: Path, problems: list[Problem]) -> dict[str, Any] | None:
    """The file's JSON object when it is a COCO file; None (with a problem if it looks like a broken one)."""
    file = relative_name(path, root)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        problems.append(error(file, "malformed_json", f"not valid JSON ({exc}); fix or remove the file"))
        return None
    if not isinstance(data, dict) or not any(key in data for key in _REQUIRED_KEYS):
        problems.append(warning(file, "not_coco_json", "no 'images', 'annotations' or 'categories' key; ignored"))
        return None
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        problems.append(error(file, "missing_key", f"a COCO file needs {', '.join(map(repr, missing))}; add it"))
        return None
    not_lists = [key for key in _REQUIRED_KEYS if not isinstance(data[key], list)]
    if not_lists:
        problems.append(error(file, "invalid_field", f"{', '.join(map(repr, not_lists))} must be a list"))
        return None
    return data


def _categories(entries: list[Any], context: _Context) -> dict[int, str]:
    """Category id -> stripped name; entries without an integer id or a name are reported and skipped."""
    categories: dict[int, str] = {}
    for position, entry in enumerate(entries):
        category_id = entry.get("id") if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(category_id, int) or isinstance(category_id, bool) or not isinstance(name, str):
            message = f"categories[{position}] needs an integer 'id' and a string 'name', got {entry!r:.80}"
            context.problems.append(error(context.file, "invalid_field", message))
        elif category_id in categories or not name.strip():
            message = f"categories[{position}]: id {category_id} is repeated or its name is empty; fix it"
            context.problems.append(error(context.file, "invalid_field", message))
        else:
            categories[category_id] = name.strip()
    return categories


def _records(
    entries: list[Any], json_dir: Path, split: Split | None, context: _Context
) -> dict[int | str, Record | None]:
    """Image id -> record without boxes yet; None for listed images that cannot be used (already reported)."""
    records: dict[int | str, Record | None] = {}
    dirs = search_dirs(context.root, json_dir)
    for position, entry in enumerate(entries):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        file_name = entry.get("file_name") if isinstance(entry, dict) else None
        if not isinstance(image_id, int | str) or isinstance(image_id, bool) or not isinstance(file_name, str):
            message = f"images[{position}] needs an 'id' and a string 'file_name', got {entry!r:.80}"
            context.problems.append(error(context.file, "invalid_field", message))
            continue
        if image_id in records:
            message = f"images[{position}]: id {image_id!r} is used twice; give every image its own id"
            context.problems.append(error(context.file, "invalid_field", message))
            continue
        image = context.index.find(file_name, dirs)
        records[image_id] = None
        if image is None:
            message = (
                f"image id {image_id!r}: no file {file_name!r} beside the JSON, at the root or in images/; "
                "add the image or remove its entry"
            )
            context.problems.append(error(context.file, "missing_image", message))
        elif image in context.seen:
            message = f"{file_name!r} is already listed in {context.seen[image]}; this entry and its boxes are ignored"
            context.problems.append(warning(context.file, "duplicate_image", message))
        else:
            context.seen[image] = context.file
            records[image_id] = Record(
                image_path=image,
                filename=relative_name(image, context.root),
                annotation_file=context.file,
                width=_pixels(entry.get("width")),
                height=_pixels(entry.get("height")),
                split=split,
            )
    return records


def _add_boxes(
    entries: list[Any], records: dict[int | str, Record | None], categories: dict[int, str], context: _Context
) -> None:
    """Append each annotation's box to its image's record; bad references and bboxes become problems."""
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            message = f"annotations[{position}] is {entry!r:.80}, not an object"
            context.problems.append(error(context.file, "invalid_field", message))
            continue
        image_id = entry.get("image_id")
        if not isinstance(image_id, int | str) or image_id not in records:
            message = f"annotations[{position}] refers to image_id {image_id!r}, which 'images' does not list"
            context.problems.append(error(context.file, "unknown_image_id", message))
            continue
        record = records[image_id]
        if record is None:
            continue
        object_index = context.object_counts.get(image_id, 0)
        context.object_counts[image_id] = object_index + 1
        box = _box(entry, position, categories, record, object_index, context)
        if box is None:
            record.dropped_boxes += 1
        else:
            record.boxes.append(box)


def _box(
    entry: dict[str, Any],
    position: int,
    categories: dict[int, str],
    record: Record,
    object_index: int,
    context: _Context,
) -> Box | None:
    """One annotation as a pixel-corner box, or None with a problem for an unknown category or a bad bbox."""
    category_id = entry.get("category_id")
    if type(category_id) is not int or category_id not in categories:
        message = f"annotations[{position}] ({record.filename}): category_id {category_id!r} is not in 'categories'"
        context.problems.append(error(context.file, "unknown_category", message, object_index))
        return None
    bbox = _bbox(entry.get("bbox"))
    if bbox is None:
        message = (
            f"annotations[{position}] ({record.filename}): bbox {entry.get('bbox')!r:.80} is not four numbers "
            "[x, y, width, height]"
        )
        context.problems.append(error(context.file, "invalid_bbox", message, object_index))
        return None
    x, y, width, height = bbox
    return Box(
        xmin=x,
        ymin=y,
        xmax=x + width,
        ymax=y + height,
        label=categories[category_id],
        is_crowd=bool(entry.get("iscrowd")),
        segmentation=_segmentation(entry.get("segmentation"), position, record, object_index, context),
    )


def _segmentation(
    value: object, position: int, record: Record, object_index: int, context: _Context
) -> Segmentation | None:
    """The annotation's polygons or RLE; None when it has none (absent or empty) or, with a problem, a bad shape."""
    if value is None or value == [] or value == {}:
        return None
    try:
        return _SEGMENTATION.validate_python(value)
    except ValidationError:
        message = (
            f"annotations[{position}] ({record.filename}): segmentation {value!r:.80} is neither polygons "
            '[[x1, y1, x2, y2, ...], ...] nor RLE {"counts": ..., "size": [height, width]}; fix it or remove it'
        )
        context.problems.append(error(context.file, "invalid_segmentation", message, object_index))
        return None


def _bbox(value: object) -> tuple[float, float, float, float] | None:
    """A COCO bbox as four floats; None unless it is a list of exactly four JSON numbers (strings refused)."""
    if not isinstance(value, list) or len(value) != 4:
        return None
    numbers = [number for item in value if not isinstance(item, str) and (number := parse_number(item)) is not None]
    return (numbers[0], numbers[1], numbers[2], numbers[3]) if len(numbers) == 4 else None


def _pixels(value: object) -> int | None:
    """A declared image width or height, or None when absent or not a positive integer."""
    number = parse_number(value)
    return int(number) if number is not None and number > 0 and number == int(number) else None
