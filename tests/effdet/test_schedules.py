"""Learning-rate schedule: warm-up, each decay, batch scaling."""

import pytest

from effdet.config import TrainConfig
from effdet.schedules import WarmupDecay, schedule_settings


def _lr(schedule: WarmupDecay, step: int) -> float:
    return float(schedule(step))


def _schedule(method: str, **overrides: float) -> WarmupDecay:
    train = TrainConfig(
        lr_decay_method=method,  # type: ignore[arg-type]
        learning_rate=0.64,
        lr_warmup_init=0.01,
        lr_warmup_epoch=1.0,
        first_lr_drop_epoch=5.0,
        second_lr_drop_epoch=8.0,
        **overrides,
    )
    return WarmupDecay(schedule_settings(train, batch_size=8, steps_per_epoch=10, total_steps=100))


def test_rate_is_scaled_by_batch_over_64() -> None:
    assert _schedule("constant").settings.base_lr == pytest.approx(0.64 * 8 / 64)


def test_warm_up_is_linear_from_init_to_base() -> None:
    schedule = _schedule("cosine")
    assert _lr(schedule, 0) == pytest.approx(0.01)
    assert _lr(schedule, 5) == pytest.approx(0.01 + (0.08 - 0.01) * 0.5)
    assert _lr(schedule, 10) == pytest.approx(0.08)


def test_cosine_halves_midway_and_ends_at_zero() -> None:
    schedule = _schedule("cosine")
    assert _lr(schedule, 55) == pytest.approx(0.04, rel=1e-5)
    assert _lr(schedule, 100) == pytest.approx(0.0, abs=1e-7)


def test_stepwise_drops_tenfold_twice() -> None:
    schedule = _schedule("stepwise")
    assert [_lr(schedule, s) for s in (20, 50, 79, 80, 99)] == pytest.approx([0.08, 0.008, 0.008, 0.0008, 0.0008])


def test_polynomial_and_constant() -> None:
    poly = _schedule("polynomial", poly_lr_power=2.0)
    assert _lr(poly, 55) == pytest.approx(0.08 * 0.25, rel=1e-5)
    assert _lr(_schedule("constant"), 99) == pytest.approx(0.08)


def test_schedule_survives_keras_serialisation() -> None:
    schedule = _schedule("cosine")
    again = WarmupDecay.from_config(schedule.get_config())
    assert _lr(again, 37) == pytest.approx(_lr(schedule, 37))
