"""Fine-tuning: the training loop with checkpoints, exact resume, progress, cancellation and budgets.

`train(config, train_files, val_files, run_dir, options)` trains until the step budget is spent, the wall-clock
budget runs out, or `should_stop()` (cancel) or `should_finish()` (end now, keep the model) answers True; every
exit except a crash leaves a checkpoint in `run_dir/checkpoints`, and calling it again with the same run_dir
resumes from there (step, optimizer slots, moving averages and learning-rate position). A run that completes,
spends its time budget or is asked to finish also writes its averaged weights, batch-norm statistics recomputed
for them, in automl's naming to `run_dir/weights/model`, which evaluation, export and `pretrained=` read (a
cancelled run does not: it is not finished).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import tensorflow as tf
from pydantic import BaseModel, Field

from effdet import checkpoints as ckpt
from effdet.anchor_grid import anchors_for
from effdet.config import Config
from effdet.data.pipeline import build_dataset
from effdet.data.shards import record_files
from effdet.ema import WeightAverage
from effdet.layout import BEST_DIR, CHECKPOINT_DIR, METRICS_FILE, TRAIN_LOG, WEIGHTS_DIR, WEIGHTS_PREFIX
from effdet.losses import (
    PositivesNormaliser,
    count_positives,
    detection_loss,
    segmentation_loss,
    weight_decay_loss,
)
from effdet.model.efficientdet import build_model, count_params, flatten_predictions, split_outputs
from effdet.precise_bn import recalibrate, statistics_kept
from effdet.schedules import WarmupDecay, schedule_settings

log = logging.getLogger(__name__)


class TrainOptions(BaseModel):
    """Run-level settings that are not model hyperparameters."""

    batch_size: int = Field(8, ge=1)
    num_steps: int | None = Field(None, ge=1, description="total steps; else num_epochs (else config num_epochs)")
    num_epochs: float | None = Field(None, gt=0)
    max_train_seconds: float | None = Field(None, gt=0, description="wall-clock budget of this call")
    seed: int = 0
    pretrained: Path | None = None
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (one is always made at the end)")
    keep_checkpoints: int = Field(3, ge=1)
    eval_every: int | None = Field(None, ge=1, description="steps between evaluations that keep the best weights")
    progress_interval_s: float = Field(2.0, ge=0, description="seconds between progress reports")
    bn_recalibration_batches: int = Field(
        50, ge=0, description="batches for recomputing BN statistics of the final weights (0: keep the trailing ones)"
    )


class Progress(BaseModel):
    """One progress report, as the service stores and streams it."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    cls_loss: float
    box_loss: float
    seg_loss: float | None = None
    learning_rate: float
    images_per_sec: float
    eta_seconds: float


Status = Literal["completed", "cancelled", "time_budget", "stopped"]
FINISHED: tuple[Status, ...] = ("completed", "time_budget", "stopped")
"""Endings that leave the run's final weights: without recomputed batch-norm statistics the averaged weights
collapse (AP 0.69 -> 0.09 in the learning benchmark), so a time budget must end like the planned steps."""
"""How a call to `train` ended: all steps done, `should_stop()` answered True (cancelled), the time budget ran out,
or `should_finish()` answered True (stopped early, finished)."""


