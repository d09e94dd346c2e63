"""The image index the converter writes beside the records (`images.jsonl`, effdet.data.layout.IMAGE_INDEX_FILE):
one JSON line per image a reader found, kept or dropped (also those no annotation names), so a gallery can show
every image with its boxes and problems without TensorFlow and without the records.

Each line is an `IndexedImage`: a stable id (from its path), its path relative to the dataset root (the names
problems use; `effdet.data.ingest.root_members` maps it back to the upload's zip member), its upright size, its
split (train, val or dropped), every box the annotation gave it (kept ones as stored, dropped ones as annotated,
each with its problem code) and every problem that names the file. Boxes are [xmin, ymin, xmax, ymax] in pixels
of the upright image (the image as stored in the records: EXIF orientation applied).

The file is sorted: images with problems first, then by path. It is written streaming: entries are spooled to a
scratch file while images are validated, then only their sort keys and offsets are held to write the sorted file.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, Field

from effdet.data.records import Box, Problem, Record, Severity
from effdet.data.scratch import scratch_database

ImageSplit = Literal["train", "val", "dropped"]
DROPPED: ImageSplit = "dropped"
ID_CHARS = 16
UNANNOTATED = "unannotated_image"
"""The readers' warning for an image no annotation names (effdet.data.formats.common.ImageIndex.unannotated)."""


class IndexedBox(BaseModel):
    """One box of an image as the index shows it."""

    label: str
    bbox: list[float] | None = Field(description="[xmin, ymin, xmax, ymax] in upright pixels; None if not numbers")
    dropped: bool = Field(description="left out of the records (its own error, or its image was dropped)")
    problem: str | None = Field(None, description="code of the problem found with this box, if any")


class IndexedImage(BaseModel):
    """One image of the dataset, kept or dropped."""

    id: str = Field(description="stable id: a hash of the path")
    path: str = Field(description="path relative to the dataset root, '/'-separated")
    in_upload: bool = Field(description="False when the image came out of a TFRecord, not a file of the upload")
    width: int | None = Field(description="upright width in pixels; None when the image could not be opened")
    height: int | None
    split: ImageSplit
    boxes: list[IndexedBox]
    problems: list[Problem] = Field(description="every problem that names this file (box ones with object_index)")

    @property
    def problem_codes(self) -> list[str]:
        """The distinct problem codes, in order of appearance."""
        return list(dict.fromkeys(problem.code for problem in self.problems))


def image_id(path: str) -> str:
    """The stable id of an image path."""
    return hashlib.sha1(path.encode()).hexdigest()[:ID_CHARS]


def _bbox(box: Box) -> list[float] | None:
    coords = (box.xmin, box.ymin, box.xmax, box.ymax)
    return [round(c, 2) for c in coords] if all(math.isfinite(c) for c in coords) else None


def index_entry(
    record: Record,
    size: tuple[int, int] | None,
    annotated: list[Box],
    kept: list[Box] | None,
    problems: list[Problem],
    id: str,
    in_upload: bool = True,
    split: str = "train",
) -> IndexedImage:
    """The entry of one validated record.

    size: the upright (width, height), None when the image did not open; annotated: every box of the record on the
    upright image, in the order problems' object_index counts; kept: the boxes written to the records (None when
    the image is dropped); problems: those naming record.filename; split: where a kept image was written.
    """
    box_problems: dict[int, Problem] = {}
    for problem in problems:
        index = problem.object_index
        if index is not None and (index not in box_problems or problem.severity == Severity.ERROR):
            box_problems[index] = problem
    boxes: list[IndexedBox] = []
    remaining = iter(kept or [])
    for index, box in enumerate(annotated):
        found = box_problems.get(index)
        dropped = kept is None or (found is not None and _drops_box(found))
        stored = box if dropped else next(remaining, box)
        code = found.code if found else None
        boxes.append(IndexedBox(label=stored.label, bbox=_bbox(stored), dropped=dropped, problem=code))
    return IndexedImage(
        id=id,
        path=record.filename,
        in_upload=in_upload,
        width=size[0] if size else None,
        height=size[1] if size else None,
        split=DROPPED if kept is None else split,
        boxes=boxes,
        problems=problems,
    )


