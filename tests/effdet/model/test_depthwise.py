"""The depthwise convolution used in training gives TensorFlow's own output and gradients, whatever the kernel
size, stride and input shape."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from effdet.model.depthwise import depthwise_conv2d


def _gradients(x: tf.Tensor, kernel: tf.Tensor, strides: int, training: bool) -> list[np.ndarray]:
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = depthwise_conv2d(x, kernel, strides, training=training)
        loss = tf.reduce_sum(y * tf.random.stateless_normal(tf.shape(y), seed=[1, 2]))
    return [y.numpy(), *(g.numpy() for g in tape.gradient(loss, [x, kernel]))]


@pytest.mark.parametrize(
    ("height", "width", "kernel_size", "strides"),
    [(16, 16, 5, 1), (16, 16, 5, 2), (17, 12, 5, 2), (9, 14, 5, 1), (11, 11, 7, 2), (4, 4, 5, 1), (8, 8, 3, 2)],
)
def test_training_gradients_match_tensorflows(height: int, width: int, kernel_size: int, strides: int) -> None:
    x = tf.random.stateless_normal([2, height, width, 6], seed=[3, height])
    kernel = tf.random.stateless_normal([kernel_size, kernel_size, 6, 1], seed=[4, kernel_size])
    ours = _gradients(x, kernel, strides, training=True)
    reference = _gradients(x, kernel, strides, training=False)
    for got, want in zip(ours, reference, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_a_keras_layer_trains_through_it() -> None:
    """Inside a tf.function, as in the training step, the kernel variable gets the same gradient."""
    kernel = tf.Variable(tf.random.stateless_normal([5, 5, 4, 1], seed=[5, 6]))
    x = tf.random.stateless_normal([2, 12, 12, 4], seed=[7, 8])

    @tf.function
    def gradient(training: bool) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(depthwise_conv2d(x, tf.convert_to_tensor(kernel), 2, training=training)))
        return tape.gradient(loss, kernel)

    np.testing.assert_allclose(gradient(True).numpy(), gradient(False).numpy(), rtol=1e-5, atol=1e-4)
