"""Dataset readers: the real raccoon dataset, the same boxes in every format, and broken inputs as problems."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from effdet.data.formats.ccpd import parse_ccpd_name, read_ccpd
from effdet.data.formats.coco import read_coco
from effdet.data.formats.csv import read_csv
from effdet.data.formats.voc import read_voc
from effdet.data.formats.yolo import read_yolo
from effdet.data.ingest import read_dataset
from effdet.data.read_result import ReadResult
from effdet.data.records import Severity, Split
from effdet.data.validate import validate_record

Reader = Callable[[Path], ReadResult]
Corners = tuple[float, float, float, float]
MakeDataset = Callable[[str, Path], tuple[Path, dict[str, str]]]


def _jpeg(width: int = 40, height: int = 30) -> bytes:
    """A small real JPEG, for the readers that read image headers."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg()


def _write(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write a small dataset: relative path -> text or bytes."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _boxes(result: ReadResult, original: dict[str, str] | None = None) -> dict[str, list[Corners]]:
    """Sorted box corners per raccoon image name."""
    rename = original or {}
    return {
        rename.get(record.image_path.name, record.image_path.name): sorted(
            (box.xmin, box.ymin, box.xmax, box.ymax) for box in record.boxes
        )
        for record in result.records
    }


def _assert_close(actual: dict[str, list[Corners]], expected: dict[str, list[Corners]]) -> None:
    """Same images, same number of boxes, every corner within 1 px."""
    assert actual.keys() == expected.keys()
    for name, boxes in actual.items():
        assert len(boxes) == len(expected[name]), name
        for box, reference in zip(boxes, expected[name], strict=True):
            assert max(abs(a - b) for a, b in zip(box, reference, strict=True)) <= 1.0, (name, box, reference)


def _object(name: str, *corners: str) -> str:
    """A VOC <object>; an empty name leaves <name> out, and fewer than four corners leave the last ones out."""
    name_xml = f"<name>{name}</name>" if name else ""
    box = "".join(
        f"<{key}>{value}</{key}>" for key, value in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=False)
    )
    return f"<object>{name_xml}<bndbox>{box}</bndbox></object>"


def _voc_xml(filename: str = "a.jpg", objects: str | None = None) -> str:
    """A labelImg-style annotation with one raccoon box unless `objects` says otherwise."""
    if objects is None:
        objects = _object("raccoon", "1", "2", "30", "20")
    return (
        f"<annotation><filename>{filename}</filename><size><width>40</width><height>30</height></size>"
        f"{objects}</annotation>"
    )


