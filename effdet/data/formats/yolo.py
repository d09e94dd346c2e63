"""YOLO txt reader: one `class cx cy w h` line per object, normalised to the image, beside the image or in labels/.

Class names come from `classes.txt` (or darknet's `*.names`) or a `data.yaml` `names:` list or dict. An empty
.txt means "no objects": a record with no boxes. Folders such as images/train and images/val set the split.
Each image's header (not its pixels) is read to turn normalised coordinates into pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from effdet.data.formats.common import (
    ImageIndex,
    announced_splits,
    image_size,
    no_annotation_files,
    parse_number,
    relative_name,
    walk_files,
)
from effdet.data.read_result import ReadResult
from effdet.data.records import Box, Problem, Record, error, warning

FORMAT = "yolo"
NAME_FILES = frozenset({"classes.txt", "obj.names", "classes.names"})
"""Files that list class names, one per line, in class-id order."""


def read_yolo(root: Path) -> ReadResult:
    """Read every image and its YOLO .txt under root; broken lines and files become problems, never exceptions."""
    root = root.absolute()
    files = walk_files(root)
    index = ImageIndex(root, files)
    result = ReadResult(format=FORMAT)
    names = _class_names(root, files, result.problems)
    result.label_names = [names[key] for key in sorted(names)]
    label_files = {path for path in files if _may_be_labels(path)}
    if not label_files:
        result.problems.append(no_annotation_files("YOLO .txt label files"))
    used: set[Path] = set()
    labelled: dict[Path, Path] = {}
    for image in index.images:
        label_file = _label_file(image, root, label_files)
        if label_file is not None:
            used.add(label_file)
            labelled[image] = label_file
    annotated = list(labelled)
    splits = announced_splits({image: relative_name(image, root).split("/")[:-1] for image in annotated})
    for image, label_file in labelled.items():
        record = _read_labels(image, label_file, root, names, result.problems)
        if record is not None:
            record.split = splits[image]
            result.records.append(record)
    result.problems.extend(index.unannotated(annotated, "a YOLO .txt file (empty if it has no objects)"))
    image_dirs = {image.parent for image in index.images}
    for path in sorted(label_files - used):
        if (path.parent in image_dirs or "labels" in _lower_parts(path, root)) and _looks_like_labels(path):
            message = f"no image named '{path.stem}.*' for these labels (beside it, or under images/ for labels/)"
            result.problems.append(error(relative_name(path, root), "missing_image", message))
    return result


def _may_be_labels(path: Path) -> bool:
    """Whether a file could be a YOLO label file (a .txt that is not a class-name list)."""
    return path.suffix.lower() == ".txt" and path.name.lower() not in NAME_FILES


def _lower_parts(path: Path, root: Path) -> list[str]:
    """The folder names between root and the file, lower-cased."""
    return [part.lower() for part in path.relative_to(root).parts[:-1]]


def _label_file(image: Path, root: Path, label_files: set[Path]) -> Path | None:
    """The .txt for an image: beside it, or the same path with the last `images` folder replaced by `labels`."""
    candidates = [image.with_suffix(".txt")]
    parts = list(image.relative_to(root).parts)
    for position in reversed(range(len(parts) - 1)):
        if parts[position].lower() == "images":
            mirrored = [*parts[:position], "labels", *parts[position + 1 :]]
            candidates.append((root.joinpath(*mirrored)).with_suffix(".txt"))
            break
    return next((path for path in candidates if path in label_files), None)


def _looks_like_labels(path: Path) -> bool:
    """Whether a .txt's first line is numbers (so an orphan is reported, but a README or a split list is not)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline().split()
    except OSError:
        return False
    return len(first) >= 5 and all(parse_number(value) is not None for value in first)


