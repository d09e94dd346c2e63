"""Format detection, dispatch to the readers, and safe unpacking of uploaded zips."""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from effdet.data.formats.common import iter_files
from effdet.data.ingest import (
    DatasetFormat,
    DatasetFormatError,
    UnsafeArchiveError,
    detect_format,
    extract_zip,
    read_dataset,
)

MakeDataset = Callable[[str, Path], tuple[Path, dict[str, str]]]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip holding the given member names and contents, written as is (no path cleaning)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name), content)
    return path


def test_detect_format_names_shared_raccoon_as_voc(raccoon_root: Path) -> None:
    assert detect_format(raccoon_root) == "voc"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("coco", DatasetFormat.COCO),
        ("yolo", DatasetFormat.YOLO),
        ("csv_header", DatasetFormat.CSV),
        ("csv_model_maker", DatasetFormat.CSV),
        ("ccpd", DatasetFormat.CCPD),
        ("voc2012", DatasetFormat.VOC),
    ],
)
def test_detect_format_picks_each_crafted_format(
    kind: str, expected: DatasetFormat, make_dataset: MakeDataset, tmp_path: Path
) -> None:
    root, _ = make_dataset(kind, tmp_path / kind)
    assert detect_format(root) == expected


def test_detect_format_finds_tfrecords_and_read_dataset_reports_a_damaged_one(tmp_path: Path) -> None:
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"\0" * 16)
    assert detect_format(tmp_path) == "tfrecord"
    result = read_dataset(tmp_path, scratch=tmp_path / "scratch")
    assert (result.format, len(result.records)) == ("tfrecord", 0)
    assert [p.code for p in result.problems] == ["corrupt_tfrecord"]


def test_detect_format_ignores_json_and_xml_of_other_kinds(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text('{"name": "plates"}')
    (tmp_path / "config.xml").write_text("<config/>")
    (tmp_path / "labels.csv").write_text("filename,xmin,ymin,xmax,ymax,class\n")
    assert detect_format(tmp_path) == "csv"


def test_detect_format_needs_class_names_for_yolo(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetFormatError, match=r"1 \.jpg, 1 \.txt.*yolo: .*classes\.txt"):
        detect_format(tmp_path)
    (tmp_path / "classes.txt").write_text("plate\n")
    assert detect_format(tmp_path) == "yolo"


def test_detect_format_error_lists_found_files_and_formats(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(DatasetFormatError) as caught:
        detect_format(tmp_path)
    message = str(caught.value)
    assert "1 .md" in message
    assert all(name.value in message for name in DatasetFormat)
    assert isinstance(caught.value, ValueError)


def test_read_dataset_rejects_an_unknown_format_name(raccoon_root: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"unknown dataset format 'pascal'.*voc"):
        read_dataset(raccoon_root, "pascal")


def test_read_dataset_uses_the_format_asked_for(raccoon_root: Path) -> None:
    result = read_dataset(raccoon_root, "csv")
    assert result.format == "csv"
    assert len(result.records) == 200


def test_extract_zip_unwraps_a_single_top_folder_and_skips_debris(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "data.zip",
        {
            "raccoon/images/a.jpg": b"jpeg",
            "raccoon/annotations/a.xml": b"<annotation/>",
            "raccoon/.DS_Store": b"x",
            "__MACOSX/raccoon/._a.jpg": b"x",
        },
    )
    root = extract_zip(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "raccoon"
    files = sorted(path.relative_to(tmp_path / "out").as_posix() for path in (tmp_path / "out").rglob("*"))
    assert files == [
        "raccoon",
        "raccoon/annotations",
        "raccoon/annotations/a.xml",
        "raccoon/images",
        "raccoon/images/a.jpg",
    ]


def test_extract_zip_returns_dest_when_files_are_at_the_top(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "data.zip", {"a.jpg": b"jpeg", "labels/a.txt": b""})
    assert extract_zip(archive, tmp_path / "out") == tmp_path / "out"
    assert (tmp_path / "out" / "labels" / "a.txt").is_file()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../evil.txt", "leaving its folder"),
        ("data/../../evil.txt", "leaving its folder"),
        ("..\\evil.txt", "leaving its folder"),
        ("/etc/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
    ],
)
def test_extract_zip_rejects_zip_slip(name: str, match: str, tmp_path: Path) -> None:
    archive = _zip(tmp_path / "data.zip", {"ok.jpg": b"jpeg", name: b"owned"})
    with pytest.raises(UnsafeArchiveError, match=match):
        extract_zip(archive, tmp_path / "out" / "inner")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "evil.txt").exists()
    assert not (tmp_path / "out" / "inner").exists()


def test_extract_zip_skips_symlinks(tmp_path: Path) -> None:
    archive_path = tmp_path / "data.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        link = zipfile.ZipInfo("data/passwd.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("data/a.jpg", b"jpeg")
    root = extract_zip(archive_path, tmp_path / "out")
    assert sorted(path.name for path in root.iterdir()) == ["a.jpg"]


def test_extract_zip_rejects_too_many_files(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "data.zip", {f"{i}.jpg": b"x" for i in range(11)})
    with pytest.raises(UnsafeArchiveError, match="11 files, more than the limit of 10"):
        extract_zip(archive, tmp_path / "out", max_files=10)
    assert not (tmp_path / "out").exists()


def test_extract_zip_rejects_too_many_bytes_before_writing(tmp_path: Path) -> None:
    archive_path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\0" * 2_000_000)
    assert archive_path.stat().st_size < 10_000
    with pytest.raises(UnsafeArchiveError, match="2000000 bytes, more than the limit of 1000000"):
        extract_zip(archive_path, tmp_path / "out", max_total_bytes=1_000_000)
    assert not (tmp_path / "out").exists()


def test_extract_zip_rejects_a_file_that_is_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "data.zip").write_bytes(b"not a zip")
    with pytest.raises(UnsafeArchiveError, match="not a readable zip"):
        extract_zip(tmp_path / "data.zip", tmp_path / "out")


def test_extract_zip_rejects_a_damaged_member(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "data.zip", {"a.txt": b"hello raccoon"})
    archive.write_bytes(archive.read_bytes().replace(b"hello raccoon", b"HELLO raccoon"))
    with pytest.raises(UnsafeArchiveError, match="damaged"):
        extract_zip(archive, tmp_path / "out")


def test_files_are_streamed_in_the_order_of_a_sorted_listing_without_debris(tmp_path: Path) -> None:
    names = ["b.jpg", "a/x.jpg", "a.jpg", "A/z.txt", "a b/c", "ab/c/d.xml", "a-1.jpg", "a/b/c/e"]
    for name in [*names, ".hidden/x", "__MACOSX/q", "z/.dotfile"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    streamed = iter_files(tmp_path)
    assert not isinstance(streamed, list)
    assert list(streamed) == sorted(tmp_path / name for name in names)
