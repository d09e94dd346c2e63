"""Conversion end to end on the shared real dataset: shards, val ground truth, dataset.json, atomicity."""

import json
import zipfile
from pathlib import Path

import pytest
import tensorflow as tf
from typer.testing import CliRunner

from effdet.cli import app
from effdet.data.convert import convert_dataset
from effdet.data.shards import parse_example


def test_convert_raccoon_writes_automl_records_and_report(raccoon_root: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    report = convert_dataset(
        raccoon_root, tmp_path / "out", val_fraction=0.2, workers=2, progress=lambda d, t: seen.append((d, t))
    )
    out = tmp_path / "out"
    assert report.label_map == {1: "raccoon"}
    assert report.splits["train"].images + report.splits["val"].images == 196  # 4 byte-identical copies dropped
    assert sorted(p.code for p in report.problems) == ["duplicate_image"] * 4
    assert report.max_instances_per_image == 3
    assert seen[-1] == (200, 200)  # each image validated and written in one step
    assert report.anchors is not None
    assert report.stats.num_boxes == 213

    val = [parse_example(r) for r in tf.data.TFRecordDataset(str(out / report.splits["val"].shards[0]))]
    truth = json.loads((out / "val_annotations.json").read_text())
    assert len(val) == len(truth["images"]) == report.splits["val"].images
    assert {int(v["source_id"].numpy()) for v in val} == {image["id"] for image in truth["images"]}
    assert truth["categories"] == [{"id": 1, "name": "raccoon"}]
    assert json.loads((out / "dataset.json").read_text())["splits"]["val"]["images"] == report.splits["val"].images

    again = convert_dataset(raccoon_root, tmp_path / "again", val_fraction=0.2, workers=1)
    assert again.splits == report.splits  # deterministic split
    assert (tmp_path / "again" / "val_annotations.json").read_text() == (out / "val_annotations.json").read_text()


def test_failed_conversion_leaves_nothing_behind(tmp_path: Path) -> None:
    source = tmp_path / "broken"
    (source / "annotations").mkdir(parents=True)
    (source / "annotations" / "a.xml").write_text("<annotation><filename>missing.jpg</filename></annotation>")
    with pytest.raises(ValueError, match="no usable image"):
        convert_dataset(source, tmp_path / "out", format="voc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_convert_refuses_a_non_empty_output(raccoon_root: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        convert_dataset(raccoon_root, tmp_path / "out")


def test_cli_synth_convert_stats_on_a_zip(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["synth", "--output", str(tmp_path / "plates"), "--num-images", "12", "--format", "coco"]
    )
    assert result.exit_code == 0, result.output
    archive = tmp_path / "plates.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (tmp_path / "plates").rglob("*"):
            zf.write(path, Path("plates") / path.relative_to(tmp_path / "plates"))
    result = runner.invoke(
        app, ["convert", str(archive), "--output", str(tmp_path / "records"), "--val-fraction", "0.25"]
    )
    assert result.exit_code == 0, result.output
    assert "train: 9 images" in result.output
    assert "val: 3 images" in result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # unpacked copy removed
    stats = runner.invoke(app, ["stats", str(archive), "--json", "--image-size", "256x128"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["label_map"] == {"1": "plate"}
    bad = runner.invoke(app, ["convert", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert "neither a dataset folder nor a .zip" in bad.output