def _class_names(root: Path, files: list[Path], problems: list[Problem]) -> dict[int, str]:
    """Class id -> name from the shallowest data.yaml with `names`, else classes.txt; a warning when neither."""
    by_depth = sorted(files, key=lambda path: (len(path.relative_to(root).parts), path))
    for path in by_depth:
        if path.suffix.lower() in (".yaml", ".yml"):
            names = _yaml_names(path, root, problems)
            if names is not None:
                return names
    for path in by_depth:
        if path.name.lower() in NAME_FILES or path.suffix.lower() == ".names":
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(error(relative_name(path, root), "unreadable_file", f"cannot read it: {exc}"))
                continue
            return dict(enumerate(name for line in lines if (name := line.strip())))
    if files:
        message = "no classes.txt or data.yaml with 'names'; classes are named class_0, class_1, ...; add one"
        problems.append(warning(".", "missing_class_names", message))
    return {}


def _yaml_names(path: Path, root: Path, problems: list[Problem]) -> dict[int, str] | None:
    """The `names:` of a YOLO data YAML (a list, or a dict of id -> name); None when the file has none."""
    file = relative_name(path, root)
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(error(file, "malformed_yaml", f"not valid YAML ({exc}); fix or remove the file"))
        return None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return {position: str(name).strip() for position, name in enumerate(names)}
    if isinstance(names, dict) and all(isinstance(key, int) for key in names):
        return {key: str(name).strip() for key, name in names.items()}
    if names is not None:
        problems.append(error(file, "invalid_field", "'names' must be a list or a mapping of class id to name"))
    return None


def _read_labels(
    image: Path, label_file: Path, root: Path, names: dict[int, str], problems: list[Problem]
) -> Record | None:
    """One image and its label file as a record; None (with a problem) if either cannot be read."""
    file = relative_name(label_file, root)
    try:
        lines = [line.strip() for line in label_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(error(file, "unreadable_file", f"cannot read it as UTF-8 text: {exc}"))
        return None
    filename = relative_name(image, root)
    try:
        width, height = image_size(image)
    except OSError as exc:
        problems.append(error(filename, "unreadable_image", f"cannot read the image header ({exc}); replace it"))
        return None
    objects = [_parse_line(line, width, height, names, file, index, problems) for index, line in enumerate(lines)]
    boxes = [box for box in objects if box is not None]
    return Record(
        image_path=image,
        filename=filename,
        annotation_file=file,
        width=width,
        height=height,
        boxes=boxes,
        dropped_boxes=len(objects) - len(boxes),
    )


def _parse_line(
    line: str, width: int, height: int, names: dict[int, str], file: str, object_index: int, problems: list[Problem]
) -> Box | None:
    """`class cx cy w h` (or a segmentation polygon `class x1 y1 x2 y2 ...`) as a pixel box, or None."""
    fields = line.split()
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        message = f"line {line!r:.60} has {len(fields)} fields; expected 'class cx cy w h' (normalised)"
        problems.append(error(file, "invalid_line", message, object_index))
        return None
    class_number = parse_number(fields[0])
    if class_number is None or class_number < 0 or class_number != int(class_number):
        message = f"class {fields[0]!r} is not a class id (0, 1, ...)"
        problems.append(error(file, "invalid_class_id", message, object_index))
        return None
    class_id = int(class_number)
    if names and class_id not in names:
        message = f"class id {class_id} is not among the {len(names)} class names (0..{max(names)}); fix the id"
        problems.append(error(file, "unknown_class_id", message, object_index))
        return None
    values = [parse_number(value) for value in fields[1:]]
    numbers = [value for value in values if value is not None]
    if len(numbers) != len(values):
        message = f"line {line!r:.60} has coordinates that are not numbers"
        problems.append(error(file, "invalid_coordinate", message, object_index))
        return None
    if len(numbers) == 4:
        center_x, center_y, box_width, box_height = numbers
        xmin, xmax = center_x - box_width / 2, center_x + box_width / 2
        ymin, ymax = center_y - box_height / 2, center_y + box_height / 2
    else:
        xmin, xmax = min(numbers[0::2]), max(numbers[0::2])
        ymin, ymax = min(numbers[1::2]), max(numbers[1::2])
    return Box(
        xmin=xmin * width,
        ymin=ymin * height,
        xmax=xmax * width,
        ymax=ymax * height,
        label=names.get(class_id, f"class_{class_id}"),
    )
