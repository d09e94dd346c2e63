"""Validated items kept in a scratch file while a dataset converts, so that memory holds a few bytes per image
(its name, split and box labels: what drawing the split needs) instead of every item with its boxes.

Items are written as JSON lines in validation order; `keys` lists them in that order, `load` reads one back by its
key and iterating reads them all, in order, as often as needed (statistics take two passes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, NamedTuple

from effdet.data.validate import ValidItem


class SpooledItem(NamedTuple):
    """What stays in memory of a spooled item: enough to split (effdet.data.split) and count its boxes."""

    filename: str
    split: str | None
    box_labels: tuple[str, ...]
    offset: int


class ItemSpool:
    """ValidItems in a scratch file (an open binary handle the caller closes), with their keys in memory."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.keys: list[SpooledItem] = []

    def add(self, item: ValidItem) -> None:
        """Append one item."""
        self._handle.seek(0, 2)
        offset = self._handle.tell()
        self._handle.write(item.model_dump_json().encode() + b"\n")
        self.keys.append(SpooledItem(item.filename, item.split, item.box_labels, offset))

    def load(self, key: SpooledItem) -> ValidItem:
        """The item that `key` names."""
        self._handle.seek(key.offset)
        return ValidItem.model_validate_json(self._handle.readline())

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[ValidItem]:
        for key in list(self.keys):
            yield self.load(key)
