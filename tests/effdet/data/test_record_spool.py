"""The readers' record spool and the one-read conversion built on it: records kept on disk come back exactly, the
split drawn from their keys is the split of the records, every image file is read once, and a val split whose
drawn images are all broken takes the first kept train image instead."""

import json
from pathlib import Path

import pytest
from PIL import Image

from effdet.data.convert import convert_dataset
from effdet.data.formats.ccpd import read_ccpd
from effdet.data.read_result import ReadResult, RecordSpool
from effdet.data.records import Box, Record, Split
from effdet.data.split import split_items


def _record(name: str, labels: list[str], split: Split | None = None) -> Record:
    boxes = [Box(xmin=1, ymin=2, xmax=30, ymax=40.5, label=label) for label in labels]
    return Record(image_path=Path("/data") / name, filename=name, annotation_file="a.xml", boxes=boxes, split=split)


def test_records_come_back_exactly_by_key_and_in_order_as_often_as_read() -> None:
    records = [_record("a.jpg", ["cat", "dog"]), _record("b.jpg", [], Split.VAL), _record("c.jpg", ["dog"])]
    spool = RecordSpool(records)
    assert len(spool) == 3
    assert [(key.filename, key.split, key.box_labels) for key in spool.keys] == [
        ("a.jpg", None, ("cat", "dog")),
        ("b.jpg", "val", ()),
        ("c.jpg", None, ("dog",)),
    ]
    assert spool.load(spool.keys[2]) == records[2] == spool[2]
    assert list(spool) == records
    assert list(spool) == records, "a second pass reads the same"


def test_a_read_result_spools_the_records_a_reader_gives_as_a_list() -> None:
    result = ReadResult(format="voc", records=[_record("a.jpg", ["cat"])])
    assert isinstance(result.records, RecordSpool)
    assert [record.filename for record in result.records] == ["a.jpg"]


def test_the_split_of_the_keys_is_the_split_of_the_records() -> None:
    records = [_record(f"{i:03d}.jpg", ["rare"] if i % 9 == 0 else ["common"]) for i in range(60)]
    train, val = split_items(RecordSpool(records).keys, 0.2, seed=3)
    expected_train, expected_val = split_items([_Labelled(record) for record in records], 0.2, seed=3)
    assert [key.filename for key in train] == [record.filename for record in expected_train]
    assert [key.filename for key in val] == [record.filename for record in expected_val]


class _Labelled:
    """A record as the split sees it (its box labels)."""

    def __init__(self, record: Record) -> None:
        self.filename, self.split = record.filename, record.split
        self.box_labels = tuple(box.label for box in record.boxes)


def _ccpd_set(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        name = f"{i:03d}-90_90-10&12_50&30-50&30_10&30_10&12_50&12-0_0_0_0_0_0_0-100-10.jpg"
        Image.new("RGB", (64, 48), (i * 20, 90, 160)).save(folder / name, quality=90)
    return folder


def test_conversion_reads_each_image_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _ccpd_set(tmp_path / "ccpd", 8)
    reads: list[str] = []
    original = Path.read_bytes

    def counted(path: Path) -> bytes:
        if path.suffix == ".jpg":
            reads.append(path.name)
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    report = convert_dataset(source, tmp_path / "out", val_fraction=0.25)
    assert report.splits["train"].images + report.splits["val"].images == 8
    assert sorted(reads) == sorted(path.name for path in source.iterdir()), "each image read exactly once"


def test_a_val_split_whose_drawn_images_all_broke_takes_the_first_kept_train_image(tmp_path: Path) -> None:
    source = _ccpd_set(tmp_path / "ccpd", 10)
    _, (drawn,) = split_items(read_ccpd(source).records.keys, 0.1, seed=0)
    (source / drawn.filename).write_bytes(b"not a jpeg")
    report = convert_dataset(source, tmp_path / "out", val_fraction=0.1)
    assert (report.splits["train"].images, report.splits["val"].images) == (8, 1)
    assert report.dropped_images == [drawn.filename]
    truth = json.loads((tmp_path / "out" / "val_annotations.json").read_text())
    index = [json.loads(line) for line in (tmp_path / "out" / "images.jsonl").read_text().splitlines()]
    (val_name,) = [entry["path"] for entry in index if entry["split"] == "val"]
    assert [image["file_name"] for image in truth["images"]] == [val_name]
    assert val_name != drawn.filename
