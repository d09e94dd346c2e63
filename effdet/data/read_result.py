"""What a reader returns (ReadResult): its records, kept in a scratch file as it finds them, so that memory holds
nothing per image however many there are.

Records are written as JSON lines in the reader's order to a spooled temporary file (in memory while small, on
disk beyond SPOOL_MEMORY_BYTES, removed when the spool is collected); their keys (what numbering the classes and
drawing the split need: name, announced split, box labels) go to a scratch database (effdet.data.scratch).
`record_keys()` streams them in order, `load` reads one record back by its key and iterating reads them all, in
order, as often as needed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from effdet.data.masks import ClassColours
from effdet.data.records import Problem, Record
from effdet.data.scratch import scratch_database

SPOOL_MEMORY_BYTES = 4 << 20
"""Records held in memory before the spool moves to a file: a few thousand images."""
_COMMIT_EVERY = 4096
"""Keys inserted per transaction (one transaction per key would write the page each time)."""
_PAGE = 4096
"""Keys read from the database at a time."""


class RecordKey(NamedTuple):
    """What the split (effdet.data.split) and the class numbering see of a spooled record, and where it is."""

    position: int
    filename: str
    split: str | None
    box_labels: tuple[str, ...]
    offset: int


class RecordSpool:
    """Records in a scratch file, their keys in a scratch database; appended to like a list by the readers.

    `with_masks` counts the records that carry a mask source (Record.has_masks): whether the dataset has masks."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._handle = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 (lives with the spool)
        self._db = scratch_database()
        self._db.execute(
            "CREATE TABLE record (position INTEGER PRIMARY KEY, filename TEXT NOT NULL, split TEXT, "
            "labels TEXT NOT NULL, offset INTEGER NOT NULL, tag TEXT)"
        )
        self._length = 0
        self.with_masks = 0
        self.extend(records)

    def append(self, record: Record) -> None:
        """Spool one record; later changes to the object are not seen (set its split before)."""
        self._handle.seek(0, 2)
        offset = self._handle.tell()
        self._handle.write(record.model_dump_json().encode() + b"\n")
        split = record.split.value if record.split else None
        labels = json.dumps([box.label for box in record.boxes])
        if self._length % _COMMIT_EVERY == 0:
            self._flush()
            self._db.execute("BEGIN")
        self._db.execute(
            "INSERT INTO record VALUES (?, ?, ?, ?, ?, NULL)", (self._length, record.filename, split, labels, offset)
        )
        self._length += 1
        self.with_masks += record.has_masks

    def _flush(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def extend(self, records: Iterable[Record]) -> None:
        """Spool records in order."""
        for record in records:
            self.append(record)

    def record_keys(self) -> Iterator[RecordKey]:
        """The records' keys, streamed in order (a page at a time, so records may be tagged meanwhile)."""
        self._flush()
        return self._pages()

    def _pages(self) -> Iterator[RecordKey]:
        for start in range(0, self._length, _PAGE):
            rows = self._db.execute(
                "SELECT position, filename, split, labels, offset FROM record WHERE position >= ? AND position < ?",
                (start, start + _PAGE),
            ).fetchall()
            for position, filename, split, labels, offset in rows:
                yield RecordKey(position, filename, split, tuple(json.loads(labels)), offset)

    def tag(self, tags: Iterable[tuple[int, str]]) -> None:
        """Give records (by position) a tag each, e.g. the group a split draws them from."""
        self._flush()
        self._db.execute("BEGIN")
        self._db.executemany("UPDATE record SET tag = ? WHERE position = ?", ((tag, pos) for pos, tag in tags))
        self._db.execute("COMMIT")

    def tags(self) -> list[str]:
        """The distinct tags given, sorted."""
        rows = self._db.execute("SELECT DISTINCT tag FROM record WHERE tag IS NOT NULL ORDER BY tag")
        return [row[0] for row in rows]

    def tagged(self, tag: str) -> Iterator[int]:
        """The positions of the records tagged `tag`, sorted by file name (then position), streamed."""
        rows = self._db.execute("SELECT position FROM record WHERE tag = ? ORDER BY filename, position", (tag,))
        for row in rows:
            yield row[0]

    def load(self, key: RecordKey) -> Record:
        """The record that `key` names."""
        self._handle.seek(key.offset)
        return Record.model_validate_json(self._handle.readline())

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Record:
        self._flush()
        row = self._db.execute("SELECT offset FROM record WHERE position = ?", (range(self._length)[index],)).fetchone()
        self._handle.seek(row[0])
        return Record.model_validate_json(self._handle.readline())

    def __iter__(self) -> Iterator[Record]:
        for key in self.record_keys():
            yield self.load(key)


class ReadResult(BaseModel):
    """What a reader returns: the records it could build (spooled) and every problem it met on the way."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    format: str
    records: RecordSpool = Field(default_factory=RecordSpool)
    problems: list[Problem] = Field(default_factory=list)
    label_names: list[str] = Field(
        default_factory=list, description="class names in the order the format defines them, if it does"
    )
    label_ids: dict[int, str] = Field(
        default_factory=dict, description="class id -> name where the format fixes ids (TFRecords); kept as they are"
    )
    class_colours: dict[Path, ClassColours] = Field(
        default_factory=dict,
        description="SegmentationClass folder -> the class colours its VOC dataset's labelmap.txt gives (CVAT, "
        "Datumaro); its class PNGs are read through them instead of VOC's palette",
    )

    @field_validator("records", mode="before")
    @classmethod
    def _spooled(cls, value: Any) -> Any:
        """A list of records given by a reader is spooled like appended ones."""
        return value if isinstance(value, RecordSpool) else RecordSpool(value)
