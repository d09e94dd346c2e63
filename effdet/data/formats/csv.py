"""CSV reader for two layouts: a header CSV with one pixel box per row, and TFLite Model Maker's headerless CSV.

Header CSV: columns `filename`, `xmin`, `ymin`, `xmax`, `ymax` and `class` or `label` in any order; `width` and
`height`, when present, are the declared size. Model Maker: `SPLIT,path,label,x_min,y_min,,,x_max,y_max,,` with
coordinates normalised to the image, so this layout reads each image's header to get pixels. Rows of one image
become one record; a row whose label and coordinates are all empty means the image has no objects.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from effdet.data.formats.common import (
    ImageIndex,
    announced_splits,
    image_size,
    no_annotation_files,
    parse_number,
    relative_name,
    search_dirs,
    split_from_name,
    walk_files,
)
from effdet.data.read_result import ReadResult
from effdet.data.records import Box, Problem, Record, Split, error, warning

FORMAT = "csv"
MODEL_MAKER_SPLITS = {"TRAIN": Split.TRAIN, "VALIDATION": Split.VAL, "TEST": Split.TEST, "UNASSIGNED": None}
"""First column of a Model Maker CSV -> the split it assigns."""

_COLUMN_NAMES = {
    "filename": ("filename", "file_name", "file", "image", "image_name", "image_path", "path"),
    "label": ("class", "label", "class_name", "name", "category"),
    "xmin": ("xmin", "x_min"),
    "ymin": ("ymin", "y_min"),
    "xmax": ("xmax", "x_max"),
    "ymax": ("ymax", "y_max"),
    "width": ("width", "image_width"),
    "height": ("height", "image_height"),
}
_CORNERS = ("xmin", "ymin", "xmax", "ymax")
_MODEL_MAKER_CORNERS = (3, 4, 7, 8)


@dataclass
class _Row:
    """One CSV row naming an image: its box (None for an image without objects, or a box too broken to read)."""

    name: str
    label: str | None
    corners: tuple[float, float, float, float] | None
    split: Split | None = None
    width: int | None = None
    height: int | None = None
    dropped: bool = False


def read_csv(root: Path) -> ReadResult:
    """Read every CSV under root; bad rows and files become problems, never exceptions.

    Files named for a split (`train_labels.csv`) are read first and set that split; an image that an earlier
    file already annotated is skipped with one warning per file (so a combined CSV beside split CSVs is fine).
    """
    root = root.absolute()
    files = walk_files(root)
    index = ImageIndex(root, files)
    result = ReadResult(format=FORMAT)
    csv_files = sorted(
        (path for path in files if path.suffix.lower() == ".csv"),
        key=lambda path: (split_from_name(path.stem) is None, path),
    )
    if not csv_files:
        result.problems.append(no_annotation_files(".csv files"))
    seen: dict[Path, str] = {}
    splits = announced_splits({path: [path.stem] for path in csv_files})
    for path in csv_files:
        file = relative_name(path, root)
        rows, normalised = _read_rows(path, file, result.problems)
        records = _group(rows, normalised, path.parent, file, splits[path], index, result.problems)
        repeated = [record for record in records if record.image_path in seen]
        if repeated:
            message = (
                f"{len(repeated)} images (e.g. {repeated[0].filename}) are already annotated in "
                f"{seen[repeated[0].image_path]}; this file's rows for them are ignored"
            )
            result.problems.append(warning(file, "duplicate_annotation", message))
        for record in records:
            if record.image_path not in seen:
                seen[record.image_path] = file
                result.records.append(record)
    result.problems.extend(index.unannotated(seen, "a CSV row (with empty label and coordinates if no objects)"))
    return result


def _read_rows(path: Path, file: str, problems: list[Problem]) -> tuple[list[tuple[int, _Row]], bool]:
    """The file's usable rows with their line numbers, and whether the coordinates are normalised."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            lines = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(error(file, "malformed_csv", f"cannot read it as UTF-8 CSV ({exc}); fix or remove it"))
        return [], False
    if not lines:
        problems.append(warning(file, "empty_csv", "the file has no rows; ignored"))
        return [], False
    if lines[0][0].strip().upper() in MODEL_MAKER_SPLITS:
        return _model_maker_rows(lines, file, problems), True
    header = [cell.strip().lower() for cell in lines[0]]
    columns = {key: next((header.index(n) for n in names if n in header), None) for key, names in _COLUMN_NAMES.items()}
    if columns["filename"] is None or any(columns[key] is None for key in _CORNERS):
        message = (
            f"unknown CSV layout (first row {lines[0]!r:.80}); use a header with filename, xmin, ymin, xmax, "
            "ymax and class (or label), or Model Maker's SPLIT,path,label,x_min,y_min,,,x_max,y_max,,"
        )
        problems.append(error(file, "unknown_csv_layout", message))
        return [], False
    if columns["label"] is None:
        problems.append(error(file, "missing_column", "the header has no 'class' or 'label' column; add one"))
        return [], False
    rows = [
        (line, row)
        for line, cells in enumerate(lines[1:], start=2)
        if (row := _header_row(cells, columns, file, line, problems)) is not None
    ]
    return rows, False


