"""Hyperparameters: presets, automl override syntax, YAML round trips, error messages, keys without effect."""

from pathlib import Path

import pytest

from effdet.config import (
    FLAT_KEYS,
    IGNORED_KEYS,
    MODEL_NAMES,
    NO_EFFECT,
    Config,
    ConfigError,
    NmsConfig,
    get_config,
    ineffective_keys,
    parse_override_string,
    parse_overrides,
    run_option_keys,
)

AUTOML_DEFAULT_KEYS = {
    "name", "act_type", "image_size", "target_size", "input_rand_hflip", "jitter_min", "jitter_max",
    "autoaugment_policy", "grid_mask", "sample_image", "map_freq", "num_classes", "seg_num_classes", "heads",
    "skip_crowd_during_training", "label_map", "max_instances_per_image", "regenerate_source_id", "min_level",
    "max_level", "num_scales", "aspect_ratios", "anchor_scale", "is_training_bn", "momentum", "optimizer",
    "learning_rate", "lr_warmup_init", "lr_warmup_epoch", "first_lr_drop_epoch", "second_lr_drop_epoch",
    "poly_lr_power", "clip_gradients_norm", "num_epochs", "data_format", "mean_rgb", "stddev_rgb",
    "scale_range", "label_smoothing", "alpha", "gamma", "delta", "box_loss_weight", "iou_loss_type",
    "iou_loss_weight", "weight_decay", "strategy", "mixed_precision", "loss_scale", "box_class_repeats",
    "fpn_cell_repeats", "fpn_num_filters", "separable_conv", "apply_bn_for_resampling",
    "conv_after_downsample", "conv_bn_act_pattern", "drop_remainder", "nms_configs", "tflite_max_detections",
    "fpn_name", "fpn_weight_method", "fpn_config", "survival_prob", "img_summary_steps", "lr_decay_method",
    "moving_average_decay", "ckpt_var_scope", "skip_mismatch", "backbone_name", "backbone_config",
    "var_freeze_expr", "use_keras_model", "dataset_type", "positives_momentum", "grad_checkpoint", "verbose",
    "save_freq",
}  # fmt: skip


def test_every_automl_default_name_is_known() -> None:
    assert set(FLAT_KEYS) >= AUTOML_DEFAULT_KEYS


def test_defaults_match_automl() -> None:
    flat = get_config("efficientdet-d0").to_flat()
    assert flat["learning_rate"] == 0.08
    assert flat["lr_warmup_init"] == 0.008
    assert flat["alpha"] == 0.25
    assert flat["gamma"] == 1.5
    assert flat["delta"] == 0.1
    assert flat["box_loss_weight"] == 50.0
    assert flat["aspect_ratios"] == [1.0, 2.0, 0.5]
    assert flat["num_scales"] == 3
    assert flat["anchor_scale"] == 4.0
    assert flat["moving_average_decay"] == 0.9998
    assert flat["weight_decay"] == 4e-5
    assert flat["nms_configs"]["method"] == "gaussian"
    assert flat["max_instances_per_image"] == 100


@pytest.mark.parametrize(
    ("name", "backbone", "size", "filters", "cells", "repeats", "anchor_scale", "max_level", "fusion"),
    [
        ("efficientdet-d0", "efficientnet-b0", 512, 64, 3, 3, 4.0, 7, "fastattn"),
        ("efficientdet-d1", "efficientnet-b1", 640, 88, 4, 3, 4.0, 7, "fastattn"),
        ("efficientdet-d2", "efficientnet-b2", 768, 112, 5, 3, 4.0, 7, "fastattn"),
        ("efficientdet-d3", "efficientnet-b3", 896, 160, 6, 4, 4.0, 7, "fastattn"),
        ("efficientdet-d4", "efficientnet-b4", 1024, 224, 7, 4, 4.0, 7, "fastattn"),
        ("efficientdet-d5", "efficientnet-b5", 1280, 288, 7, 4, 4.0, 7, "fastattn"),
        ("efficientdet-d6", "efficientnet-b6", 1280, 384, 8, 5, 4.0, 7, "sum"),
        ("efficientdet-d7", "efficientnet-b6", 1536, 384, 8, 5, 5.0, 7, "sum"),
        ("efficientdet-d7x", "efficientnet-b7", 1536, 384, 8, 5, 4.0, 8, "sum"),
    ],
)
def test_presets_follow_compound_scaling(
    name: str,
    backbone: str,
    size: int,
    filters: int,
    cells: int,
    repeats: int,
    anchor_scale: float,
    max_level: int,
    fusion: str,
) -> None:
    model = get_config(name).model
    assert model.name == name
    assert model.backbone_name == backbone
    assert model.image_size == (size, size)
    assert model.fpn_num_filters == filters
    assert model.fpn_cell_repeats == cells
    assert model.box_class_repeats == repeats
    assert model.anchor_scale == anchor_scale
    assert model.max_level == max_level
    assert model.weight_method == fusion