class TrainResult(BaseModel):
    """How a call to `train` ended."""

    status: Status
    start_step: int
    step: int
    total_steps: int
    final_loss: float | None
    best_ap: float | None
    trainable_variables: int
    trainable_params: int
    elapsed_seconds: float
    images_per_sec: float | None


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and what to change."""


ProgressCallback = Callable[[Progress], None]


def count_examples(files: str | Sequence[str]) -> int:
    """Number of records in TFRecord files (a glob or a list); reads only the record framing."""
    return sum(1 for _ in tf.data.TFRecordDataset(record_files(files)))


def _strategy(config: Config) -> tf.distribute.Strategy:
    if config.train.strategy == "gpus":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([g.name for g in gpus])
        log.warning("strategy 'gpus' asked for but no GPU is visible: training on the CPU without a strategy")
    return tf.distribute.get_strategy()


def _use_mixed_precision(config: Config) -> bool:
    if not config.train.mixed_precision:
        return False
    if not tf.config.list_logical_devices("GPU"):
        log.warning("mixed_precision needs a GPU (float16 is slower on a CPU): training in float32")
        return False
    return True


def _build(config: Config, mixed: bool) -> keras.Model:
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        return build_model(config)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def _optimizer(config: Config, schedule: WarmupDecay, mixed: bool) -> keras.optimizers.Optimizer:
    """SGD with momentum or Adam with beta_1 = momentum (automl), wrapped for loss scaling under mixed precision
    (starting at loss_scale when given)."""
    train = config.train
    clip = train.clip_gradients_norm or None
    optimizer: keras.optimizers.Optimizer
    if train.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=schedule, beta_1=train.momentum, global_clipnorm=clip)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=train.momentum, global_clipnorm=clip)
    if not mixed:
        return optimizer
    if train.loss_scale:
        return keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=train.loss_scale)
    return keras.optimizers.LossScaleOptimizer(optimizer)


class _Reporter:
    """Turns step results into Progress at the configured interval and logs them as JSON lines."""

    def __init__(
        self,
        run_dir: Path,
        options: TrainOptions,
        total: int,
        steps_per_epoch: int,
        callback: ProgressCallback | None,
        segmentation: bool = False,
    ):
        self.options, self.total, self.steps_per_epoch, self.callback = options, total, steps_per_epoch, callback
        self.segmentation = segmentation
        self.log_path = run_dir / TRAIN_LOG
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.window_start: tuple[float, int] | None = None
        self.last_report = -math.inf
        self.rate: float | None = None

    def started(self, step: int) -> None:
        """Rates are measured from the end of the first step of a call (it includes graph tracing)."""
        self.window_start = (time.monotonic(), step)

    def step(self, step: int, losses: tuple[float, ...], learning_rate: float) -> None:
        now = time.monotonic()
        if self.window_start is None:
            self.started(step)
        if now - self.last_report < self.options.progress_interval_s and step < self.total:
            return
        assert self.window_start is not None
        since, first = self.window_start
        if step > first and now > since:
            self.rate = (step - first) * self.options.batch_size / (now - since)
        rate = self.rate or 0.0
        eta = (self.total - step) * self.options.batch_size / rate if rate else 0.0
        progress = Progress(
            step=step,
            total_steps=self.total,
            epoch=step / self.steps_per_epoch,
            loss=losses[0],
            cls_loss=losses[1],
            box_loss=losses[2],
            seg_loss=losses[3] if self.segmentation else None,
            learning_rate=learning_rate,
            images_per_sec=rate,
            eta_seconds=eta,
        )
        self.last_report = now
        with self.log_path.open("a") as handle:
            handle.write(progress.model_dump_json(exclude_none=True) + "\n")
        if self.callback is not None:
            self.callback(progress)


@dataclass(frozen=True)
class _Plan:
    """How long the run is: the examples, steps per epoch, total steps and the learning-rate schedule."""

    examples: int
    steps_per_epoch: int
    total: int
    schedule: WarmupDecay


@dataclass(frozen=True)
class _TrainState:
    """The model and what a checkpoint holds with it: the optimizer, the weight averages, the step and (with
    positives_momentum) the moving average of the positives. `trainable` is what the first steps train;
    with var_freeze_steps, every variable trains from step `unfreeze_at` on."""

    model: keras.Model
    trainable: list[keras.Variable]
    unfreeze_at: int | None
    optimizer: keras.optimizers.Optimizer
    ema: WeightAverage
    step: tf.Variable
    positives: PositivesNormaliser
    trainable_params: int


@dataclass(frozen=True)
class _LoopEnd:
    """Where the loop stopped, and why."""

    status: Status
    step: int
    last_loss: float | None


def train(
    config: Config,
    train_files: str | Sequence[str],
    val_files: str | Sequence[str] | None,
    run_dir: Path,
    options: TrainOptions | None = None,
    *,
    ground_truth: Path | dict[str, object] | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_finish: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train (or resume) the run in `run_dir`; see the module docstring for what it leaves there. `should_stop`
    answering True cancels (a checkpoint, no final weights); `should_finish` ends training early as a finished
    run (final weights written, batch-norm statistics recomputed). `on_checkpoint(step)` runs after each
    checkpoint is written (e.g. to copy it off the machine)."""
    options = options or TrainOptions()
    began = time.monotonic()
    ckpt.save_run_config(run_dir, config)
    mixed = _use_mixed_precision(config)
    strategy = _strategy(config)
    plan = _plan(config, train_files, options)
    state = _build_state(config, plan.schedule, mixed, strategy)
    manager = _restore_or_load_pretrained(state, run_dir, options)
    start = int(state.step.numpy())
    train_step = _phased_train_step(state, config, strategy, mixed)
    batches = _training_batches(train_files, config, options, start, strategy)
    segmentation = "segmentation" in config.model.heads
    reporter = _Reporter(run_dir, options, plan.total, plan.steps_per_epoch, on_progress, segmentation)
    if options.eval_every and "object_detection" not in config.model.heads:
        raise ValueError("eval_every keeps the best weights by COCO AP, which a segmentation-only model has not")
    evaluator = (
        _BestKeeper(run_dir, state.model, config, state.ema, train_files, val_files, ground_truth, options)
        if options.eval_every
        else None
    )
    end = _train_loop(
        train_step,
        batches,
        state=state,
        plan=plan,
        manager=manager,
        reporter=reporter,
        evaluator=evaluator,
        config=config,
        options=options,
        start=start,
        interrupted=lambda: _interruption(should_stop, should_finish, options.max_train_seconds, began),
        checkpointed=on_checkpoint or (lambda _step: None),
    )
    if end.status in FINISHED:
        calibration = min(options.bn_recalibration_batches, math.ceil(plan.examples / options.batch_size))
        _save_final_weights(state.model, state.ema, config, train_files, options.batch_size, calibration, run_dir)
    return TrainResult(
        status=end.status,
        start_step=start,
        step=end.step,
        total_steps=plan.total,
        final_loss=end.last_loss,
        best_ap=evaluator.best_ap if evaluator else None,
        trainable_variables=len(state.trainable),
        trainable_params=state.trainable_params,
        elapsed_seconds=time.monotonic() - began,
        images_per_sec=reporter.rate,
    )


