"""GridMask: the grid's exact pattern, its turn, automl's draws, and its place in the training input."""

import numpy as np
import pytest
import tensorflow as tf

from effdet.config import get_config
from effdet.data.gridmask import Grid, draw_grid, grid_mask, keep_mask
from effdet.data.pipeline import AUGMENT_SEED, make_preprocess


def _grid(unit: int, stripe: int, offsets: tuple[int, int], angle: float = 0.0) -> Grid:
    return Grid(tf.constant(unit), tf.constant(stripe), tf.constant(offsets), tf.constant(angle))


def test_unturned_grid_blanks_squares_between_the_stripes() -> None:
    # A 10x10 image sits in the middle of a 15x15 grid square (2 cells in); stripes 3 wide every 5 cells from 0.
    got = keep_mask(tf.constant(10), tf.constant(10), _grid(5, 3, (0, 0))).numpy()
    kept_line = np.array([(i + 2) % 5 < 3 for i in range(10)])
    np.testing.assert_array_equal(got, kept_line[:, None] | kept_line[None, :])


def test_stripes_start_at_their_own_offset_along_each_axis() -> None:
    got = keep_mask(tf.constant(10), tf.constant(10), _grid(5, 3, (1, 4))).numpy()
    rows = np.array([(i + 2 - 1) % 5 < 3 and i + 2 >= 1 for i in range(10)])
    columns = np.array([(i + 2 - 4) % 5 < 3 and i + 2 >= 4 for i in range(10)])
    np.testing.assert_array_equal(got, rows[:, None] | columns[None, :])


@pytest.mark.parametrize("angle", [0.0, 0.3, -0.5])
def test_a_turned_grid_blanks_the_same_share(angle: float) -> None:
    got = keep_mask(tf.constant(400), tf.constant(400), _grid(40, 24, (3, 7), angle)).numpy()
    unturned = keep_mask(tf.constant(400), tf.constant(400), _grid(40, 24, (3, 7))).numpy()
    assert 1 - got.mean() == pytest.approx((16 / 40) ** 2, abs=0.02)
    assert (angle == 0.0) == bool(np.array_equal(got, unturned))


def test_draws_follow_automl_ranges() -> None:
    grids = [draw_grid(tf.constant(480), tf.constant(640), tf.constant([s, 1], tf.int64)) for s in range(40)]
    units = np.array([int(g.unit) for g in grids])
    assert units.min() >= 192  # [min(0.5 h, 0.3 w), max(0.5 h, 0.3 w)]
    assert units.max() <= 240
    for grid in grids:
        assert int(grid.stripe) == int(int(grid.unit) * 0.6 + 0.5)
        assert int(tf.reduce_min(grid.offsets)) >= 0
        assert int(tf.reduce_max(grid.offsets)) <= int(grid.unit)
    mean_degrees = np.mean([float(g.angle) for g in grids]) * 180 / np.pi
    assert mean_degrees == pytest.approx(-10.0, abs=5.0)  # 10 x N(-1, 1), as automl's code draws it


def test_same_seed_masks_alike_and_about_two_images_in_three_are_masked() -> None:
    image = tf.fill([60, 80, 3], tf.constant(200, tf.uint8))
    masked = []
    for s in range(200):
        seed = tf.constant([s, 3], tf.int64)
        first = grid_mask(image, seed).numpy()
        np.testing.assert_array_equal(first, grid_mask(image, seed).numpy())
        assert set(np.unique(first)) <= {0, 200}
        masked.append(bool((first == 0).any()))
    assert np.mean(masked) == pytest.approx(0.69, abs=0.08)  # a standard normal draw below 0.5


def _white_example(seed: int) -> dict[str, tf.Tensor]:
    return {
        "image": tf.fill([128, 128, 3], tf.constant(255, tf.uint8)),
        "boxes": tf.constant([[0.25, 0.25, 0.75, 0.75]]),
        "classes": tf.constant([1]),
        "is_crowd": tf.constant([False]),
        "source_id": tf.constant("1"),
        AUGMENT_SEED: tf.constant([seed, 0], tf.int64),
    }


@pytest.mark.parametrize("grid_mask_on", [False, True])
def test_training_input_is_grid_masked_only_when_asked(grid_mask_on: bool) -> None:
    hparams = {"image_size": 128, "num_classes": 1, "jitter_min": 1.0, "jitter_max": 1.0, "input_rand_hflip": False}
    config = get_config("efficientdet-d0", {**hparams, "mean_rgb": 0.0, "stddev_rgb": 1.0, "grid_mask": grid_mask_on})
    preprocess = make_preprocess(config, training=True)
    blanked, boxes = [], []
    for seed in range(6):
        out = preprocess(_white_example(seed))
        blanked.append(float(tf.reduce_mean(tf.cast(out["images"] == 0.0, tf.float32))))
        boxes.append(out["boxes"][0].numpy())
    for box in boxes:
        np.testing.assert_allclose(box, [32.0, 32.0, 96.0, 96.0])  # GridMask never moves a box
    if grid_mask_on:
        assert max(blanked) > 0.05
    else:
        assert max(blanked) == 0.0
    evaluation = make_preprocess(config, training=False)(_white_example(0))
    assert float(tf.reduce_min(evaluation["images"])) == 255.0  # evaluation is never masked
