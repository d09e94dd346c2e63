"""The image index a real conversion writes: every image, kept or dropped, with its boxes and problems, sorted
problems first, and paths that map back to the upload's zip members."""

from __future__ import annotations

import zipfile
from pathlib import Path

from effdet.data.convert import convert_dataset
from effdet.data.image_index import image_id, read_index
from effdet.data.ingest import root_members
from effdet.data.layout import IMAGE_INDEX_FILE
from tests.helpers.gallery import BAD_BOX_IMAGE, DROPPED_IMAGE, GALLERY_IMAGES, gallery_zip


def test_convert_writes_every_image_with_boxes_and_problems(tmp_path: Path) -> None:
    upload = gallery_zip(tmp_path / "raccoon.zip")
    report = convert_dataset(upload, tmp_path / "out", val_fraction=0.2, workers=1)
    entries = list(read_index(tmp_path / "out" / IMAGE_INDEX_FILE))

    assert len(entries) == len(GALLERY_IMAGES)
    assert [e.path for e in entries[:2]] == sorted([BAD_BOX_IMAGE, DROPPED_IMAGE]), "problems first, then by path"
    clean = [e.path for e in entries[2:]]
    assert clean == sorted(clean)
    assert all(not e.problems for e in entries[2:])
    by_path = {e.path: e for e in entries}
    assert all(e.id == image_id(e.path) for e in entries)

    bad = by_path[BAD_BOX_IMAGE]
    assert bad.split in ("train", "val")
    assert (bad.width, bad.height) == (650, 417)
    assert [(b.bbox, b.dropped, b.problem) for b in bad.boxes] == [
        ([81.0, 88.0, 522.0, 408.0], False, None),
        ([5000.0, 10.0, 5100.0, 90.0], True, "box_outside_image"),
    ]
    assert bad.problem_codes == ["box_outside_image"]
    assert bad.problems[0].object_index == 1

    dropped = by_path[DROPPED_IMAGE]
    assert dropped.split == "dropped"
    assert dropped.width
    assert dropped.height
    assert [(b.dropped, b.problem) for b in dropped.boxes] == [(True, "degenerate_box")]
    assert dropped.problem_codes == ["degenerate_box", "no_valid_boxes"]

    splits = {split: sum(e.split == split for e in entries) for split in ("train", "val", "dropped")}
    assert splits == {"train": report.splits["train"].images, "val": report.splits["val"].images, "dropped": 1}

    with zipfile.ZipFile(upload) as archive:
        members = root_members(archive)
        assert all(members[e.path].filename == f"raccoon/{e.path}" for e in entries)
        assert archive.read(members[BAD_BOX_IMAGE])[:2] == b"\xff\xd8"


def test_index_lists_an_image_no_annotation_names_as_dropped(tmp_path: Path) -> None:
    upload = gallery_zip(tmp_path / "raccoon.zip")
    with zipfile.ZipFile(upload, "a") as archive:
        archive.writestr("raccoon/images/lonely.jpg", archive.read("raccoon/images/raccoon-3.jpg"))
    convert_dataset(upload, tmp_path / "out", workers=1)
    lonely = next(e for e in read_index(tmp_path / "out" / IMAGE_INDEX_FILE) if e.path == "images/lonely.jpg")
    assert (lonely.split, lonely.boxes, lonely.width) == ("dropped", [], None)
    assert lonely.problem_codes == ["unannotated_image"]
