"""Deterministic train/val split, stratified by class so rare classes reach both sides.

Drawn from a record spool's keys (effdet.data.read_result) with nothing per image held in memory but a byte (and
the positions of one class group while it is shuffled): the group of each record is stored beside its key.
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from effdet.data.read_result import RecordKey, RecordSpool

TRAIN = "train"
VAL = "val"
_ANNOUNCED_VAL = ("val", "test")
_NO_LABEL = ""


@dataclass(frozen=True)
class SplitPlan:
    """Where each record goes: the split its annotation names, else train unless drawn for val."""

    drawn: bytearray
    train: int
    val: int

    def split_of(self, key: RecordKey) -> str:
        """'train' or 'val' for the record of `key`."""
        return VAL if key.split in _ANNOUNCED_VAL or self.drawn[key.position] else TRAIN


def draw_split(spool: RecordSpool, val_fraction: float, seed: int, canonical: Callable[[str], str] = str) -> SplitPlan:
    """The split of the spooled records. Records whose annotation already names a split keep it (test counts as
    val); when none names val or test, the others are sorted by file name, grouped by their rarest class (labels
    as `canonical` spells them) and each group, shuffled, gives round(val_fraction * size) records to val (at least
    one record in all when val_fraction > 0 and there are two or more). Same records and seed -> same split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    fixed_train = announced_val = 0
    frequency: Counter[str] = Counter()
    for key in spool.record_keys():
        if key.split == TRAIN:
            fixed_train += 1
        elif key.split in _ANNOUNCED_VAL:
            announced_val += 1
        else:
            frequency.update(map(canonical, key.box_labels))
    free = len(spool) - fixed_train - announced_val
    drawn = bytearray(len(spool))
    if announced_val or not free:
        return SplitPlan(drawn, fixed_train + free, announced_val)

    def group(key: RecordKey) -> str:
        labels = set(map(canonical, key.box_labels))
        return min(labels, key=lambda label: (frequency[label], label)) if labels else _NO_LABEL

    spool.tag((key.position, group(key)) for key in spool.record_keys() if key.split not in (TRAIN, *_ANNOUNCED_VAL))
    rng = random.Random(seed)
    val = 0
    undrawn: list[array[int]] = []  # the shuffled groups, kept only while none has given val a record
    for tag in spool.tags():
        positions = array("q", spool.tagged(tag))
        rng.shuffle(positions)
        take = round(val_fraction * len(positions))
        for position in positions[:take]:
            drawn[position] = 1
        val += take
        if not val:
            undrawn.append(positions)
    train = fixed_train + free - val
    if val_fraction > 0 and not val and train >= 2:
        drawn[_train_at(spool, undrawn, rng.randrange(train))] = 1
        train, val = train - 1, 1
    return SplitPlan(drawn, train, val)


def _train_at(spool: RecordSpool, groups: list[array[int]], index: int) -> int:
    """The position of the index-th train record in the order the draw lists them: the records announced as train
    (in order), then each group's shuffled records."""
    for key in spool.record_keys():
        if key.split == TRAIN:
            if not index:
                return key.position
            index -= 1
    for positions in groups:
        if index < len(positions):
            return positions[index]
        index -= len(positions)
    raise IndexError("no train record at that index")