def _plan(config: Config, train_files: str | Sequence[str], options: TrainOptions) -> _Plan:
    """Steps per epoch from the record count, the total from num_steps or the epochs, and the schedule over it."""
    examples = count_examples(train_files)
    steps_per_epoch = max(1, examples // options.batch_size)
    epochs = options.num_epochs or float(config.train.num_epochs)
    total = options.num_steps or max(1, math.ceil(epochs * steps_per_epoch))
    schedule = WarmupDecay(schedule_settings(config.train, options.batch_size, steps_per_epoch, total))
    return _Plan(examples=examples, steps_per_epoch=steps_per_epoch, total=total, schedule=schedule)


def _build_state(config: Config, schedule: WarmupDecay, mixed: bool, strategy: tf.distribute.Strategy) -> _TrainState:
    """Build the model, optimizer, averages and step counter under the strategy; var_freeze_expr leaves some out."""
    with strategy.scope():
        model = _build(config, mixed)
        frozen = ckpt.frozen_paths(model.trainable_variables, config.train.var_freeze_expr)
        trainable = [v for v in model.trainable_variables if v.path not in frozen]
        unfreeze_at = config.train.var_freeze_steps if frozen else None
        optimizer = _optimizer(config, schedule, mixed)
        # Slots for every variable that will train, so a checkpoint has one layout before and after unfreezing.
        optimizer.build(model.trainable_variables if unfreeze_at else trainable)
        ema = WeightAverage(model.trainable_variables, config.train.moving_average_decay)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        positives = PositivesNormaliser(config.train.positives_momentum)
    params = count_params(model) - sum(int(tf.size(v)) for v in model.trainable_variables if v.path in frozen)
    log.info(
        "trainable: %d of %d variables, %d parameters (%d frozen by var_freeze_expr%s)",
        len(trainable),
        len(model.trainable_variables),
        params,
        len(frozen),
        f" until step {unfreeze_at}" if unfreeze_at else "",
    )
    return _TrainState(
        model=model,
        trainable=trainable,
        unfreeze_at=unfreeze_at,
        optimizer=optimizer,
        ema=ema,
        step=step,
        positives=positives,
        trainable_params=params,
    )


def _restore_or_load_pretrained(state: _TrainState, run_dir: Path, options: TrainOptions) -> tf.train.CheckpointManager:
    """Resume from the run's latest checkpoint, else start from options.pretrained (if given); return the manager."""
    # The moving positives only exist with positives_momentum, so checkpoints of other runs keep their layout.
    moving = {"positives": state.positives} if state.positives.average is not None else {}
    checkpoint = tf.train.Checkpoint(
        weights=ckpt.tracked_weights(state.model), optimizer=state.optimizer, ema=state.ema, step=state.step, **moving
    )
    manager = tf.train.CheckpointManager(
        checkpoint, str(run_dir / CHECKPOINT_DIR), max_to_keep=options.keep_checkpoints, checkpoint_name="ckpt"
    )
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(state.step.numpy()))
    elif options.pretrained is not None:
        ckpt.load_pretrained(state.model, options.pretrained)
        state.ema.reset_to_model()
    return manager


