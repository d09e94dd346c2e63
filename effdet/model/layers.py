"""Small building blocks shared by the backbone, BiFPN and heads: activations, batch norm, depthwise conv,
drop-connect (stochastic depth)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from effdet.model.depthwise import depthwise_conv2d

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


_SWISH = ("swish", "silu", "swish_native")


def activation(x: tf.Tensor, act_type: str, training: bool = False) -> tf.Tensor:
    """Apply the activation named by automl's `act_type`; a training swish on a CPU takes its gradient in one
    fused pass (see `swish_for_training`)."""
    if training and act_type in _SWISH and not tf.config.list_logical_devices("GPU"):
        return swish_for_training(x)
    return _ACTIVATIONS[act_type](x)


@tf.function(jit_compile=True)
def _swish_gradient(x: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
    """upstream * d/dx [x * sigmoid(x)] = upstream * s * (1 + x * (1 - s)) with s = sigmoid(x), compiled by XLA
    into one elementwise loop."""
    sigmoid = tf.sigmoid(x)
    return upstream * sigmoid * (1.0 + x * (1.0 - sigmoid))


@tf.custom_gradient
def swish_for_training(x: tf.Tensor) -> tuple[tf.Tensor, Any]:
    """x * sigmoid(x) whose gradient is one XLA-fused pass over x and the upstream gradient.

    TensorFlow's own gradient of silu runs Sigmoid again and then about five elementwise ops, each a full pass
    over a feature map: a sixth of a D0 training step on a CPU. The forward pass is TensorFlow's (oneDNN's fused
    swish).
    """
    return tf.nn.silu(x), lambda upstream: _swish_gradient(x, upstream)


class Composite(keras.layers.Layer):
    """A layer made only of sub-layers, which build themselves when first called.

    Without a build() of its own, Keras 3 builds such a layer by first running call() on symbolic inputs, and
    each nested composite does so again inside its parent's run: D0 was traced about five times over before
    its first real forward pass. Marking it built lets the first real call build the sub-layers instead.
    """

    def build(self, input_shape: Any) -> None:
        self.built = True


class FusedBatchNorm(keras.layers.BatchNormalization):
    """Keras batch norm computed by TensorFlow's fused kernel (one op instead of about ten).

    Keras 3 composes batch norm from elementwise ops; with about 100 BN layers on large feature maps that
    made a D0 training step several times slower on a CPU than the TF1 code it replaces. Variables, names,
    momentum and the moving-statistics update are Keras' own; only the arithmetic is fused.
    """

    def call(self, inputs: tf.Tensor, training: bool | None = None, mask: tf.Tensor | None = None) -> tf.Tensor:
        if mask is not None or len(inputs.shape) != 4 or self.axis not in (-1, 3):
            return super().call(inputs, training=training, mask=mask)
        gamma = tf.convert_to_tensor(self.gamma)
        beta = tf.convert_to_tensor(self.beta)
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True
            )
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                moving.assign(moving * self.momentum + tf.cast(batch, moving.dtype) * (1.0 - self.momentum))
            return outputs
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            gamma,
            beta,
            mean=tf.convert_to_tensor(self.moving_mean),
            variance=tf.convert_to_tensor(self.moving_variance),
            epsilon=self.epsilon,
            is_training=False,
        )
        return outputs


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    """Batch norm with automl's momentum/epsilon; `name` is the official scope (e.g. 'tpu_batch_normalization')."""
    return FusedBatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


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

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        kernel = tf.cast(tf.convert_to_tensor(self.depthwise_kernel), x.dtype)
        return depthwise_conv2d(x, kernel, self.strides, training=training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides}
