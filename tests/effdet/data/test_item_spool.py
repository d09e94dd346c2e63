"""The validated-item spool: what the converter keeps on disk instead of in memory, read back exactly."""

import tempfile
from pathlib import Path

from effdet.data.convert import validate_records
from effdet.data.item_spool import ItemSpool
from effdet.data.records import Box, Record
from effdet.data.split import split_items
from effdet.data.validate import ValidItem


def _item(name: str, labels: list[str], split: str | None = None) -> ValidItem:
    boxes = [Box(xmin=1, ymin=2, xmax=30, ymax=40.5, label=label) for label in labels]
    return ValidItem(
        image_path=Path("/data") / name, filename=name, width=64, height=48, boxes=boxes, sha1=name, image_format="jpeg"
    ).model_copy(update={"split": split})


def test_items_come_back_exactly_by_key_and_in_order_as_often_as_read() -> None:
    items = [_item("a.jpg", ["cat", "dog"]), _item("b.jpg", [], "val"), _item("c.jpg", ["dog"])]
    with tempfile.TemporaryFile() as handle:
        spool = ItemSpool(handle)
        for item in items:
            spool.add(item)
        assert len(spool) == 3
        assert [(key.filename, key.split, key.box_labels) for key in spool.keys] == [
            ("a.jpg", None, ("cat", "dog")),
            ("b.jpg", "val", ()),
            ("c.jpg", None, ("dog",)),
        ]
        assert spool.load(spool.keys[2]) == items[2]
        assert list(spool) == items
        assert list(spool) == items, "a second pass reads the same"


def test_the_split_of_the_keys_is_the_split_of_the_items() -> None:
    items = [_item(f"{i:03d}.jpg", ["rare"] if i % 9 == 0 else ["common"]) for i in range(60)]
    with tempfile.TemporaryFile() as handle:
        spool = ItemSpool(handle)
        for item in items:
            spool.add(item)
        train, val = split_items(spool.keys, 0.2, seed=3)
        expected_train, expected_val = split_items(items, 0.2, seed=3)
    assert [key.filename for key in train] == [item.filename for item in expected_train]
    assert [key.filename for key in val] == [item.filename for item in expected_val]


def test_validation_hands_the_records_over_as_it_goes(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(bytes.fromhex("89504e470d0a1a0a"))  # a PNG signature and nothing else: dropped as truncated
    records = [Record(image_path=image, filename="a.png", annotation_file="a.xml", boxes=[])]
    with tempfile.TemporaryFile() as handle:
        validated = validate_records(records, {1: "cat"}, handle, workers=1)
    assert records == [], "the caller's list is emptied, so the readers' records are not all held to the end"
    assert validated.dropped == ["a.png"]
    assert len(validated.items) == 0
