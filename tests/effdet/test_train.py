"""The training loop: exact resume, cancellation, budgets, freezing, divergence, progress, pretrained starts."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from effdet import checkpoints as ckpt
from effdet import layout
from effdet.checkpoint_index import OBJECT_GRAPH_KEY
from effdet.config import Config
from effdet.train import Progress, TrainingDivergedError, TrainOptions, count_examples, train

N = 3


def _state(run_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the latest training checkpoint (model, optimizer slots, moving averages, step)."""
    prefix = tf.train.latest_checkpoint(str(run_dir / layout.CHECKPOINT_DIR))
    reader = tf.train.load_checkpoint(prefix)
    names = [n for n in reader.get_variable_to_shape_map() if n != OBJECT_GRAPH_KEY]
    return {n: reader.get_tensor(n) for n in names if "save_counter" not in n}


def _files(records: Path, split: str) -> str:
    return str(records / f"{split}-*.tfrecord")


def test_resume_is_exact_and_two_halves_make_the_whole(tiny_records: Path, tiny_config: Config, tmp_path: Path) -> None:
    options = TrainOptions(batch_size=2, num_steps=2 * N, checkpoint_every=100, progress_interval_s=0)
    whole = train(tiny_config, _files(tiny_records, "train"), None, tmp_path / "whole", options)
    assert (whole.status, whole.start_step, whole.step) == ("completed", 0, 2 * N)

    run = tmp_path / "halves"
    seen: list[Progress] = []
    first = train(
        tiny_config,
        _files(tiny_records, "train"),
        None,
        run,
        options,
        on_progress=seen.append,
        should_stop=lambda: len(seen) >= N,
    )
    assert (first.status, first.step) == ("cancelled", N)
    saved = _state(run)
    assert int(saved["step/.ATTRIBUTES/VARIABLE_VALUE"]) == N

    # Restoring and saving again without a step reproduces every tensor: model, optimizer, EMA, step.
    again = train(tiny_config, _files(tiny_records, "train"), None, run, options, should_stop=lambda: True)
    assert (again.status, again.start_step, again.step) == ("cancelled", N, N)
    restored = _state(run)
    assert saved.keys() == restored.keys()
    assert sum(n.startswith("optimizer/_variables/") for n in saved) >= whole.trainable_variables  # momenta
    for name, value in saved.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)

    later: list[Progress] = []
    second = train(tiny_config, _files(tiny_records, "train"), None, run, options, on_progress=later.append)
    assert (second.status, second.start_step, second.step, second.total_steps) == ("completed", N, 2 * N, 2 * N)
    assert [p.step for p in later] == list(range(N + 1, 2 * N + 1))
    # The learning-rate schedule continues where it stopped: same rates as the uninterrupted run's log.
    whole_rates = [Progress.model_validate_json(line) for line in (tmp_path / "whole/logs/train.jsonl").open()]
    assert [p.learning_rate for p in later] == pytest.approx([p.learning_rate for p in whole_rates[N:]])
    final = _state(run)
    assert int(final["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 2 * N
    assert int(final["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == 2 * N
    assert int(final["ema/num_updates/.ATTRIBUTES/VARIABLE_VALUE"]) == 2 * N
    assert set(final) == set(_state(tmp_path / "whole"))
    # The training checkpoint holds every variable (BN statistics included) and every average, as the
    # shareable weights written at the end do, with the same values (BN statistics there are recomputed).
    latest = Path(tf.train.latest_checkpoint(str(run / layout.CHECKPOINT_DIR)))
    fmt, values = ckpt.read_named_values(latest)
    shared = tf.train.load_checkpoint(str(run / layout.WEIGHTS_DIR / layout.WEIGHTS_PREFIX))
    assert fmt == "effdet-training-checkpoint"
    assert set(values) == set(shared.get_variable_to_shape_map())
    assert sum(name.endswith("moving_variance") for name in values) > 50
    for name, value in values.items():
        if "moving_" not in name:
            np.testing.assert_array_equal(value, shared.get_tensor(name), err_msg=name)


def test_freeze_progress_and_pretrained_start(tiny_records: Path, tiny_config: Config, tmp_path: Path) -> None:
    base = train(
        tiny_config,
        _files(tiny_records, "train"),
        None,
        tmp_path / "base",
        TrainOptions(batch_size=2, num_steps=1, bn_recalibration_batches=0),
    )
    frozen_config = tiny_config.override({"var_freeze_expr": "(efficientnet|fpn_cells|resample_p6)"})
    seen: list[Progress] = []
    result = train(
        frozen_config,
        _files(tiny_records, "train"),
        _files(tiny_records, "val"),
        tmp_path / "frozen",
        TrainOptions(
            batch_size=2,
            num_steps=2,
            pretrained=tmp_path / "base",
            progress_interval_s=0,
            bn_recalibration_batches=0,
            eval_every=2,
        ),
        ground_truth=tiny_records / "val_annotations.json",
        on_progress=seen.append,
    )
    # Evaluation during training keeps the best weights by val AP.
    assert result.best_ap is not None
    best = json.loads((tmp_path / "frozen" / layout.BEST_DIR / "metrics.json").read_text())
    assert best["step"] == 2
    assert best["num_images"] == 4
    assert (tmp_path / "frozen" / layout.BEST_DIR / "model.index").exists()
    assert result.trainable_variables < base.trainable_variables
    assert result.trainable_params < base.trainable_params
    assert [p.step for p in seen] == [1, 2]
    assert seen[-1].total_steps == 2
    assert all(p.loss > 0 and p.learning_rate > 0 for p in seen)
    assert seen[-1].images_per_sec > 0
    assert seen[-1].eta_seconds == 0

    start = tf.train.load_checkpoint(str(tmp_path / "base" / layout.WEIGHTS_DIR / "model"))
    end = tf.train.load_checkpoint(str(tmp_path / "frozen" / layout.WEIGHTS_DIR / "model"))
    kernel = "efficientnet-b0/stem/conv2d/kernel"
    head = "class_net/class-predict/bias"
    # Frozen variables keep the pretrained (averaged) values; the heads move.
    np.testing.assert_array_equal(end.get_tensor(kernel), start.get_tensor(kernel + ckpt.EMA_SUFFIX))
    assert not np.array_equal(end.get_tensor(head), start.get_tensor(head + ckpt.EMA_SUFFIX))


def test_divergence_names_the_step_and_the_fix(tiny_records: Path, tiny_config: Config, tmp_path: Path) -> None:
    wild = tiny_config.override({"learning_rate": 1e12, "lr_warmup_init": 1e12, "clip_gradients_norm": 0})
    with pytest.raises(TrainingDivergedError, match=r"at step \d+: lower learning_rate"):
        train(wild, _files(tiny_records, "train"), None, tmp_path / "nan", TrainOptions(batch_size=2, num_steps=6))


def test_budgets_epochs_time_and_gpu_settings_on_a_cpu(
    tiny_records: Path, tiny_config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    examples = count_examples(_files(tiny_records, "train"))
    assert examples == 12
    options = TrainOptions(batch_size=4, num_epochs=2, max_train_seconds=1e-3)
    gpu_config = tiny_config.override({"mixed_precision": True, "strategy": "gpus"})
    with caplog.at_level(logging.INFO, logger="effdet.train"):
        result = train(gpu_config, _files(tiny_records, "train"), None, tmp_path / "budget", options)
    assert (result.status, result.step, result.total_steps) == ("time_budget", 0, 6)
    assert "mixed_precision needs a GPU" in caplog.text
    assert "no GPU is visible" in caplog.text
    assert tf.train.latest_checkpoint(str(tmp_path / "budget" / layout.CHECKPOINT_DIR))
    assert "batch-norm statistics recomputed for the averaged weights" in caplog.text, "a budget ends like a run"
    final = tf.train.load_checkpoint(str(tmp_path / "budget" / layout.WEIGHTS_DIR / layout.WEIGHTS_PREFIX))
    assert any("moving_variance" in name for name in final.get_variable_to_shape_map())


def test_run_dir_of_another_model_is_refused(tiny_records: Path, tiny_config: Config, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / layout.CONFIG_FILE).write_text(tiny_config.override({"num_classes": 4}).to_yaml())
    with pytest.raises(ckpt.CheckpointError, match="use a new run_dir"):
        train(tiny_config, _files(tiny_records, "train"), None, tmp_path / "run", TrainOptions(num_steps=1))


def test_iou_loss_and_positives_momentum_train_and_resume(
    tiny_records: Path, tiny_config: Config, tmp_path: Path
) -> None:
    config = tiny_config.override({"iou_loss_type": "ciou", "positives_momentum": 0.9})
    options = TrainOptions(batch_size=2, num_steps=2, checkpoint_every=100, bn_recalibration_batches=0)
    run = tmp_path / "run"
    result = train(config, _files(tiny_records, "train"), None, run, options)
    assert result.status == "completed"
    assert result.final_loss is not None
    assert np.isfinite(result.final_loss)
    saved = _state(run)
    moving = [value for name, value in saved.items() if name.startswith("positives/")]
    assert len(moving) == 1  # the moving average of the positives is part of the checkpoint
    assert float(moving[0]) > 0
    longer = options.model_copy(update={"num_steps": 3})
    again = train(config, _files(tiny_records, "train"), None, run, longer, should_stop=lambda: True)
    assert (again.status, again.start_step) == ("cancelled", 2)  # restored, then saved again without a step
    np.testing.assert_array_equal(_state(run)[next(n for n in saved if n.startswith("positives/"))], moving[0])


def test_a_backbone_frozen_for_the_first_steps_trains_after_them(
    tiny_records: Path, tiny_config: Config, tmp_path: Path
) -> None:
    config = tiny_config.override({"var_freeze_expr": "efficientnet", "var_freeze_steps": 2})
    options = TrainOptions(batch_size=2, num_steps=2, checkpoint_every=100, bn_recalibration_batches=0)
    run = tmp_path / "run"
    kernel = "weights/efficientnet-b0.Sstem.Sconv2d.Skernel/.ATTRIBUTES/VARIABLE_VALUE"
    head = "weights/class_net.Sclass-predict.Sbias/.ATTRIBUTES/VARIABLE_VALUE"
    train(config, _files(tiny_records, "train"), None, run, options, should_stop=lambda: True)
    start = _state(run)  # cancelled before the first step: the initial weights
    frozen = train(config, _files(tiny_records, "train"), None, run, options)
    at_two = _state(run)
    assert frozen.trainable_variables < len([n for n in at_two if n.startswith("weights/")])
    np.testing.assert_array_equal(at_two[kernel], start[kernel])  # the backbone waits its two steps
    assert not np.array_equal(at_two[head], start[head])
    assert set(at_two) == set(start), "optimizer slots for every variable from the start: one checkpoint layout"
    resumed = train(config, _files(tiny_records, "train"), None, run, options.model_copy(update={"num_steps": 4}))
    assert (resumed.start_step, resumed.step) == (2, 4)
    assert not np.array_equal(_state(run)[kernel], at_two[kernel]), "from step 2 on the backbone trains"


def test_freeze_steps_without_a_freeze_expression_is_refused(tiny_config: Config) -> None:
    from effdet.config import ConfigError

    with pytest.raises(ConfigError, match="give var_freeze_expr too"):
        tiny_config.override({"var_freeze_steps": 100})
