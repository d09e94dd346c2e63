"""`aspect_ratios: auto` and `anchor_scale: auto`: accepted by the config, chosen on the training boxes for the
run's own variant and size, and written into the run's config.yaml as numbers."""

from pathlib import Path

import numpy as np
import pytest

from effdet import layout
from effdet.config import Config, ConfigError, get_config
from effdet.data.anchors_kmeans import anchor_shapes, best_anchor_iou, choose_anchors, input_shapes
from effdet.workflow import Records, fine_tune, resolve_auto_anchors, resolve_config


def test_config_accepts_auto_anchors_and_round_trips_them() -> None:
    config = get_config("efficientdet-d0", "aspect_ratios=auto,anchor_scale=auto")
    assert (config.model.aspect_ratios, config.model.anchor_scale) == ("auto", "auto")
    assert config.model.has_auto_anchors
    assert Config.from_yaml(config.to_yaml()) == config
    assert not get_config("efficientdet-d0").model.has_auto_anchors
    with pytest.raises(ValueError, match="aspect_ratios is still 'auto'"):
        _ = config.model.num_anchors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aspect_ratios": "wide"}, "aspect_ratios: aspect_ratios 'wide' is neither a list of ratios"),
        ({"anchor_scale": "big"}, "anchor_scale: anchor_scale 'big' is neither a number (e.g. 4.0) nor 'auto'"),
        ({"anchor_scale": -1}, "anchor_scale: Input should be greater than 0 (got -1)"),
        ({"aspect_ratios": []}, "aspect_ratios: List should have at least 1 item after validation, not 0 (got [])"),
    ],
)
def test_config_refuses_other_anchor_values_with_one_clear_problem(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        get_config("efficientdet-d0", overrides)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(message)


def test_choose_anchors_fills_in_only_the_auto_keys() -> None:
    boxes = np.array([[400.0, 100.0]] * 5 + [[300.0, 100.0]] * 5)  # plates 3 and 4 times wider than tall
    images = np.array([[1000.0, 1000.0]] * 10)
    levels = (3, 7, 3)
    chosen = choose_anchors(boxes, images, (512, 512), levels, None, None, [1.0, 2.0, 0.5], 4.0)
    assert chosen.aspect_ratios == [3.0, 4.0]  # two distinct shapes, so two clusters
    assert chosen.auto == ["aspect_ratios", "anchor_scale"]
    assert chosen.num_boxes == 10
    shapes = input_shapes(boxes, (512, 512), images)
    before = best_anchor_iou(shapes, anchor_shapes(*levels, [1.0, 2.0, 0.5], 4.0))
    after = best_anchor_iou(shapes, anchor_shapes(*levels, [3.0, 4.0], chosen.anchor_scale))
    assert chosen.default_mean_iou == pytest.approx(float(before.mean()))
    assert chosen.mean_iou == pytest.approx(float(after.mean()))
    assert chosen.mean_iou > chosen.default_mean_iou

    kept = choose_anchors(boxes, images, (512, 512), levels, [1.0, 2.0], None, [1.0, 2.0, 0.5], 4.0)
    assert (kept.aspect_ratios, kept.auto) == ([1.0, 2.0], ["anchor_scale"])
    fixed = choose_anchors(boxes, images, (512, 512), levels, None, 3.0, [1.0, 2.0, 0.5], 4.0)
    assert (fixed.anchor_scale, fixed.auto) == (3.0, ["aspect_ratios"])


def test_resolve_auto_anchors_uses_the_training_boxes_at_the_runs_size(tiny_records: Path) -> None:
    records = Records(tiny_records)
    auto = {"image_size": 256, "aspect_ratios": "auto", "anchor_scale": "auto"}
    config = resolve_config("efficientdet-lite0", records.report(), auto)
    resolved, choice = resolve_auto_anchors(config, records)
    assert choice is not None
    report = records.report()
    assert report is not None
    assert choice.num_boxes == report.splits["train"].boxes  # the training boxes only
    assert min(choice.aspect_ratios) > 1.5  # synthetic plates are wide
    assert resolved.model.aspect_ratios == choice.aspect_ratios
    assert resolved.model.anchor_scale == choice.anchor_scale
    assert resolved.model.image_size == (256, 256)
    assert choice.mean_iou > choice.default_mean_iou
    lite0 = get_config("efficientdet-lite0").model
    default = choose_anchors(  # the 'before' is the variant's own default anchors (lite0: anchor_scale 3)
        *_train_shapes(records), (256, 256), (3, 7, 3), lite0.ratios, lite0.scale, lite0.ratios, lite0.scale
    )
    assert choice.default_mean_iou == pytest.approx(default.mean_iou)

    plain = resolve_config("efficientdet-d0", records.report(), {"image_size": 256})
    assert resolve_auto_anchors(plain, records) == (plain, None)


def _train_shapes(records: Records) -> tuple[np.ndarray, np.ndarray]:
    from effdet.data.shards import read_box_shapes

    return read_box_shapes(records.train_files)


@pytest.mark.slow
def test_fine_tune_writes_the_chosen_anchors_into_the_run_config(
    tiny_records: Path, tiny_config: Config, tmp_path: Path
) -> None:
    from effdet.train import TrainOptions

    records = Records(tiny_records)
    hparams = {**tiny_config.to_flat(), "aspect_ratios": "auto", "anchor_scale": "auto"}
    config = resolve_config("efficientdet-d0", records.report(), hparams)
    options = TrainOptions(batch_size=2, num_steps=1, checkpoint_every=100, bn_recalibration_batches=1)
    fine_tune(config, records, tmp_path / "run", options)
    saved = Config.from_yaml(tmp_path / "run" / layout.CONFIG_FILE)
    expected, _ = resolve_auto_anchors(config, records)
    assert saved == expected
    assert isinstance(saved.model.aspect_ratios, list)
    assert isinstance(saved.model.anchor_scale, float)


def test_report_suggests_anchors_for_each_variant_at_its_own_size(tiny_records: Path) -> None:
    from effdet.config import MODEL_NAMES

    report = Records(tiny_records).report()
    assert report is not None
    assert list(report.anchors_by_model) == list(MODEL_NAMES)
    assert report.anchors_by_model["efficientdet-d1"] == report.anchors  # the converter's default model is D1
    for name, suggestion in report.anchors_by_model.items():
        preset = get_config(name).model
        assert suggestion.default_anchor_scale == preset.scale
        assert suggestion.default_aspect_ratios == preset.ratios
        assert suggestion.num_boxes == report.stats.num_boxes
    lite0, d7 = report.anchors_by_model["efficientdet-lite0"], report.anchors_by_model["efficientdet-d7"]
    assert (lite0.default_anchor_scale, d7.default_anchor_scale) == (3.0, 5.0)
    assert min(lite0.aspect_ratios) > 1.5
    assert report.stats.input_sizes is not None
    assert list(report.stats.input_sizes.by_model) == list(MODEL_NAMES)
