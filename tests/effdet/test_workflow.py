"""The run workflow: the records folder, config resolution, and fine-tune -> evaluate -> export on one config."""

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from effdet import checkpoints as ckpt
from effdet import layout
from effdet.config import Config, ConfigError
from effdet.data.convert import ConversionReport, SplitSummary
from effdet.data.stats import compute_stats
from effdet.workflow import (
    DEFAULT_MIN_SCORE_THRESH,
    Records,
    evaluate_run,
    export_run,
    fine_tune,
    load_run,
    resolve_config,
)
from tests.cheap import CHEAP

ROOT = Path(__file__).resolve().parents[2]


def _report(label_map: dict[int, str], max_instances: int) -> ConversionReport:
    return ConversionReport(
        format="voc",
        label_map=label_map,
        splits={"train": SplitSummary(images=9, boxes=10, shards=["train-00000-of-00001.tfrecord"])},
        max_instances_per_image=max_instances,
        problems=[],
        dropped_images=[],
        stats=compute_stats([]),
        anchors=None,
    )


@pytest.fixture
def records_copy(tiny_records: Path, tmp_path: Path) -> Path:
    """A copy of the tiny converted dataset that a test may change."""
    return Path(shutil.copytree(tiny_records, tmp_path / "records"))


def test_workflow_import_loads_no_tensorflow() -> None:
    code = "import sys, effdet.workflow; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_records_name_the_converters_shards_ground_truth_and_report(tiny_records: Path) -> None:
    records = Records(tiny_records)
    assert records.train_files == f"{tiny_records}/train-*.tfrecord"
    assert records.val_files == f"{tiny_records}/val-*.tfrecord"
    assert records.ground_truth == tiny_records / "val_annotations.json"
    report = records.report()
    assert report is not None
    assert report.splits["val"].images == 4
    assert report.label_map == {1: "plate"}


def test_records_have_no_val_split_without_val_images_shards_or_ground_truth(records_copy: Path) -> None:
    truth = records_copy / "val_annotations.json"
    document = json.loads(truth.read_text())
    truth.write_text(json.dumps({**document, "images": [], "annotations": []}))
    assert (Records(records_copy).val_files, Records(records_copy).ground_truth) == (None, None)
    truth.unlink()
    assert Records(records_copy).val_files is None
    truth.write_text(json.dumps(document))
    assert Records(records_copy).val_files is not None
    for shard in records_copy.glob("val-*.tfrecord"):
        shard.unlink()
    assert (Records(records_copy).val_files, Records(records_copy).ground_truth) == (None, None)
    (records_copy / "dataset.json").unlink()
    assert Records(records_copy).report() is None


def test_records_from_cli_globs_keep_them_as_given(tmp_path: Path) -> None:
    train = f"{tmp_path}/data/train-0000[01]-*.tfrecord"
    records = Records.from_glob(train, val=f"{tmp_path}/other/val-*.tfrecord")
    assert records.folder == tmp_path / "data"
    assert records.train_files == train
    # Given globs are not checked here (nothing matches): reading them fails with the reason, as it always did.
    assert records.val_files == f"{tmp_path}/other/val-*.tfrecord"
    assert records.ground_truth == tmp_path / "other" / "val_annotations.json"
    explicit = Records.from_glob(train, val=f"{tmp_path}/v-*.tfrecord", ground_truth=tmp_path / "truth.json")
    assert explicit.ground_truth == tmp_path / "truth.json"
    without_val = Records.from_glob(train)
    assert without_val.val_files is None  # the folder's own val split, which does not exist here


def test_resolve_config_is_preset_then_dataset_then_overrides() -> None:
    report = _report({1: "car", 3: "plate"}, max_instances=250)
    config = resolve_config("efficientdet-d1", report, None)
    assert config.model.name == "efficientdet-d1"
    assert config.model.num_classes == 3  # the largest id, not the count
    assert config.input.label_map == {1: "car", 3: "plate"}
    assert config.input.max_instances_per_image == 250
    assert config.model.image_size == (640, 640)

    few = resolve_config("efficientdet-d0", _report({1: "car"}, max_instances=7), "learning_rate=0.01")
    assert few.input.max_instances_per_image == 100  # never below the default
    assert few.train.learning_rate == 0.01

    given = resolve_config("efficientdet-d0", report, {"num_classes": 5, "max_instances_per_image": 300})
    assert (given.model.num_classes, given.input.max_instances_per_image) == (5, 300)
    assert given.input.label_map == {1: "car", 3: "plate"}

    assert resolve_config("efficientdet-d0", None, "num_classes=2").model.num_classes == 2
    assert resolve_config("efficientdet-d0", None, None).model.num_classes == 90


def test_resolve_config_rejects_unknown_models_and_keys() -> None:
    with pytest.raises(ConfigError, match="did you mean 'efficientdet-d0'"):
        resolve_config("efficientdet_d0", None, None)
    with pytest.raises(ConfigError, match="did you mean 'num_classes'"):
        resolve_config("efficientdet-d0", _report({1: "car"}, 1), "num_clases=2")


def test_export_and_the_cli_share_one_default_score_threshold() -> None:
    from effdet.cli_workflow import export as export_command
    from effdet.export import export_saved_model, export_tflite

    assert DEFAULT_MIN_SCORE_THRESH == 0.3
    for function in (export_saved_model, export_tflite):
        assert inspect.signature(function).parameters["min_score_thresh"].default == DEFAULT_MIN_SCORE_THRESH
    assert inspect.signature(export_command).parameters["min_score"].default == DEFAULT_MIN_SCORE_THRESH


@pytest.mark.slow
def test_fine_tune_evaluate_and_export_use_the_run_config(
    tiny_records: Path, tiny_config: Config, tmp_path: Path
) -> None:
    from effdet.metrics import Metrics
    from effdet.train import TrainOptions

    records = Records(tiny_records)
    config = resolve_config("efficientdet-d0", records.report(), tiny_config.to_flat())
    run = tmp_path / "run"
    options = TrainOptions(batch_size=2, num_steps=2, checkpoint_every=100, bn_recalibration_batches=1)
    result = fine_tune(config, records, run, options)
    assert (result.status, result.step) == ("completed", 2)
    assert Config.from_yaml(run / layout.CONFIG_FILE) == config

    metrics = evaluate_run(run, records)
    assert metrics is not None
    assert metrics.num_images == 4
    assert Metrics.model_validate_json((run / layout.METRICS_FILE).read_text()) == metrics
    no_val = Records(tmp_path / "nothing")
    assert evaluate_run(tmp_path / "not-a-run", no_val) is None  # no model is loaded without a val split

    exported = export_run(run, tmp_path / "exported")
    assert (exported / "saved_model.pb").is_file()
    assert Config.from_yaml(exported / "assets" / "config.yaml") == config
    loaded = load_run(run)
    assert loaded.config == config
    with pytest.raises(FileExistsError):
        loaded.export(exported)

    other = resolve_config("efficientdet-d0", records.report(), {**CHEAP, "image_size": 256})
    with pytest.raises(ckpt.CheckpointError, match="use a new run_dir"):
        fine_tune(other, records, run, options)
    assert Config.from_yaml(run / layout.CONFIG_FILE) == config
