"""Tile windows and the training crops cut from them: coverage, overlap, clipped boxes, empty tiles."""

import io
import itertools

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from effdet.config import get_config
from effdet.data.tiles import crop_boxes, tile_examples, tile_windows


def settings(**hparams: object):  # type: ignore[no-untyped-def]
    return get_config("efficientdet-lite0", hparams).input


def test_windows_cover_the_image_with_the_asked_overlap() -> None:
    windows = tile_windows(1600, 2400, settings(tiles=640, tile_overlap=0.25)).numpy()
    assert windows[0].tolist() == [0, 0, 1600, 2400]
    tiles = windows[1:]
    assert {(y1 - y0, x1 - x0) for y0, x0, y1, x1 in tiles} == {(640, 640)}
    assert tiles[:, 2].max() == 1600
    assert tiles[:, 3].max() == 2400
    assert tiles[:, :2].min() == 0
    xs = sorted(set(tiles[:, 1].tolist()))
    assert all(640 - (b - a) >= 160 for a, b in itertools.pairwise(xs))


def test_a_grid_gives_columns_by_rows_tiles() -> None:
    windows = tile_windows(1000, 3000, settings(tiles="3x2", tile_overlap=0.2)).numpy()
    assert len(windows) == 1 + 6
    assert windows[1:, 3].max() == 3000
    assert windows[1:, 2].max() == 1000


def test_an_image_within_one_tile_is_only_the_whole_image() -> None:
    assert tile_windows(300, 500, settings(tiles=640)).numpy().tolist() == [[0, 0, 300, 500]]
    assert tile_windows(300, 500, settings()).numpy().tolist() == [[0, 0, 300, 500]]


def test_a_box_cut_by_a_border_stays_only_when_mostly_inside() -> None:
    boxes = tf.constant([[10.0, 600.0, 40.0, 700.0], [10.0, 620.0, 40.0, 650.0]])
    shifted, keep = crop_boxes(boxes, tf.constant([0, 0, 640, 640]))
    assert keep.numpy().tolist() == [False, True]
    np.testing.assert_allclose(shifted.numpy()[1], [10, 620, 40, 640])


def _example(width: int, height: int, boxes_px: list[list[float]]) -> dict[str, tf.Tensor]:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(buffer, format="PNG")
    scale = np.array([height, width, height, width], np.float32)
    return {
        "image": tf.constant(buffer.getvalue()),
        "boxes": tf.constant(np.array(boxes_px, np.float32).reshape(-1, 4) / scale),
        "classes": tf.constant([1] * len(boxes_px), tf.int64),
        "is_crowd": tf.constant([False] * len(boxes_px)),
        "source_id": tf.constant("7"),
    }


# 1000 x 600 in 512 px tiles with a quarter overlap: 3 columns x 2 rows; the box lies in both rows' first tile.
@pytest.mark.parametrize(("empty_ratio", "expected"), [(0.0, 1 + 2), (1.0, 1 + 6)])
def test_training_keeps_the_whole_image_tiles_with_boxes_and_a_share_of_empty_ones(
    empty_ratio: float, expected: int
) -> None:
    example = _example(1000, 600, [[100.0, 100.0, 130.0, 180.0]])
    split = tile_examples(settings(tiles=512, tile_overlap=0.25, tile_empty_ratio=empty_ratio), seed=3)
    tiles = list(split(example))
    assert len(tiles) == expected
    assert tiles[0]["image"].shape == (600, 1000, 3)
    with_box = [t for t in tiles[1:] if len(t["classes"])]
    assert len(with_box) == 2
    crop = with_box[0]
    height, width = crop["image"].shape[:2]
    np.testing.assert_allclose(crop["boxes"].numpy()[0] * [height, width, height, width], [100, 100, 130, 180])


@pytest.mark.parametrize("tiles", [640, "3x2"])
def test_auto_anchors_see_boxes_at_the_tiles_scale(tiles: int | str) -> None:
    from effdet.workflow import tiled_image_sizes

    config = settings(tiles=tiles)
    tiles_wh = {(int(x1 - x0), int(y1 - y0)) for y0, x0, y1, x1 in tile_windows(1600, 2400, config).numpy()[1:]}
    assert len(tiles_wh) == 1
    assert tiled_image_sizes(np.array([[2400.0, 1600.0]]), config).tolist() == [list(tiles_wh.pop())]