TrainStep = Callable[[dict[str, tf.Tensor]], list[tf.Tensor]]


def _phased_train_step(state: _TrainState, config: Config, strategy: tf.distribute.Strategy, mixed: bool) -> TrainStep:
    """The train step: of `state.trainable`, and with var_freeze_steps of every variable once the step counter
    reaches `state.unfreeze_at` (a second traced function, so each phase runs compiled)."""
    frozen_phase = _train_step_function(state, config, strategy, mixed, state.trainable)
    unfreeze_at = state.unfreeze_at
    if unfreeze_at is None:
        return frozen_phase
    full_phase = _train_step_function(state, config, strategy, mixed, state.model.trainable_variables)

    def train_step(batch: dict[str, tf.Tensor]) -> list[tf.Tensor]:
        if int(state.step.numpy()) < unfreeze_at:
            return frozen_phase(batch)
        return full_phase(batch)

    return train_step


def _train_step_function(
    state: _TrainState,
    config: Config,
    strategy: tf.distribute.Strategy,
    mixed: bool,
    trainable: list[keras.Variable],
) -> TrainStep:
    """One optimizer step of `trainable` on a batch on every replica, then the averages and the step counter;
    returns the mean (loss, cls_loss, box_loss, seg_loss), 0 for the terms of a head the model does not have."""
    model, optimizer = state.model, state.optimizer
    replicas = strategy.num_replicas_in_sync
    num_classes = config.model.num_classes
    decay_rate = config.train.weight_decay
    anchors = tf.constant(anchors_for(config.model).boxes) if config.loss.iou_loss_type else None

    heads = config.model.heads
    zero = tf.constant(0.0)

    def replica_step(batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, ...]:
        cls_loss = box_loss = seg_loss = zero
        if "object_detection" in heads:
            normaliser = state.positives(count_positives(batch["cls_targets"]))
        with tf.GradientTape() as tape:
            outputs = split_outputs(model(batch["images"], training=True), heads)
            loss = weight_decay_loss(trainable, decay_rate)
            if outputs.class_outputs is not None and outputs.box_outputs is not None:
                logits, boxes = flatten_predictions(outputs.class_outputs, outputs.box_outputs, num_classes)
                terms = detection_loss(
                    logits,
                    boxes,
                    batch["cls_targets"],
                    batch["box_targets"],
                    config.loss,
                    anchors=anchors,
                    normaliser=normaliser,
                )
                loss += terms.total
                cls_loss, box_loss = terms.cls_loss, terms.box_loss
            if outputs.seg_logits is not None:
                seg_loss = segmentation_loss(outputs.seg_logits, batch["seg_labels"])
                loss += seg_loss
            scaled = loss / replicas
            if mixed:
                scaled = optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, trainable)
        optimizer.apply_gradients(zip(grads, trainable, strict=True))
        return loss, cls_loss, box_loss, seg_loss

    inputs = ("images", "cls_targets", "box_targets", "seg_labels")

    @tf.function
    def train_step(batch: dict[str, tf.Tensor]) -> list[tf.Tensor]:
        used = {key: value for key, value in batch.items() if key in inputs}
        outputs = strategy.run(replica_step, args=(used,))
        state.ema.update()
        state.step.assign_add(1)
        return [strategy.reduce(tf.distribute.ReduceOp.MEAN, o, axis=None) for o in outputs]

    return train_step