def _coco_json(**overrides: object) -> str:
    """A one-image COCO file with one box, with top-level keys replaced or removed (None) by `overrides`."""
    data: dict[str, object] = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 2, 10, 10], "iscrowd": 0}],
        "categories": [{"id": 5, "name": "raccoon"}],
    }
    data.update(overrides)
    return json.dumps({key: value for key, value in data.items() if value is not None})


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>a.jpg</filename><object><name>&lol9;</name></object></annotation>
"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><filename>a.jpg</filename><object><name>&secret;</name></object></annotation>
"""
YOLO_NAMES = {"classes.txt": "raccoon\n", "a.jpg": JPEG}
CSV_HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"

BROKEN = [
    pytest.param(
        read_voc,
        {"a.xml": "<annotation><filename>a.jpg</filename>", "a.jpg": JPEG},
        "malformed_xml",
        Severity.ERROR,
        id="voc_malformed_xml",
    ),
    pytest.param(read_voc, {"a.xml": BOMB, "a.jpg": JPEG}, "unsafe_xml", Severity.ERROR, id="voc_entity_bomb"),
    pytest.param(read_voc, {"a.xml": XXE, "a.jpg": JPEG}, "unsafe_xml", Severity.ERROR, id="voc_external_entity"),
    pytest.param(
        read_voc, {"a.xml": _voc_xml("gone.jpg")}, "missing_image", Severity.ERROR, id="voc_annotation_without_image"
    ),
    pytest.param(
        read_voc,
        {"a.xml": _voc_xml(), "a.jpg": JPEG, "b.jpg": JPEG},
        "unannotated_image",
        Severity.WARNING,
        id="voc_image_without_annotation",
    ),
    pytest.param(
        read_voc,
        {"a.xml": _voc_xml(objects=_object("r", "one", "2", "3", "4")), "a.jpg": JPEG},
        "invalid_coordinate",
        Severity.ERROR,
        id="voc_coordinate_not_a_number",
    ),
    pytest.param(
        read_voc,
        {"a.xml": _voc_xml(objects=_object("", "1", "2", "3", "4")), "a.jpg": JPEG},
        "missing_label",
        Severity.ERROR,
        id="voc_object_without_name",
    ),
    pytest.param(
        read_voc,
        {"a.xml": _voc_xml(objects="<object><name>r</name></object>"), "a.jpg": JPEG},
        "missing_box",
        Severity.ERROR,
        id="voc_object_without_bndbox",
    ),
    pytest.param(read_voc, {"a.jpg": JPEG}, "no_annotation_files", Severity.ERROR, id="voc_no_xml_at_all"),
    pytest.param(
        read_coco, {"a.json": "{'images': [", "a.jpg": JPEG}, "malformed_json", Severity.ERROR, id="coco_malformed_json"
    ),
    pytest.param(
        read_coco,
        {"a.json": _coco_json(categories=None), "a.jpg": JPEG},
        "missing_key",
        Severity.ERROR,
        id="coco_missing_keys",
    ),
    pytest.param(
        read_coco,
        {
            "a.json": _coco_json(annotations=[{"image_id": 1, "category_id": 5, "bbox": ["1", "2", "10", "10"]}]),
            "a.jpg": JPEG,
        },
        "invalid_bbox",
        Severity.ERROR,
        id="coco_bbox_with_strings",
    ),
    pytest.param(
        read_coco,
        {"a.json": _coco_json(annotations=[{"image_id": 1, "category_id": 5, "bbox": [1, 2, 10]}]), "a.jpg": JPEG},
        "invalid_bbox",
        Severity.ERROR,
        id="coco_bbox_too_short",
    ),
    pytest.param(
        read_coco,
        {"a.json": _coco_json(annotations=[{"image_id": 1, "category_id": 9, "bbox": [1, 2, 3, 4]}]), "a.jpg": JPEG},
        "unknown_category",
        Severity.ERROR,
        id="coco_unknown_category",
    ),
    pytest.param(
        read_coco,
        {"a.json": _coco_json(annotations=[{"image_id": 2, "category_id": 5, "bbox": [1, 2, 3, 4]}]), "a.jpg": JPEG},
        "unknown_image_id",
        Severity.ERROR,
        id="coco_unknown_image_id",
    ),
    pytest.param(
        read_coco,
        {"a.json": _coco_json(categories=[{"id": 5}]), "a.jpg": JPEG},
        "invalid_field",
        Severity.ERROR,
        id="coco_category_without_name",
    ),
    pytest.param(
        read_coco,
        {"a.json": _coco_json(images=[{"id": 1}]), "a.jpg": JPEG},
        "invalid_field",
        Severity.ERROR,
        id="coco_image_entry_without_file_name",
    ),
    pytest.param(
        read_coco, {"a.json": _coco_json()}, "missing_image", Severity.ERROR, id="coco_annotation_without_image"
    ),
    pytest.param(
        read_coco,
        {"a.json": _coco_json(), "a.jpg": JPEG, "b.jpg": JPEG},
        "unannotated_image",
        Severity.WARNING,
        id="coco_image_without_annotation",
    ),
    pytest.param(
        read_yolo,
        {**YOLO_NAMES, "a.txt": "3 0.5 0.5 0.2 0.2\n"},
        "unknown_class_id",
        Severity.ERROR,
        id="yolo_class_id_out_of_range",
    ),
    pytest.param(
        read_yolo,
        {**YOLO_NAMES, "a.txt": "cat 0.5 0.5 0.2 0.2\n"},
        "invalid_class_id",
        Severity.ERROR,
        id="yolo_class_id_not_integer",
    ),
    pytest.param(
        read_yolo,
        {**YOLO_NAMES, "a.txt": "0 0.5 0.5 0.2\n"},
        "invalid_line",
        Severity.ERROR,
        id="yolo_wrong_field_count",
    ),
    pytest.param(
        read_yolo,
        {**YOLO_NAMES, "a.txt": "0 0.5 half 0.2 0.2\n"},
        "invalid_coordinate",
        Severity.ERROR,
        id="yolo_coordinate_not_a_number",
    ),
    pytest.param(
        read_yolo,
        {"classes.txt": "raccoon\n", "a.jpg": b"not a jpeg", "a.txt": "0 0.5 0.5 0.2 0.2\n"},
        "unreadable_image",
        Severity.ERROR,
        id="yolo_unreadable_image",
    ),
    pytest.param(
        read_yolo,
        {**YOLO_NAMES, "a.txt": "", "b.jpg": JPEG},
        "unannotated_image",
        Severity.WARNING,
        id="yolo_image_without_labels",
    ),
    pytest.param(
        read_yolo,
        {**YOLO_NAMES, "a.txt": "", "labels/gone.txt": "0 0.5 0.5 0.2 0.2\n"},
        "missing_image",
        Severity.ERROR,
        id="yolo_labels_without_image",
    ),
    pytest.param(
        read_yolo,
        {"data.yaml": "names: [raccoon\n", "a.jpg": JPEG, "a.txt": ""},
        "malformed_yaml",
        Severity.ERROR,
        id="yolo_malformed_data_yaml",
    ),
    pytest.param(
        read_yolo,
        {"a.jpg": JPEG, "a.txt": "0 0.5 0.5 0.2 0.2\n"},
        "missing_class_names",
        Severity.WARNING,
        id="yolo_without_class_names",
    ),
    pytest.param(
        read_csv,
        {"l.csv": CSV_HEADER + "a.jpg,40,30,raccoon,one,2,30,20\n", "a.jpg": JPEG},
        "invalid_coordinate",
        Severity.ERROR,
        id="csv_non_numeric_coordinate",
    ),
    pytest.param(
        read_csv,
        {"l.csv": CSV_HEADER + "a.jpg,40,30,raccoon,1,2\n", "a.jpg": JPEG},
        "missing_field",
        Severity.ERROR,
        id="csv_short_row",
    ),
    pytest.param(
        read_csv,
        {"l.csv": CSV_HEADER + "a.jpg,40,30,,1,2,30,20\n", "a.jpg": JPEG},
        "missing_label",
        Severity.ERROR,
        id="csv_box_without_class",
    ),
    pytest.param(
        read_csv,
        {"l.csv": CSV_HEADER + "gone.jpg,40,30,raccoon,1,2,30,20\n"},
        "missing_image",
        Severity.ERROR,
        id="csv_annotation_without_image",
    ),
    pytest.param(
        read_csv,
        {"l.csv": CSV_HEADER + "a.jpg,40,30,raccoon,1,2,30,20\n", "a.jpg": JPEG, "b.jpg": JPEG},
        "unannotated_image",
        Severity.WARNING,
        id="csv_image_without_rows",
    ),
    pytest.param(
        read_csv,
        {"l.csv": "filename,xmin,ymin,xmax,ymax\na.jpg,1,2,3,4\n", "a.jpg": JPEG},
        "missing_column",
        Severity.ERROR,
        id="csv_without_class_column",
    ),
    pytest.param(
        read_csv,
        {"l.csv": "name,score\na,1\n", "a.jpg": JPEG},
        "unknown_csv_layout",
        Severity.ERROR,
        id="csv_unknown_layout",
    ),
    pytest.param(
        read_csv,
        {
            "l.csv": "TRAIN,a.jpg,raccoon,0.1,0.1,,,0.5,0.5,,\nTRAINING,a.jpg,raccoon,0.1,0.1,,,0.5,0.5,,\n",
            "a.jpg": JPEG,
        },
        "invalid_split",
        Severity.ERROR,
        id="csv_model_maker_bad_split",
    ),
    pytest.param(
        read_csv,
        {"l.csv": "TRAIN,a.jpg,raccoon,0.1,x,,,0.5,0.5,,\n", "a.jpg": JPEG},
        "invalid_coordinate",
        Severity.ERROR,
        id="csv_model_maker_non_numeric",
    ),
    pytest.param(
        read_csv,
        {"l.csv": "TEST,a.jpg,raccoon,0.1,0.1,,,0.5,0.5,,\n", "a.jpg": b"nope"},
        "unreadable_image",
        Severity.ERROR,
        id="csv_model_maker_unreadable_image",
    ),
    pytest.param(read_ccpd, {"not-a-plate.jpg": JPEG}, "invalid_ccpd_name", Severity.ERROR, id="ccpd_bad_name"),
    pytest.param(
        read_ccpd, {"1-2-3&4_x&6-7-8-9-10.jpg": JPEG}, "invalid_ccpd_name", Severity.ERROR, id="ccpd_box_not_integers"
    ),
]


def test_voc_reads_shared_raccoon_dataset(voc_raccoon: ReadResult) -> None:
    assert voc_raccoon.format == "voc"
    assert voc_raccoon.problems == []
    assert len(voc_raccoon.records) == 200
    assert sum(len(record.boxes) for record in voc_raccoon.records) == 217
    assert {box.label for record in voc_raccoon.records for box in record.boxes} == {"raccoon"}
    first = next(record for record in voc_raccoon.records if record.filename == "images/raccoon-1.jpg")
    assert first.annotation_file == "annotations/raccoon-1.xml"
    assert (first.width, first.height) == (650, 417)
    assert _boxes(ReadResult(format="voc", records=[first])) == {"raccoon-1.jpg": [(81.0, 88.0, 522.0, 408.0)]}
    assert all(record.image_path.is_absolute() and record.image_path.is_file() for record in voc_raccoon.records)


def test_csv_reads_shared_raccoon_csv_like_voc(raccoon_root: Path, voc_raccoon: ReadResult) -> None:
    result = read_csv(raccoon_root)
    _assert_close(_boxes(result), _boxes(voc_raccoon))
    assert [problem.code for problem in result.problems] == ["duplicate_annotation"]
    splits = [record.split for record in result.records]
    assert (splits.count(Split.TRAIN), splits.count(Split.TEST)) == (160, 40)
    assert {record.width for record in result.records} == {record.width for record in voc_raccoon.records}


@pytest.mark.parametrize(
    ("kind", "format_name"),
    [
        ("coco", "coco"),
        ("yolo", "yolo"),
        ("csv_header", "csv"),
        ("csv_model_maker", "csv"),
        ("ccpd", "ccpd"),
        ("voc2012", "voc"),
    ],
)
def test_raccoon_written_in_each_format_reads_back_like_voc(
    kind: str,
    format_name: str,
    make_dataset: MakeDataset,
    voc_raccoon: ReadResult,
    tmp_path: Path,
) -> None:
    root, original = make_dataset(kind, tmp_path / kind)
    result = read_dataset(root)
    assert result.format == format_name
    assert result.problems == []
    expected = {name: boxes for name, boxes in _boxes(voc_raccoon).items() if name in set(original.values())}
    _assert_close(_boxes(result, original), expected)
    assert {box.label for record in result.records for box in record.boxes} == {
        "plate" if kind == "ccpd" else "raccoon"
    }


def test_coco_orders_sparse_categories_by_id_and_splits_by_file_name(make_dataset: MakeDataset, tmp_path: Path) -> None:
    root, _ = make_dataset("coco", tmp_path)
    result = read_coco(root)
    assert result.label_names == ["dog", "raccoon"]
    splits = [record.split for record in result.records]
    assert (splits.count(Split.TRAIN), splits.count(Split.VAL)) == (160, 40)


def test_model_maker_csv_keeps_its_splits(make_dataset: MakeDataset, tmp_path: Path) -> None:
    root, _ = make_dataset("csv_model_maker", tmp_path)
    splits = [record.split for record in read_csv(root).records]
    assert (splits.count(Split.TRAIN), splits.count(Split.VAL), splits.count(Split.TEST)) == (150, 30, 20)


def test_voc_reads_float_corners_flags_and_falls_back_to_the_xml_stem(tmp_path: Path) -> None:
    objects = (
        "<object><name> raccoon </name><difficult>1</difficult><truncated>0</truncated>"
        "<bndbox><xmin>1.5</xmin><ymin>2.25</ymin><xmax>30.5</xmax><ymax>20</ymax></bndbox></object>"
    )
    _write(tmp_path, {"annotations/b.xml": _voc_xml("renamed.jpg", objects), "images/b.png": JPEG})
    result = read_voc(tmp_path)
    assert result.problems == []
    (record,) = result.records
    assert record.filename == "images/b.png"
    assert (record.width, record.height) == (40, 30)
    (box,) = record.boxes
    assert (box.xmin, box.ymin, box.xmax, box.ymax, box.label) == (1.5, 2.25, 30.5, 20.0, "raccoon")
    assert (box.difficult, box.truncated) == (True, False)


def test_voc_keeps_good_objects_of_a_file_with_a_bad_one(tmp_path: Path) -> None:
    good, bad = _object("r", "1", "2", "3", "4"), _object("r", "1", "2", "3")
    _write(tmp_path, {"a.xml": _voc_xml(objects=good + bad + good), "a.jpg": JPEG})
    result = read_voc(tmp_path)
    assert len(result.records[0].boxes) == 2
    assert [(problem.code, problem.object_index) for problem in result.problems] == [("invalid_coordinate", 1)]


def test_coco_image_without_annotations_is_a_record_without_boxes(tmp_path: Path) -> None:
    _write(tmp_path, {"a.json": _coco_json(annotations=[]), "images/a.jpg": JPEG})
    result = read_coco(tmp_path)
    assert result.problems == []
    assert [(record.filename, record.boxes) for record in result.records] == [("images/a.jpg", [])]


def test_coco_converts_xywh_to_corners_and_reads_iscrowd(tmp_path: Path) -> None:
    annotations = [{"image_id": 1, "category_id": 5, "bbox": [1.5, 2, 10, 20.5], "iscrowd": 1}]
    _write(tmp_path, {"a.json": _coco_json(annotations=annotations), "a.jpg": JPEG})
    (box,) = read_coco(tmp_path).records[0].boxes
    assert (box.xmin, box.ymin, box.xmax, box.ymax, box.is_crowd) == (1.5, 2.0, 11.5, 22.5, True)


def test_yolo_empty_label_file_means_no_objects(tmp_path: Path) -> None:
    _write(tmp_path, {**YOLO_NAMES, "a.txt": "\n"})
    result = read_yolo(tmp_path)
    assert result.problems == []
    assert [(record.filename, record.boxes, record.width) for record in result.records] == [("a.jpg", [], 40)]


def test_yolo_denormalises_with_the_image_size_and_reads_polygons(tmp_path: Path) -> None:
    _write(tmp_path, {**YOLO_NAMES, "a.txt": "0 0.5 0.5 0.5 0.2\n0 0.1 0.1 0.3 0.2 0.2 0.5\n"})
    boxes = read_yolo(tmp_path).records[0].boxes
    corners = [value for b in boxes for value in (b.xmin, b.ymin, b.xmax, b.ymax)]
    assert corners == pytest.approx([10, 12, 30, 18, 4, 3, 12, 15])


def test_yolo_splits_come_from_image_folders(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "data.yaml": "names: [raccoon]\n",
            "images/train/a.jpg": JPEG,
            "labels/train/a.txt": "0 0.5 0.5 0.2 0.2\n",
            "images/val/b.jpg": JPEG,
            "labels/val/b.txt": "",
        },
    )
    result = read_yolo(tmp_path)
    assert result.problems == []
    assert result.label_names == ["raccoon"]
    assert {record.filename: record.split for record in result.records} == {
        "images/train/a.jpg": Split.TRAIN,
        "images/val/b.jpg": Split.VAL,
    }


def test_csv_row_without_box_is_an_image_without_objects(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {"l.csv": CSV_HEADER + "a.jpg,40,30,,,,,\nb.jpg,40,30,raccoon,1,2,3,4\n", "a.jpg": JPEG, "b.jpg": JPEG},
    )
    result = read_csv(tmp_path)
    assert result.problems == []
    assert {record.filename: len(record.boxes) for record in result.records} == {"a.jpg": 0, "b.jpg": 1}


def test_ccpd_name_parses_to_the_plate_box() -> None:
    box = parse_ccpd_name("025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg")
    assert box is not None
    assert (box.xmin, box.ymin, box.xmax, box.ymax, box.label) == (154, 383, 386, 473, "plate")
    assert parse_ccpd_name("raccoon-1.jpg") is None


@pytest.mark.parametrize(("reader", "files", "code", "severity"), BROKEN)
def test_broken_input_is_reported_as_a_problem(
    reader: Reader, files: dict[str, str | bytes], code: str, severity: Severity, tmp_path: Path
) -> None:
    result = reader(_write(tmp_path, files))
    matching = [problem for problem in result.problems if problem.code == code]
    assert matching, result.problems
    assert all(problem.severity is severity and problem.message for problem in matching)
    assert all(not problem.file.startswith("/") for problem in result.problems)


def test_every_reader_survives_every_broken_input(tmp_path: Path) -> None:
    for position, case in enumerate(BROKEN):
        root = _write(tmp_path / str(position), case.values[1])
        for reader in (read_voc, read_coco, read_yolo, read_csv, read_ccpd):
            assert isinstance(reader(root), ReadResult)


@pytest.mark.parametrize(
    ("reader", "files"),
    [
        (read_voc, {"a.xml": _voc_xml(objects=_object("raccoon", "1", "2", "x", "4")), "a.jpg": JPEG}),
        (read_yolo, {**YOLO_NAMES, "a.txt": "0 0.5 0.5\n"}),
        (
            read_coco,
            {"a.json": _coco_json(annotations=[{"image_id": 1, "category_id": 5, "bbox": [1]}]), "a.jpg": JPEG},
        ),
        (read_csv, {"l.csv": CSV_HEADER + "a.jpg,40,30,raccoon,1,2,x,4\n", "a.jpg": JPEG}),
    ],
    ids=["voc", "yolo", "coco", "csv"],
)
def test_image_whose_only_box_is_unreadable_is_left_out_not_made_background(
    reader: Reader, files: dict[str, str | bytes], tmp_path: Path
) -> None:
    _write(tmp_path, files)
    (record,) = reader(tmp_path).records
    assert (record.boxes, record.dropped_boxes) == ([], 1)
    result = validate_record(record)
    assert result.item is None
    assert [problem.code for problem in result.problems] == ["no_valid_boxes"]
