"""The training swish (one XLA-fused gradient pass) gives TensorFlow's silu and its gradient."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from effdet.model.layers import activation, swish_for_training


def _value_and_gradient(fn: object, x: tf.Tensor, upstream: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)  # type: ignore[operator]
    return y.numpy(), tape.gradient(y, x, output_gradients=upstream).numpy()


def test_swish_for_training_matches_silu_and_its_gradient() -> None:
    x = tf.random.stateless_normal([2, 9, 7, 5], seed=[1, 2]) * 6.0  # well into both tails
    upstream = tf.random.stateless_normal(x.shape, seed=[3, 4])
    ours = _value_and_gradient(swish_for_training, x, upstream)
    reference = _value_and_gradient(tf.nn.silu, x, upstream)
    np.testing.assert_array_equal(ours[0], reference[0])
    np.testing.assert_allclose(ours[1], reference[1], rtol=1e-5, atol=1e-6)


def test_only_a_training_swish_takes_the_fused_gradient() -> None:
    """Inference and other activations keep TensorFlow's own ops (exports hold no custom gradient)."""
    x = tf.random.stateless_normal([1, 4, 4, 3], seed=[5, 6])

    def op_types(act_type: str, training: bool) -> set[str]:
        @tf.function
        def gradient() -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = activation(x, act_type, training)
            return tape.gradient(y, x)

        return {op.type for op in gradient.get_concrete_function().graph.get_operations()}

    assert "PartitionedCall" in op_types("swish", True)  # the call of the XLA-compiled gradient
    assert "PartitionedCall" not in op_types("swish", False)
    assert "PartitionedCall" not in op_types("relu6", True)