def test_override_string_uses_automl_syntax() -> None:
    config = get_config(
        "efficientdet-d0",
        "num_classes=1,image_size=640x384,aspect_ratios=1.0*2.0*0.5,nms_configs.method=hard",
    )
    assert config.model.num_classes == 1
    assert config.model.image_size == (384, 640)
    assert config.model.aspect_ratios == [1.0, 2.0, 0.5]
    assert config.eval.nms_configs.method == "hard"
    assert config.eval.nms_configs.max_output_size == 100  # nested dicts merge, they do not replace


def test_parse_override_string_values() -> None:
    parsed = parse_override_string("a=true,b=false,c=3,d=0.5,e=None,f=text,g.h=1,g.i=x*y")
    assert parsed == {
        "a": True,
        "b": False,
        "c": 3,
        "d": 0.5,
        "e": None,
        "f": "text",
        "g": {"h": 1, "i": ["x", "y"]},
    }


def test_yaml_text_and_file_in_automl_format(tmp_path: Path) -> None:
    text = "num_classes: 1\nlabel_map: {1: plate}\nvar_freeze_expr: '(efficientnet|fpn_cells|resample_p6)'\n"
    path = tmp_path / "hparams.yaml"
    path.write_text(text)
    for source in (text, str(path)):
        config = get_config("efficientdet-d0", source)
        assert config.input.label_map == {1: "plate"}
        assert config.train.var_freeze_expr == "(efficientnet|fpn_cells|resample_p6)"


def test_older_automl_aspect_ratio_pairs_are_read_as_width_over_height() -> None:
    config = get_config("efficientdet-d0", {"aspect_ratios": [[1.0, 1.0], [1.4, 0.7], [0.7, 1.4]]})
    assert config.model.aspect_ratios == pytest.approx([1.0, 2.0, 0.5])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_yaml_round_trip_is_identical(name: str) -> None:
    config = get_config(name, {"num_classes": 3, "image_size": "1024x512", "label_map": {1: "a", 3: "c"}})
    assert Config.from_yaml(config.to_yaml()) == config
    assert Config.from_yaml(config.to_yaml()).to_yaml() == config.to_yaml()


def test_non_square_image_size_round_trips_as_wxh() -> None:
    config = get_config("efficientdet-d0", "image_size=256x128")
    assert config.to_flat()["image_size"] == "256x128"
    assert Config.from_yaml(config.to_yaml()).model.image_size == (128, 256)


def test_every_problem_is_reported_at_once_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        get_config(
            "efficientdet-d0",
            "num_clases=1,image_size=500,jitter_min=3,optimizer=rmsprop,nms_configs.methd=hard,learning_rate=-1",
        )
    problems = caught.value.problems
    assert len(problems) == 6
    text = str(caught.value)
    assert "unknown hyperparameter 'num_clases' (did you mean 'num_classes'?)" in text
    assert "nms_configs.methd" in text
    assert "image_size 500 is not divisible by 2**max_level=128" in text
    assert "use 384 or 512" in text
    assert "jitter_min 3 is above jitter_max 2.0" in text
    assert "optimizer: Input should be 'sgd' or 'adam', got 'rmsprop'" in text
    assert "learning_rate" in text


def test_non_square_size_error_suggests_valid_sizes() -> None:
    with pytest.raises(ConfigError, match="use '256x128' or '384x128'"):
        get_config("efficientdet-d0", "image_size=300x128")


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'efficientdet-d0'\?.*efficientdet-d7x"):
        get_config("efficientdet_d0")


def test_tpu_strategy_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="strategy 'tpu' is not supported"):
        get_config("efficientdet-d0", "strategy=tpu")


def test_bad_freeze_regex_and_label_map_out_of_range() -> None:
    with pytest.raises(ConfigError) as caught:
        get_config(
            "efficientdet-d0",
            {"var_freeze_expr": "(efficientnet", "label_map": {1: "a", 5: "b"}, "num_classes": 2},
        )
    text = str(caught.value)
    assert "not a valid regular expression" in text
    assert "label_map ids [5] are outside 1..num_classes=2" in text


def test_keys_from_an_automl_saved_config_are_accepted() -> None:
    config = get_config("efficientdet-d0", {"model_dir": "/tmp/x", "batch_size": 8, "num_classes": 2})
    assert config.model.num_classes == 2


def test_override_returns_a_new_validated_config() -> None:
    base = get_config("efficientdet-d0")
    changed = base.override("num_classes=2")
    assert (base.model.num_classes, changed.model.num_classes) == (90, 2)
    with pytest.raises(ConfigError):
        base.override({"num_classes": 0})


