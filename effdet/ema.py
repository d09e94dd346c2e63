"""Exponential moving average of model weights, used for evaluation and export.

shadow <- decay * shadow + (1 - decay) * weight after every step, with automl's dynamic decay
min(decay, (1 + n) / (10 + n)): with a fixed 0.9998 a 500-step fine-tune would still be 90 % the starting
weights. Keras' optimizer EMA has no such warm-up, so this small trackable module does it; its shadow
variables are saved in the training checkpoint and restored exactly on resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import keras
import tensorflow as tf


class _Untracked:
    """Holds the averaged variables without making them checkpoint dependencies of the average."""

    def __init__(self, variables: Sequence[keras.Variable]) -> None:
        self.variables = list(variables)


class WeightAverage(tf.Module):
    """Shadow copies of `variables`, updated by `update()`; in a checkpoint they sit under
    `shadows/<variable path>`, so they can be read back without building the model."""

    def __init__(self, variables: Sequence[keras.Variable], decay: float) -> None:
        super().__init__(name="ema")
        self.decay = decay
        self._refs = _Untracked(variables)
        self.paths = [v.path for v in variables]
        self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_updates")
        self.shadows = {
            v.path: tf.Variable(tf.convert_to_tensor(v), trainable=False, name=f"shadow_{i}")
            for i, v in enumerate(variables)
        }

    @property
    def _targets(self) -> list[keras.Variable]:
        return self._refs.variables

    def _pairs(self) -> list[tuple[tf.Variable, keras.Variable]]:
        return [(self.shadows[path], variable) for path, variable in zip(self.paths, self._targets, strict=True)]

    def update(self) -> None:
        """Move every shadow towards its weight (graph-safe; call inside the training step)."""
        self.num_updates.assign_add(1)
        count = tf.cast(self.num_updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + count) / (10.0 + count))
        for shadow, variable in self._pairs():
            value = tf.cast(tf.convert_to_tensor(variable), shadow.dtype)
            shadow.assign(decay * shadow + (1.0 - decay) * value)

    def averaged(self) -> dict[str, tf.Tensor]:
        """Variable path -> averaged value."""
        return {path: tf.convert_to_tensor(self.shadows[path]) for path in self.paths}

    def copy_to_model(self) -> None:
        """Overwrite the model's weights with the averages (for export; training should be over)."""
        for shadow, variable in self._pairs():
            variable.assign(tf.cast(shadow, variable.dtype))

    def reset_to_model(self) -> None:
        """Start the averages from the model's current weights (after loading pretrained weights)."""
        for shadow, variable in self._pairs():
            shadow.assign(tf.cast(variable, shadow.dtype))

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Swap the averages in for the duration of the block (evaluation during training)."""
        saved = [tf.identity(tf.convert_to_tensor(v)) for v in self._targets]
        self.copy_to_model()
        try:
            yield
        finally:
            for value, variable in zip(saved, self._targets, strict=True):
                variable.assign(value)
