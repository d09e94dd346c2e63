"""Weight averaging: automl's dynamic decay, temporary swapping."""

import keras
import numpy as np
import pytest

from effdet.ema import WeightAverage


def test_dynamic_decay_then_fixed_decay() -> None:
    weight = keras.Variable(np.zeros(2, np.float32), name="w")
    ema = WeightAverage([weight], decay=0.5)
    weight.assign(np.ones(2, np.float32))
    ema.update()  # decay = min(0.5, 2/11)
    first = 1.0 - 2 / 11
    assert ema.shadows[weight.path].numpy() == pytest.approx([first, first])
    ema.update()  # decay = min(0.5, 3/12) = 0.25
    second = 0.25 * first + 0.75
    assert ema.shadows[weight.path].numpy() == pytest.approx([second, second])
    for _ in range(30):
        ema.update()
    assert ema.shadows[weight.path].numpy() == pytest.approx([1.0, 1.0], abs=1e-6)


def test_applied_swaps_in_and_restores() -> None:
    weight = keras.Variable(np.full(3, 4.0, np.float32), name="w")
    ema = WeightAverage([weight], decay=0.9)
    weight.assign(np.full(3, 8.0, np.float32))
    with ema.applied():
        assert weight.numpy() == pytest.approx([4.0] * 3)
    assert weight.numpy() == pytest.approx([8.0] * 3)
    averaged = ema.averaged()
    assert list(averaged) == [weight.path]
    assert averaged[weight.path].numpy() == pytest.approx([4.0] * 3)
