"""Deterministic train/val split, stratified by class so rare classes reach both sides."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Splittable(Protocol):
    """An image as the split sees it: a validated item, or a spooled record's key (effdet.data.read_result)."""

    @property
    def filename(self) -> str: ...

    @property
    def split(self) -> str | None: ...

    @property
    def box_labels(self) -> tuple[str, ...]: ...


Item = TypeVar("Item", bound=Splittable)


def split_items(items: Sequence[Item], val_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """(train, val). Items whose annotation already names a split keep it; the rest are grouped by their
    rarest class and each group contributes round(val_fraction * size) items to val (at least one item in
    all when val_fraction > 0 and there are two or more items). Same items and seed -> same split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    fixed_train = [i for i in items if i.split == "train"]
    fixed_val = [i for i in items if i.split in ("val", "test")]
    free = sorted((i for i in items if i.split not in ("train", "val", "test")), key=lambda i: i.filename)
    if fixed_val or not free:
        return fixed_train + free, fixed_val

    frequency = Counter(label for item in free for label in item.box_labels)
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in free:
        labels = set(item.box_labels)
        key = min(labels, key=lambda label: (frequency[label], label)) if labels else ""
        groups[key].append(item)
    rng = random.Random(seed)
    train, val = list(fixed_train), []
    for key in sorted(groups):
        group = groups[key]
        rng.shuffle(group)
        take = round(val_fraction * len(group))
        val.extend(group[:take])
        train.extend(group[take:])
    if val_fraction > 0 and not val and len(train) >= 2:
        val.append(train.pop(rng.randrange(len(train))))
    return train, val
