"""Parameter counts of every variant against the paper (table 2), COCO's 90 classes."""

import pytest

from effdet.config import get_config
from effdet.model import build_model, count_params

PAPER_MILLIONS = {
    "efficientdet-d0": 3.9,
    "efficientdet-d1": 6.6,
    "efficientdet-d2": 8.1,
    "efficientdet-d3": 12.0,
    "efficientdet-d4": 20.7,
    "efficientdet-d5": 33.7,
    "efficientdet-d6": 51.9,
    "efficientdet-d7": 51.9,
    "efficientdet-d7x": 77.0,
}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "millions"), PAPER_MILLIONS.items())
def test_params_within_one_and_a_half_percent_of_paper(name: str, millions: float) -> None:
    params = count_params(build_model(get_config(name)))
    assert abs(params / (millions * 1e6) - 1) <= 0.015, f"{name}: {params}"


# google/automl's efficientdet README (mobile-size lite models table), COCO's 90 classes.
README_LITE_MILLIONS = {
    "efficientdet-lite0": 3.2,
    "efficientdet-lite1": 4.2,
    "efficientdet-lite2": 5.3,
    "efficientdet-lite3": 8.4,
    "efficientdet-lite4": 15.1,
}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "millions"), README_LITE_MILLIONS.items())
def test_lite_params_within_two_percent_of_automl_readme(name: str, millions: float) -> None:
    params = count_params(build_model(get_config(name)))
    assert abs(params / (millions * 1e6) - 1) <= 0.02, f"{name}: {params}"
