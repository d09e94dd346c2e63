"""Learning-rate schedule: linear warm-up from lr_warmup_init, then cosine, stepwise, polynomial or constant.

As in automl, the base rate is scaled with the batch: learning_rate * batch_size / 64, so the default 0.08
(tuned for batch 64) becomes 0.01 at batch 8 instead of diverging. Steps are counted from 0.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
from pydantic import BaseModel, ConfigDict

from effdet.config import TrainConfig

REFERENCE_BATCH = 64


class ScheduleSettings(BaseModel):
    """Everything the schedule needs, in steps."""

    model_config = ConfigDict(frozen=True)

    method: str
    base_lr: float
    warmup_init: float
    warmup_steps: int
    total_steps: int
    first_drop_step: int
    second_drop_step: int
    poly_power: float


def schedule_settings(train: TrainConfig, batch_size: int, steps_per_epoch: int, total_steps: int) -> ScheduleSettings:
    """Turn epoch-based hyperparameters into step counts for a run."""
    base_lr = train.learning_rate * batch_size / REFERENCE_BATCH
    warmup = int(train.lr_warmup_epoch * steps_per_epoch)
    return ScheduleSettings(
        method=train.lr_decay_method,
        base_lr=base_lr,
        warmup_init=min(train.lr_warmup_init, base_lr),
        warmup_steps=min(warmup, max(total_steps - 1, 0)),
        total_steps=total_steps,
        first_drop_step=int(train.first_lr_drop_epoch * steps_per_epoch),
        second_drop_step=int(train.second_lr_drop_epoch * steps_per_epoch),
        poly_power=train.poly_lr_power,
    )


@keras.saving.register_keras_serializable(package="effdet")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate at a step; the position lives in the optimizer's iteration count, so it resumes."""

    def __init__(self, settings: ScheduleSettings) -> None:
        self.settings = settings

    def __call__(self, step: Any) -> tf.Tensor:
        s = self.settings
        step = tf.cast(step, tf.float32)
        warmup = float(max(s.warmup_steps, 1))
        warm = s.warmup_init + (s.base_lr - s.warmup_init) * step / warmup
        decay_span = float(max(s.total_steps - s.warmup_steps, 1))
        progress = tf.clip_by_value((step - s.warmup_steps) / decay_span, 0.0, 1.0)
        if s.method == "cosine":
            decayed = 0.5 * s.base_lr * (1.0 + tf.cos(math.pi * progress))
        elif s.method == "polynomial":
            decayed = s.base_lr * tf.pow(1.0 - progress, s.poly_power)
        elif s.method == "stepwise":
            factor = tf.where(step < s.first_drop_step, 1.0, tf.where(step < s.second_drop_step, 0.1, 0.01))
            decayed = s.base_lr * factor
        else:
            decayed = tf.constant(s.base_lr, tf.float32)
        return tf.where(step < s.warmup_steps, warm, decayed)

    def get_config(self) -> dict[str, Any]:
        return {"settings": self.settings.model_dump()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WarmupDecay:
        return cls(ScheduleSettings.model_validate(config["settings"]))
