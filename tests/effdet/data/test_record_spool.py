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
from effdet.data.split import draw_split


def _record(name: str, labels: list[str], split: Split | None = None) -> Record:
    boxes = [Box(xmin=1, ymin=2, xmax=30, ymax=40.5, label=label) for label in labels]
    return Record(image_path=Path("/data") / name, filename=name, annotation_file="a.xml", boxes=boxes, split=split)


def test_records_come_back_exactly_by_key_and_in_order_as_often_as_read() -> None:
    records = [_record("a.jpg", ["cat", "dog"]), _record("b.jpg", [], Split.VAL), _record("c.jpg", ["dog"])]
    spool = RecordSpool(records)
    assert len(spool) == 3
    assert [(key.filename, key.split, key.box_labels) for key in spool.record_keys()] == [
        ("a.jpg", None, ("cat", "dog")),
        ("b.jpg", "val", ()),
        ("c.jpg", None, ("dog",)),
    ]
    assert spool.load(list(spool.record_keys())[2]) == records[2] == spool[2] == spool[-1]
    assert list(spool) == records
    assert list(spool) == records, "a second pass reads the same"


def test_a_read_result_spools_the_records_a_reader_gives_as_a_list() -> None:
    result = ReadResult(format="voc", records=[_record("a.jpg", ["cat"])])
    assert isinstance(result.records, RecordSpool)
    assert [record.filename for record in result.records] == ["a.jpg"]


def test_the_split_keeps_announced_splits_and_draws_each_class_group_into_val() -> None:
    records = [_record(f"{i:03d}.jpg", ["rare"] if i % 9 == 0 else ["common"]) for i in range(60)]
    records += [_record("fixed.jpg", ["rare"], Split.TRAIN), _record("none.jpg", [])]
    spool = RecordSpool(records)
    plan = draw_split(spool, 0.2, seed=3)
    val = [key.filename for key in spool.record_keys() if plan.split_of(key) == "val"]
    assert (plan.train, plan.val) == (50, 12)
    assert len(val) == 12
    assert sum(name in {f"{i:03d}.jpg" for i in range(0, 60, 9)} for name in val) == 1, "round(0.2 * 7) rare"
    assert "fixed.jpg" not in val
    assert val == [key.filename for key in spool.record_keys() if draw_split(spool, 0.2, seed=3).split_of(key) == "val"]
    assert val != [key.filename for key in spool.record_keys() if draw_split(spool, 0.2, seed=4).split_of(key) == "val"]


def test_the_split_draws_by_class_as_the_label_map_spells_it() -> None:
    records = [_record(f"{i:03d}.jpg", ["Plate"] if i % 10 == 0 else ["plate"]) for i in range(40)]
    spool = RecordSpool(records)
    plan = draw_split(spool, 0.25, seed=0, canonical=str.lower)
    assert (plan.train, plan.val) == (30, 10), "one group of 40 once merged, not 36 + 4"


def test_an_announced_val_split_is_kept_whole_and_nothing_is_drawn() -> None:
    records = [_record(f"{i}.jpg", ["a"], Split.VAL if i < 2 else None) for i in range(10)]
    records.append(_record("t.jpg", ["a"], Split.TEST))
    spool = RecordSpool(records)
    plan = draw_split(spool, 0.5, seed=0)
    assert (plan.train, plan.val) == (8, 3)
    assert not any(plan.drawn)


def test_a_set_too_small_for_any_group_to_give_val_still_gets_one_val_image() -> None:
    records = [_record("t.jpg", ["a"], Split.TRAIN)] + [_record(f"{i}.jpg", [f"c{i}"]) for i in range(4)]
    spool = RecordSpool(records)
    plan = draw_split(spool, 0.1, seed=1)
    assert (plan.train, plan.val) == (4, 1)
    assert sum(plan.drawn) == 1


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
    spool = read_ccpd(source).records
    plan = draw_split(spool, 0.1, seed=0)
    (drawn,) = [key for key in spool.record_keys() if plan.split_of(key) == "val"]
    (source / drawn.filename).write_bytes(b"not a jpeg")
    report = convert_dataset(source, tmp_path / "out", val_fraction=0.1)
    assert (report.splits["train"].images, report.splits["val"].images) == (8, 1)
    assert report.dropped_images == [drawn.filename]
    truth = json.loads((tmp_path / "out" / "val_annotations.json").read_text())
    index = [json.loads(line) for line in (tmp_path / "out" / "images.jsonl").read_text().splitlines()]
    (val_name,) = [entry["path"] for entry in index if entry["split"] == "val"]
    assert [image["file_name"] for image in truth["images"]] == [val_name]
    assert val_name != drawn.filename
