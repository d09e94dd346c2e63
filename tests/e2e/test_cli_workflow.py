"""The fine-tuning workflow as a user types it: synth -> convert -> train (resumed once) -> eval -> export ->
predict, with an automl-style YAML of hyperparameters."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from effdet.cli import app
from tests.cheap import CHEAP

runner = CliRunner()

GUIDE_YAML = {
    "num_classes": 1,
    "label_map": {1: "plate"},
    "var_freeze_expr": "(efficientnet|fpn_cells|resample_p6)",
    "aspect_ratios": [[1.0, 1.0], [1.4, 0.7], [0.7, 1.4]],
    "image_size": "1024x640",
    "input_rand_hflip": True,
    "jitter_min": 0.8,
    "jitter_max": 1.2,
    "nms_configs": {"method": "gaussian", "iou_thresh": None, "score_thresh": 0.0, "max_output_size": 100},
}


def _run(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"effdet {' '.join(map(str, args))}\n{result.output}"
    return result.stdout


def test_guide_yaml_resolves_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "ccpd.yaml"
    path.write_text(yaml.safe_dump(GUIDE_YAML))
    resolved = yaml.safe_load(_run("config", "efficientdet-d0", "--hparams", path))
    assert resolved["image_size"] == "1024x640"
    assert resolved["aspect_ratios"] == [1.0, 2.0, 0.5]
    assert resolved["label_map"] == {"1": "plate"}  # JSON-style keys; they load back as ids
    assert resolved["var_freeze_expr"] == "(efficientnet|fpn_cells|resample_p6)"


def test_synth_convert_train_resume_eval_export_predict(tmp_path: Path) -> None:
    _run("synth", "--output", tmp_path / "raw", "--num-images", 12, "--seed", 2)
    _run("convert", tmp_path / "raw", "--output", tmp_path / "data", "--val-fraction", 0.25)
    hparams = tmp_path / "hparams.yaml"
    hparams.write_text(yaml.safe_dump({**GUIDE_YAML, **CHEAP, "image_size": "256x128"}))
    train = ["train", "--model", "efficientdet-d0", "--hparams", hparams, "--batch-size", 2]
    train += ["--train", f"{tmp_path}/data/train-*.tfrecord", "--run-dir", tmp_path / "run"]

    first = json.loads(_run(*train, "--num-steps", 2).splitlines()[-1])
    assert (first["status"], first["step"]) == ("completed", 2)
    resumed = json.loads(_run(*train, "--num-steps", 4).splitlines()[-1])
    assert (resumed["status"], resumed["start_step"], resumed["step"]) == ("completed", 2, 4)
    assert resumed["trainable_variables"] < 100  # the backbone and BiFPN are frozen by the YAML

    val = f"{tmp_path}/data/val-*.tfrecord"
    metrics = json.loads(_run("eval", "--run-dir", tmp_path / "run", "--val", val))
    assert metrics["num_images"] == 3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["ap"] == metrics["ap"]

    exported = tmp_path / "exported"
    assert _run("export", "--run-dir", tmp_path / "run", "--output", exported, "--min-score", 0.0).strip()
    assert (exported / "saved_model.pb").exists()
    from_saved = json.loads(
        _run("eval", "--saved-model", exported, "--val", val, "--score-threshold", 0.2, "--per-class")
    )
    assert abs((from_saved["ap"] or 0) - (metrics["ap"] or 0)) <= 0.005
    assert list(from_saved["per_class"]) == ["plate"]
    confusion = from_saved["confusion"]
    assert (confusion["labels"], confusion["score_threshold"]) == (["plate", "background"], 0.2)
    boxes = len(json.loads((tmp_path / "data" / "val_annotations.json").read_text())["annotations"])
    assert sum(confusion["matrix"][0]) == boxes, "every val box is found or missed"

    image = sorted((tmp_path / "raw").rglob("*.jpg"))[0]
    found = json.loads(
        _run("predict", exported, image, "--json", "--score-threshold", 0.0, "--draw", tmp_path / "a.jpg")
    )
    detections = found[str(image)]
    assert detections, "a score threshold of 0 keeps the top detections"
    assert set(detections[0]) == {"box", "class_id", "label", "score"}
    assert detections[0]["label"] == "plate"
    assert (tmp_path / "a.jpg").stat().st_size > 0