def _training_batches(
    train_files: str | Sequence[str],
    config: Config,
    options: TrainOptions,
    start: int,
    strategy: tf.distribute.Strategy,
) -> Iterator[dict[str, tf.Tensor]]:
    """The endless augmented batches, shuffled by a seed that moves with the start step (a resume sees new order)."""
    dataset = build_dataset(train_files, config, options.batch_size, training=True, seed=options.seed + start)
    if strategy.num_replicas_in_sync > 1:
        dataset = strategy.experimental_distribute_dataset(dataset)
    return iter(dataset)


def _train_loop(
    train_step: TrainStep,
    batches: Iterator[dict[str, tf.Tensor]],
    *,
    state: _TrainState,
    plan: _Plan,
    manager: tf.train.CheckpointManager,
    reporter: _Reporter,
    evaluator: _BestKeeper | None,
    config: Config,
    options: TrainOptions,
    start: int,
    interrupted: Callable[[], Status | None],
    checkpointed: Callable[[int], None],
) -> _LoopEnd:
    """Step until the total or an interruption (a cancel, a request to finish, the time budget); report,
    checkpoint and evaluate on their intervals.

    Every exit leaves a checkpoint of the step reached; a NaN or infinite loss raises TrainingDivergedError.
    """
    status: Status = "completed"
    current, last_loss, last_saved = start, None, start if manager.latest_checkpoint else -1
    while current < plan.total:
        interruption = interrupted()
        if interruption is not None:
            status = interruption
            break
        losses = tuple(float(t) for t in train_step(next(batches)))
        current = int(state.step.numpy())
        if not all(math.isfinite(x) for x in losses):
            raise _diverged(losses[0], current, config, plan, options, last_saved)
        last_loss = losses[0]
        if current == start + 1:
            reporter.started(current)
        reporter.step(current, losses, float(plan.schedule(current - 1)))
        if current % options.checkpoint_every == 0:
            manager.save(checkpoint_number=current)
            last_saved = current
            checkpointed(current)
        if evaluator is not None and options.eval_every and current % options.eval_every == 0:
            evaluator.evaluate(current)
    if last_saved != current:
        manager.save(checkpoint_number=current)
        checkpointed(current)
    return _LoopEnd(status=status, step=current, last_loss=last_loss)


