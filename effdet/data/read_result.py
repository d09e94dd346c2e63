"""What a reader returns (ReadResult): its records, kept in a scratch file as it finds them, so that memory holds
a few bytes per image (its name, announced split and box labels: what numbering the classes and drawing the split
need) instead of every record with its boxes and paths.

Records are written as JSON lines in the reader's order to a spooled temporary file (in memory while small, on
disk beyond SPOOL_MEMORY_BYTES, removed when the spool is collected); `keys` lists them in that order, `load`
reads one back by its key and iterating reads them all, in order, as often as needed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from effdet.data.records import Problem, Record

SPOOL_MEMORY_BYTES = 4 << 20
"""Records held in memory before the spool moves to a file: a few thousand images."""


class RecordKey(NamedTuple):
    """What stays in memory of a spooled record: enough to number classes, split (effdet.data.split) and find it."""

    filename: str
    split: str | None
    box_labels: tuple[str, ...]
    offset: int


class RecordSpool:
    """Records in a scratch file, with their keys in memory; appended to like a list by the readers."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._handle = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 (lives with the spool)
        self.keys: list[RecordKey] = []
        self.extend(records)

    def append(self, record: Record) -> None:
        """Spool one record; later changes to the object are not seen (set its split before)."""
        self._handle.seek(0, 2)
        offset = self._handle.tell()
        self._handle.write(record.model_dump_json().encode() + b"\n")
        split = record.split.value if record.split else None
        self.keys.append(RecordKey(record.filename, split, tuple(box.label for box in record.boxes), offset))

    def extend(self, records: Iterable[Record]) -> None:
        """Spool records in order."""
        for record in records:
            self.append(record)

    def load(self, key: RecordKey) -> Record:
        """The record that `key` names."""
        self._handle.seek(key.offset)
        return Record.model_validate_json(self._handle.readline())

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> Record:
        return self.load(self.keys[index])

    def __iter__(self) -> Iterator[Record]:
        for key in list(self.keys):
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

    @field_validator("records", mode="before")
    @classmethod
    def _spooled(cls, value: Any) -> Any:
        """A list of records given by a reader is spooled like appended ones."""
        return value if isinstance(value, RecordSpool) else RecordSpool(value)
