"""`effdet train` prints the input-size warning of the dataset's report and the hparams that have no effect, and
writes 'auto' anchors as numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from effdet.cli import app
from effdet.config import Config
from effdet.data.convert import ConversionReport, SplitSummary
from effdet.data.layout import REPORT_FILE
from effdet.data.records import Box, Record
from effdet.data.stats import compute_stats
from effdet.layout import CONFIG_FILE

runner = CliRunner()


def test_train_prints_the_small_object_warning(tmp_path: Path) -> None:
    photos = [
        Record(
            image_path=Path("p.jpg"),
            filename=f"p{i}.jpg",
            annotation_file="",
            width=3720,
            height=2472,
            boxes=[Box(label="plate", xmin=0, ymin=0, xmax=300, ymax=80)],
        )
        for i in range(10)
    ]
    report = ConversionReport(
        format="voc",
        label_map={1: "plate"},
        splits={"train": SplitSummary(images=10, boxes=10, shards=[])},
        max_instances_per_image=1,
        problems=[],
        dropped_images=[],
        stats=compute_stats(photos),
        anchors=None,
    )
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / REPORT_FILE).write_text(report.model_dump_json())
    args = ["train", "--model", "efficientdet-lite0", "--train", f"{folder}/train-*.tfrecord"]
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "run"), "--num-steps", "1"])
    assert result.exit_code == 2  # there are no shards to train on; the warning comes first
    assert (
        "warning: 100% of the boxes (10 of 10) are under 16 px on their shorter side at image_size 320, too small "
        "to detect well; image_size 768 brings that to 0%"
    ) in result.output


@pytest.mark.slow
def test_train_with_auto_anchors_writes_the_chosen_numbers(tiny_records: Path, tmp_path: Path) -> None:
    records = Path(shutil.copytree(tiny_records, tmp_path / "records"))
    hparams = "image_size=128,fpn_cell_repeats=1,box_class_repeats=1,aspect_ratios=auto,anchor_scale=auto"
    args = ["train", "--model", "efficientdet-d0", "--train", f"{records}/train-*.tfrecord", "--hparams", hparams]
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "run"), "--num-steps", "1", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    saved = Config.from_yaml(tmp_path / "run" / CONFIG_FILE)
    assert isinstance(saved.model.aspect_ratios, list)
    assert min(saved.model.aspect_ratios) > 1.5  # synthetic plates are wide
    assert isinstance(saved.model.anchor_scale, float)


def test_params_with_auto_anchors_asks_for_numbers() -> None:
    result = runner.invoke(app, ["params", "efficientdet-d0", "--hparams", "aspect_ratios=auto"])
    assert result.exit_code == 2
    assert "aspect_ratios or anchor_scale is 'auto'" in result.output


def test_train_warns_about_hparams_without_effect(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    folder.mkdir()
    args = ["train", "--model", "efficientdet-d0", "--train", f"{folder}/train-*.tfrecord", "--num-steps", "1"]
    hparams = "batch_size=4,skip_mismatch=false,sample_image=null,num_classes=1"
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "run"), "--hparams", hparams])
    assert result.exit_code == 2  # there are no shards to train on; the warnings come first
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: `")]
    assert [w.split("`")[1] for w in warnings] == ["batch_size", "skip_mismatch"]  # a null sample_image asks nothing
    assert "set the job's batch_size or `effdet train --batch-size`" in warnings[0]