def _interruption(
    should_stop: Callable[[], bool] | None,
    should_finish: Callable[[], bool] | None,
    max_train_seconds: float | None,
    began: float,
) -> Status | None:
    """Why the loop must stop before its next step, if it must: a cancel, a request to finish now, or the
    wall-clock budget spent."""
    if should_stop is not None and should_stop():
        return "cancelled"
    if should_finish is not None and should_finish():
        return "stopped"
    if max_train_seconds is not None and time.monotonic() - began > max_train_seconds:
        return "time_budget"
    return None


def _diverged(
    loss: float, step: int, config: Config, plan: _Plan, options: TrainOptions, last_saved: int
) -> TrainingDivergedError:
    """The error for a loss that is no longer finite: what to change, and where the run can resume."""
    return TrainingDivergedError(
        f"the loss became {loss} at step {step}: lower learning_rate "
        f"(now {config.train.learning_rate}, scaled to {plan.schedule.settings.base_lr:.4g} "
        f"for batch {options.batch_size}) "
        "or raise lr_warmup_epoch; "
        f"the run can resume from its last checkpoint (step {max(last_saved, 0)})"
    )


def _save_final_weights(
    model: keras.Model,
    ema: WeightAverage,
    config: Config,
    train_files: str | Sequence[str],
    batch_size: int,
    calibration_batches: int,
    run_dir: Path,
) -> None:
    """Write the shareable weights: raw and averaged variables, BN statistics recomputed for the averages."""
    raw = ckpt.named_weights(model, ema.averaged())
    if calibration_batches:
        data = build_dataset(train_files, config, batch_size, training=False, repeat=True)
        with ema.applied():
            used = recalibrate(model, (b["images"] for b in data.take(calibration_batches)))
            stats = {v.path: tf.convert_to_tensor(v) for v in model.non_trainable_variables if "moving_" in v.path}
        raw.update(stats)
        log.info("batch-norm statistics recomputed for the averaged weights on %d batches", used)
    ckpt.save_named_weights(raw, run_dir / WEIGHTS_DIR / WEIGHTS_PREFIX)


class _BestKeeper:
    """Evaluates the averaged weights during training and keeps the best by AP in run_dir/best."""

    def __init__(
        self,
        run_dir: Path,
        model: keras.Model,
        config: Config,
        ema: WeightAverage,
        train_files: str | Sequence[str],
        val_files: str | Sequence[str] | None,
        ground_truth: Path | dict[str, object] | None,
        options: TrainOptions,
    ) -> None:
        if val_files is None or ground_truth is None:
            raise ValueError("eval_every needs val_files and the val ground truth (val_annotations.json)")
        self.run_dir, self.model, self.config, self.ema = run_dir, model, config, ema
        self.train_files, self.val_files, self.ground_truth = train_files, val_files, ground_truth
        self.batch_size, self.calibration_batches = options.batch_size, options.bn_recalibration_batches
        best = run_dir / BEST_DIR / METRICS_FILE
        self.best_ap: float | None = json.loads(best.read_text())["ap"] if best.exists() else None

    def evaluate(self, step: int) -> None:
        from effdet.evaluate import evaluate_model

        with self.ema.applied(), statistics_kept(self.model):
            data = build_dataset(self.train_files, self.config, self.batch_size, training=False, repeat=True)
            recalibrate(self.model, (b["images"] for b in data.take(self.calibration_batches)))
            metrics = evaluate_model(self.model, self.config, self.val_files, self.ground_truth)
            ap = metrics.ap or 0.0
            log.info("step %d: val AP %.4f AP50 %.4f", step, ap, metrics.ap50 or 0.0)
            if self.best_ap is None or ap > self.best_ap:
                self.best_ap = ap
                folder = self.run_dir / BEST_DIR
                ckpt.save_named_weights(ckpt.named_weights(self.model), folder / WEIGHTS_PREFIX)
                (folder / METRICS_FILE).write_text(json.dumps({"step": step, **metrics.model_dump()}))
