"""Recomputing batch-norm statistics for final weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from effdet.precise_bn import recalibrate, statistics_kept


def _model() -> keras.Model:
    inputs = keras.Input([4])
    outputs = keras.layers.BatchNormalization(momentum=0.99, name="bn")(keras.layers.Dense(3, name="dense")(inputs))
    return keras.Model(inputs, outputs)


def test_moving_statistics_become_the_average_of_batch_statistics() -> None:
    model = _model()
    batches = [tf.random.stateless_normal([16, 4], seed=[i, 0]) * (i + 1) for i in range(4)]
    features = [model.get_layer("dense")(b) for b in batches]
    expected_mean = np.mean([tf.reduce_mean(f, 0).numpy() for f in features], axis=0)
    expected_var = np.mean([tf.math.reduce_variance(f, 0).numpy() for f in features], axis=0)
    assert recalibrate(model, batches) == 4
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), expected_var, rtol=1e-5)
    assert bn.momentum == pytest.approx(0.99)


def test_no_batches_and_kept_statistics_leave_the_model_unchanged() -> None:
    model = _model()
    bn = model.get_layer("bn")
    assert recalibrate(model, []) == 0
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(3))
    with statistics_kept(model):
        recalibrate(model, [tf.random.stateless_normal([8, 4], seed=[1, 1]) * 5])
        assert not np.allclose(bn.moving_variance.numpy(), 1.0)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(3))