def _drops_box(problem: Problem) -> bool:
    """Whether the problem left its box out (an error, or the warning about a repeated box)."""
    return problem.severity == Severity.ERROR or problem.code == "duplicate_box"


class IndexSpool:
    """Collects entries in any order in a scratch file, then writes them sorted (problems first, then path); the
    sort keys and the ids given are kept in a scratch database (effdet.data.scratch), not in memory."""

    def __init__(self, handle: IO[bytes], in_upload: bool = True) -> None:
        self._handle = handle
        self.in_upload = in_upload
        self._db = scratch_database()
        self._db.execute("CREATE TABLE entry (clean INTEGER NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE given (id TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("BEGIN")

    def unique_id(self, path: str) -> str:
        """The id of a path, with a suffix when an earlier path hashed to the same (or the path repeats)."""
        base = candidate = image_id(path)
        counter = 1
        while self._db.execute("SELECT 1 FROM given WHERE id = ?", (candidate,)).fetchone():
            counter += 1
            candidate = f"{base}-{counter}"
        self._db.execute("INSERT INTO given VALUES (?)", (candidate,))
        return candidate

    def add(self, entry: IndexedImage) -> None:
        """Spool one entry."""
        self._handle.seek(0, 2)
        self._db.execute("INSERT INTO entry VALUES (?, ?, ?)", (not entry.problems, entry.path, self._handle.tell()))
        self._handle.write(entry.model_dump_json().encode() + b"\n")

    def add_unannotated(self, problems_by_file: Mapping[str, list[Problem]]) -> None:
        """Spool the images a reader found but no annotation names (its 'unannotated_image' warnings, for paths
        not spooled yet): they are images of the upload too, left out, with no box and no known size."""
        candidates = {
            path: found
            for path, found in problems_by_file.items()
            if any(problem.code == UNANNOTATED for problem in found)
        }
        for (path,) in self._db.execute("SELECT path FROM entry") if candidates else ():
            candidates.pop(path, None)
        for path, found in candidates.items():
            entry = IndexedImage(
                id=self.unique_id(path),
                path=path,
                in_upload=self.in_upload,
                width=None,
                height=None,
                split=DROPPED,
                boxes=[],
                problems=found,
            )
            self.add(entry)

    def write(self, destination: Path, moved: Mapping[str, str] | None = None) -> None:
        """Write the sorted index; `moved` gives a new split to the kept images it names (path -> split)."""
        self._handle.flush()
        rows = self._db.execute("SELECT path, offset FROM entry ORDER BY clean, path, offset")
        with destination.open("wb") as out:
            for path, offset in rows:
                self._handle.seek(offset)
                line = self._handle.readline()
                if moved and path in moved:
                    entry = json.loads(line)
                    entry["split"] = moved[path]
                    line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
                out.write(line)


def read_index(path: Path) -> Iterator[IndexedImage]:
    """The entries of an images.jsonl, one at a time, in the file's order."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield IndexedImage.model_validate_json(line)


def gallery_ids(path: Path) -> dict[str, str]:
    """{image path: gallery id} from an images.jsonl (empty for a dataset converted before it had one)."""
    return {entry.path: entry.id for entry in read_index(path)} if path.is_file() else {}


def matches(entry: dict[str, object], split: str | None, label: str | None, code: str | None) -> bool:
    """Whether a raw index line (parsed JSON) passes the gallery's filters (None: any)."""
    if split is not None and entry["split"] != split:
        return False
    boxes: Iterable[dict[str, object]] = entry["boxes"]  # type: ignore[assignment]
    if label is not None and not any(box["label"] == label for box in boxes):
        return False
    problems: Iterable[dict[str, object]] = entry["problems"]  # type: ignore[assignment]
    return code is None or any(problem["code"] == code for problem in problems)
