"""Small building blocks shared by the backbone, BiFPN and heads: activations, batch norm, depthwise conv,
drop-connect (stochastic depth)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

# automl's batch norm settings (TF1 defaults of tpu_batch_normalization).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3

_ACTIVATIONS = {
    "swish": tf.nn.silu,
    "silu": tf.nn.silu,
    "swish_native": tf.nn.silu,
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
    "hswish": lambda x: x * tf.nn.relu6(x + 3.0) / 6.0,
    "mish": lambda x: x * tf.math.tanh(tf.math.softplus(x)),
    "gelu": tf.nn.gelu,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
}


def activation(x: tf.Tensor, act_type: str) -> tf.Tensor:
    """Apply the activation named by automl's `act_type`."""
    return _ACTIVATIONS[act_type](x)


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    """Batch norm with automl's momentum/epsilon; `name` is the official scope (e.g. 'tpu_batch_normalization')."""
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv_kernel_initializer() -> keras.initializers.Initializer:
    """He-normal on fan-out, as the EfficientNet paper's convolutions."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def drop_connect(x: tf.Tensor, training: bool, survival_prob: float | None) -> tf.Tensor:
    """Stochastic depth: drop the whole residual branch per example with probability 1 - survival_prob.

    x: float [batch, height, width, channels]; scaled by 1/survival_prob when kept so the expectation holds.
    """
    if not training or not survival_prob or survival_prob >= 1.0:
        return x
    batch = tf.shape(x)[0]
    keep = tf.floor(survival_prob + tf.random.uniform([batch, 1, 1, 1], dtype=x.dtype))
    return x / survival_prob * keep


class DepthwiseConv(keras.layers.Layer):
    """3x3/5x5 depthwise convolution whose weight is named `depthwise_kernel`, as in the official checkpoints.

    (Keras 3's DepthwiseConv2D names it `kernel`, which would break checkpoint mapping and freeze regexes.)
    """

    def __init__(self, kernel_size: int, strides: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.strides = strides

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channels = int(input_shape[-1])  # type: ignore[arg-type]
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=(self.kernel_size, self.kernel_size, channels, 1),
            initializer=conv_kernel_initializer(),
        )

    def call(self, x: tf.Tensor) -> tf.Tensor:
        kernel = tf.cast(self.depthwise_kernel, x.dtype)
        return tf.nn.depthwise_conv2d(x, kernel, strides=[1, self.strides, self.strides, 1], padding="SAME")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides}
