"""Pretrained loading by variable path (automl naming, our runs), freezing by regex."""

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from effdet import checkpoints as ckpt
from effdet.config import Config
from effdet.model.efficientdet import build_model


def _outputs(model: tf.keras.Model, config: Config) -> np.ndarray:
    images = tf.random.stateless_uniform([1, *config.model.image_size, 3], seed=[1, 2])
    class_out, box_out = model(images, training=False)
    return np.concatenate([tf.reshape(t, [-1]).numpy() for t in [*class_out, *box_out]])


def test_automl_named_checkpoint_round_trip_prefers_moving_average(tiny_config: Config, tmp_path: Path) -> None:
    source = build_model(tiny_config)
    # Raw values are zeros, the moving averages hold the real weights: loading must pick the averages.
    averages = {v.path: tf.convert_to_tensor(v) for v in source.trainable_variables}
    tensors = {v.path: tf.zeros_like(v) if v.path in averages else tf.convert_to_tensor(v) for v in source.variables}
    tensors.update({path + ckpt.EMA_SUFFIX: value for path, value in averages.items()})
    prefix = ckpt.save_named_weights(tensors, tmp_path / "automl" / "model")
    names = set(tf.train.load_checkpoint(str(prefix)).get_variable_to_shape_map())
    assert "efficientnet-b0/stem/conv2d/kernel/ExponentialMovingAverage" in names
    assert "class_net/class-predict/bias" in names

    fresh = build_model(tiny_config)
    report = ckpt.load_pretrained(fresh, prefix)
    assert report.loaded == len(fresh.variables)
    assert report.from_moving_average == len(fresh.trainable_variables)
    assert not report.shape_mismatch
    assert not report.missing
    np.testing.assert_array_equal(_outputs(fresh, tiny_config), _outputs(source, tiny_config))


def test_other_num_classes_reinitialises_only_class_prediction(
    tiny_config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = build_model(tiny_config)
    prefix = ckpt.save_named_weights(ckpt.named_weights(source), tmp_path / "model")
    three = tiny_config.override({"num_classes": 3})
    target = build_model(three)
    with caplog.at_level(logging.INFO, logger="effdet.checkpoints"):
        report = ckpt.load_pretrained(target, prefix)
    # The depthwise kernel does not depend on the class count, so it loads.
    assert [m.split(":")[0] for m in report.shape_mismatch] == [
        "class_net/class-predict/pointwise_kernel",
        "class_net/class-predict/bias",
    ]
    assert report.loaded == len(target.variables) - 2
    assert "class-prediction variables re-initialised" in caplog.text
    loaded = {v.path: v.numpy() for v in target.variables}
    skipped = {m.split(":")[0] for m in report.shape_mismatch}
    for variable in source.variables:
        if variable.path in loaded and variable.path not in skipped:
            np.testing.assert_array_equal(loaded[variable.path], variable.numpy())


def test_checkpoint_of_no_matching_variables_is_a_clear_error(tiny_config: Config, tmp_path: Path) -> None:
    prefix = ckpt.save_named_weights({"resnet50/conv1/kernel": tf.zeros([3, 3])}, tmp_path / "model")
    with pytest.raises(ckpt.CheckpointError, match="another model variant"):
        ckpt.load_pretrained(build_model(tiny_config), prefix)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.resolve_checkpoint(tmp_path / "nothing")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint found"):
        ckpt.resolve_checkpoint(tmp_path)


def test_freeze_regex_matches_from_the_start(tiny_config: Config) -> None:
    model = build_model(tiny_config)
    frozen = ckpt.frozen_paths(model.trainable_variables, "(efficientnet|fpn_cells|resample_p6)")
    assert frozen
    assert all(p.split("/")[0] in {"efficientnet-b0", "fpn_cells", "resample_p6"} for p in frozen)
    assert not any(p.startswith(("class_net", "box_net")) for p in frozen)
    assert ckpt.frozen_paths(model.trainable_variables, None) == set()
    with pytest.raises(ckpt.CheckpointError, match="not a valid regular expression"):
        ckpt.frozen_paths(model.trainable_variables, "(efficientnet")
    with pytest.raises(ckpt.CheckpointError, match="matches no variable"):
        ckpt.frozen_paths(model.trainable_variables, "stem")