def _header_row(
    cells: list[str], columns: dict[str, int | None], file: str, line: int, problems: list[Problem]
) -> _Row | None:
    """One row of a header CSV, or None with a problem for a missing field or a coordinate that is no number."""
    values = {key: cells[column].strip() if column < len(cells) else None for key, column in _present(columns)}
    name = values["filename"]
    if not name:
        problems.append(error(file, "missing_field", f"line {line}: no filename; fill it in or delete the row"))
        return None
    label = values["label"]
    if not label and not any(values[key] for key in _CORNERS):
        return _Row(name, None, None)
    corners = _corners(file, line, [(key, values[key]) for key in _CORNERS], problems)
    if corners is not None and not label:
        problems.append(error(file, "missing_label", f"line {line}: the box has no class; fill it in"))
    if corners is None or not label:
        return _Row(name, None, None, dropped=True)
    return _Row(name, label, corners, width=_pixels(values.get("width")), height=_pixels(values.get("height")))


def _present(columns: dict[str, int | None]) -> list[tuple[str, int]]:
    """The (field, column index) pairs of the columns the header has."""
    return [(key, column) for key, column in columns.items() if column is not None]


def _model_maker_rows(lines: list[list[str]], file: str, problems: list[Problem]) -> list[tuple[int, _Row]]:
    """Rows of a Model Maker CSV; a row with an unknown split or a bad coordinate is a problem."""
    rows: list[tuple[int, _Row]] = []
    for line, cells in enumerate(lines, start=1):
        split_name = cells[0].strip().upper()
        if split_name not in MODEL_MAKER_SPLITS:
            message = f"line {line}: split {cells[0]!r} is not TRAIN, VALIDATION, TEST or UNASSIGNED"
            problems.append(error(file, "invalid_split", message))
            continue
        split = MODEL_MAKER_SPLITS[split_name]
        padded = [cell.strip() for cell in cells] + [""] * max(0, 11 - len(cells))
        name, label = padded[1], padded[2]
        if not name:
            problems.append(error(file, "missing_field", f"line {line}: no image path; fill it in or delete the row"))
            continue
        if not label and not any(padded[column] for column in _MODEL_MAKER_CORNERS):
            rows.append((line, _Row(name, None, None, split)))
            continue
        keys = ("x_min", "y_min", "x_max", "y_max")
        corners = _corners(
            file, line, [(key, padded[c]) for key, c in zip(keys, _MODEL_MAKER_CORNERS, strict=True)], problems
        )
        if corners is not None and not label:
            problems.append(error(file, "missing_label", f"line {line}: the box has no label; fill it in"))
        if corners is None or not label:
            rows.append((line, _Row(name, None, None, split, dropped=True)))
            continue
        rows.append((line, _Row(name, label, corners, split)))
    return rows


def _corners(
    file: str, line: int, named: list[tuple[str, str | None]], problems: list[Problem]
) -> tuple[float, float, float, float] | None:
    """Four coordinates from their cells, or None with one problem naming the first cell that is no number."""
    numbers: list[float] = []
    for key, text in named:
        number = parse_number(text) if text is not None else None
        if number is None:
            shown = "missing" if text is None else f"{text!r}, not a number"
            message = f"line {line}: {key} is {shown}; fix the row"
            problems.append(error(file, "missing_field" if text is None else "invalid_coordinate", message))
            return None
        numbers.append(number)
    return numbers[0], numbers[1], numbers[2], numbers[3]


def _group(
    rows: list[tuple[int, _Row]],
    normalised: bool,
    csv_dir: Path,
    file: str,
    file_split: Split | None,
    index: ImageIndex,
    problems: list[Problem],
) -> list[Record]:
    """One record per image named in the rows, in first-seen order; missing or unreadable images are problems."""
    by_name: dict[str, list[tuple[int, _Row]]] = {}
    for line, row in rows:
        by_name.setdefault(row.name, []).append((line, row))
    dirs = search_dirs(index.root, csv_dir)
    records: dict[Path, Record] = {}
    for name, named_rows in by_name.items():
        image = index.find(name, dirs)
        lines = ", ".join(str(line) for line, _ in named_rows[:5])
        if image is None:
            message = f"no image {name!r} under the dataset root (rows at line {lines}); add it or delete its rows"
            problems.append(error(file, "missing_image", message))
            continue
        first = named_rows[0][1]
        record = records.get(image) or Record(
            image_path=image,
            filename=relative_name(image, index.root),
            annotation_file=file,
            width=first.width,
            height=first.height,
            split=first.split or file_split,
        )
        scale = (1.0, 1.0)
        if normalised:
            try:
                record.width, record.height = image_size(image)
            except OSError as exc:
                problems.append(error(record.filename, "unreadable_image", f"cannot read its header ({exc})"))
                continue
            scale = (float(record.width), float(record.height))
        for _, row in named_rows:
            record.dropped_boxes += row.dropped
            if row.corners is not None and row.label is not None:
                xmin, ymin, xmax, ymax = row.corners
                record.boxes.append(
                    Box(
                        xmin=xmin * scale[0],
                        ymin=ymin * scale[1],
                        xmax=xmax * scale[0],
                        ymax=ymax * scale[1],
                        label=row.label,
                    )
                )
        records[image] = record
    return list(records.values())


def _pixels(text: str | None) -> int | None:
    """A declared width or height cell, or None when empty or not a positive integer."""
    number = parse_number(text) if text else None
    return int(number) if number is not None and number > 0 and number == int(number) else None