def test_yaml_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        get_config("efficientdet-d0", "- a\n- b\n")


def test_every_key_without_effect_is_accepted_and_names_its_reason() -> None:
    accepted = set(FLAT_KEYS) | IGNORED_KEYS | {f"nms_configs.{k}" for k in NmsConfig.model_fields}
    assert set(NO_EFFECT) <= accepted
    assert set(NO_EFFECT) >= IGNORED_KEYS  # a saved automl config's extra keys all say why they are dropped
    assert all(entry.reason for entry in NO_EFFECT.values())


def test_ineffective_keys_name_each_key_set_without_effect_in_order() -> None:
    overrides = parse_overrides(
        "model_dir=/tmp/run,num_classes=2,skip_mismatch=false,grid_mask=true,nms_configs.pyfunc=true,map_freq=2"
    )
    assert ineffective_keys(overrides) == [
        "`model_dir` is accepted but has no effect here: automl run bookkeeping that a saved config.yaml carries; "
        "the run folder is the job's (or `effdet train --run-dir`)",
        "`skip_mismatch` is accepted but has no effect here: pretrained weights whose shape differs (the class head "
        "for another num_classes) are always skipped and logged",
        "`nms_configs.pyfunc` is accepted but has no effect here: NMS always runs as TensorFlow ops; pyfunc only "
        "chose automl's numpy implementation",
        "`map_freq` is accepted but has no effect here: evaluation during training runs every eval_every steps (a "
        "job option, `--eval-every`)",
    ]


def test_values_that_ask_for_nothing_are_not_reported() -> None:
    quiet = {"skip_mismatch": True, "sample_image": None, "grad_checkpoint": False, "nms_configs": {"pyfunc": False}}
    assert ineffective_keys(quiet) == []
    assert ineffective_keys({"grad_checkpoint": True})[0].startswith("`grad_checkpoint` is accepted but")


def test_batch_size_in_hparams_is_a_run_option_the_service_can_point_to() -> None:
    given = {"num_classes": 2, "batch_size": 16}
    assert run_option_keys(given) == ["batch_size"]
    assert run_option_keys({"num_classes": 2}) == []
    assert "set the job's batch_size" in ineffective_keys(given)[0]
    assert get_config("efficientdet-d0", given).model.num_classes == 2  # still accepted by the config itself


@pytest.mark.parametrize("kind", [None, "iou", "giou", "diou", "ciou"])
def test_iou_loss_type_takes_automl_values(kind: str | None) -> None:
    assert get_config("efficientdet-d0", {"iou_loss_type": kind}).loss.iou_loss_type == kind


def test_bad_iou_loss_type_and_positives_momentum_are_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        get_config("efficientdet-d0", {"iou_loss_type": "l1", "positives_momentum": 1.0})
    text = str(caught.value)
    assert "iou_loss_type" in text
    assert "'iou', 'giou', 'diou' or 'ciou'" in text
    assert "positives_momentum" in text


def test_target_size_reads_like_image_size_and_round_trips() -> None:
    config = get_config("efficientdet-d0", "target_size=640x384")
    assert config.input.target_size == (384, 640)
    assert config.to_flat()["target_size"] == "640x384"
    assert Config.from_yaml(config.to_yaml()) == config
    assert get_config("efficientdet-d0", {"target_size": 512}).input.target_size == (512, 512)


def test_heads_take_segmentation_beside_or_instead_of_detection() -> None:
    for heads in (["segmentation"], ["object_detection", "segmentation"]):
        assert get_config("efficientdet-d0", {"heads": heads}).model.heads == heads
    with pytest.raises(ConfigError, match="heads must name object_detection, segmentation or both, once each"):
        get_config("efficientdet-d0", {"heads": ["segmentation", "segmentation"]})
    with pytest.raises(ConfigError, match="heads must name"):
        get_config("efficientdet-d0", {"heads": []})


def test_the_segmentation_head_needs_levels_that_halve_exactly() -> None:
    """Lite0 at 320 rounds its pooled levels up (320 / 2**7 = 2.5), which detection takes and segmentation cannot."""
    assert get_config("efficientdet-lite0").model.image_size == (320, 320)
    with pytest.raises(ConfigError, match=r"divisible by 2\*\*max_level=128, got 320; use 256 or 384"):
        get_config("efficientdet-lite0", {"heads": ["segmentation"]})
    assert get_config("efficientdet-lite0", {"heads": ["segmentation"], "image_size": 384}).model.heads


def test_augmentations_that_move_boxes_only_are_refused_with_segmentation() -> None:
    with pytest.raises(ConfigError, match="does not train with tiles or autoaugment_policy yet"):
        get_config("efficientdet-d0", {"heads": ["segmentation"], "tiles": 256, "autoaugment_policy": "v0"})
