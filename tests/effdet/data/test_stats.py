"""Dataset statistics, with exact values on hand-made records."""

from pathlib import Path

import numpy as np
import pytest

from effdet.data.records import Box, Record
from effdet.data.stats import SizeCount, box_shapes, compute_stats


def _record(filename: str, boxes: list[tuple[str, float, float, float, float]], size: tuple[int, int] | None) -> Record:
    width, height = size if size else (None, None)
    return Record(
        image_path=Path("/data") / filename,
        filename=filename,
        annotation_file=f"{filename}.xml",
        width=width,
        height=height,
        boxes=[Box(label=label, xmin=x0, ymin=y0, xmax=x1, ymax=y1) for label, x0, y0, x1, y1 in boxes],
    )


@pytest.fixture
def records() -> list[Record]:
    return [
        _record("a.jpg", [("cat", 0, 0, 10, 10), ("dog", 0, 0, 40, 40)], (100, 100)),  # areas 100, 1600
        _record("b.jpg", [("cat", 10, 10, 110, 110), ("cat", 0, 0, 32, 32)], (50, 50)),  # 10000, 1024: real size below
        _record("c.jpg", [], (100, 100)),
        _record("d.jpg", [("dog", 0, 0, 20, 10)], None),  # area 200, size unknown
    ]


REAL_SIZES = {"b.jpg": (200, 100)}


def test_counts_per_class_and_per_image(records: list[Record]) -> None:
    stats = compute_stats(records, REAL_SIZES)
    assert (stats.num_images, stats.num_boxes) == (4, 5)
    assert stats.class_counts == {"cat": 3, "dog": 2}
    assert stats.images_per_class == {"cat": 2, "dog": 2}
    assert stats.boxes_per_image == {0: 1, 1: 1, 2: 2}
    assert stats.max_boxes_per_image == 2


def test_coco_size_classes_use_area_thresholds_32_and_96_squared(records: list[Record]) -> None:
    sizes = compute_stats(records, REAL_SIZES).coco_sizes
    # 100 and 200 are small; 1024 (exactly 32**2) and 1600 are medium; 10000 (above 96**2 = 9216) is large.
    assert (sizes.small, sizes.medium, sizes.large) == (2, 2, 1)


def test_image_sizes_prefer_the_real_size_and_count_unknown_ones(records: list[Record]) -> None:
    image_sizes = compute_stats(records, REAL_SIZES).image_sizes
    assert image_sizes.unknown == 1
    assert image_sizes.width is not None
    assert image_sizes.height is not None
    assert (image_sizes.width.min, image_sizes.width.median, image_sizes.width.max) == (100, 100, 200)
    assert (image_sizes.height.min, image_sizes.height.median, image_sizes.height.max) == (100, 100, 100)
    assert image_sizes.most_common == [
        SizeCount(width=100, height=100, count=2),
        SizeCount(width=200, height=100, count=1),
    ]
    declared = compute_stats(records).image_sizes
    assert declared.most_common[0] == SizeCount(width=100, height=100, count=2)
    assert SizeCount(width=50, height=50, count=1) in declared.most_common


def test_box_distributions_summarise_pixels_and_aspect(records: list[Record]) -> None:
    boxes = compute_stats(records, REAL_SIZES).boxes
    assert boxes is not None
    assert boxes.aspect is not None
    width = boxes.width.summary
    assert (width.min, width.median, width.max, width.mean) == (10, 32, 100, pytest.approx(40.4))
    assert (boxes.area.summary.min, boxes.area.summary.max) == (100, 10000)
    assert (boxes.aspect.summary.min, boxes.aspect.summary.median, boxes.aspect.summary.max) == (1, 1, 2)
    for distribution in (boxes.width, boxes.height, boxes.area, boxes.aspect):
        assert sum(distribution.histogram.counts) == 5
        assert len(distribution.histogram.edges) == len(distribution.histogram.counts) + 1
    assert (boxes.area.histogram.edges[0], boxes.area.histogram.edges[-1]) == (100, 10000)
    assert np.allclose(np.diff(np.log(boxes.area.histogram.edges)), np.log(10) / 5)  # log-spaced bins


def test_relative_sizes_only_count_boxes_of_images_of_known_size(records: list[Record]) -> None:
    relative = compute_stats(records, REAL_SIZES).relative_boxes
    assert relative is not None
    assert sum(relative.width.histogram.counts) == 4
    # Widths 10/100, 40/100, 100/200, 32/200.
    assert (relative.width.summary.min, relative.width.summary.max) == (pytest.approx(0.1), pytest.approx(0.5))
    assert relative.height.summary.max == pytest.approx(1.0)  # 100 / 100 in b.jpg


def test_stats_of_a_dataset_without_boxes() -> None:
    stats = compute_stats([_record("a.jpg", [], (64, 48))])
    assert (stats.num_images, stats.num_boxes, stats.max_boxes_per_image) == (1, 0, 0)
    assert stats.boxes is None
    assert stats.relative_boxes is None
    assert stats.boxes_per_image == {0: 1}
    assert (stats.coco_sizes.small, stats.coco_sizes.medium, stats.coco_sizes.large) == (0, 0, 0)


def test_box_shapes_pair_each_box_with_its_image_size(records: list[Record]) -> None:
    boxes_wh, images_wh = box_shapes(records, REAL_SIZES)
    np.testing.assert_array_equal(boxes_wh, [[10, 10], [40, 40], [100, 100], [32, 32]])
    np.testing.assert_array_equal(images_wh, [[100, 100], [100, 100], [200, 100], [200, 100]])


def test_boxes_at_each_variants_input_size_scale_with_their_whole_image() -> None:
    # a 3720 x 2472 photo with a 300 x 80 plate: 80 * 320 / 3720 = 6.9 px at Lite0's 320, 80 * 640 / 3720 = 13.8 px
    # at D1's 640 and 80 * 1024 / 3720 = 22.0 px at D4's 1024; the 1000 px tall box stays over 32 px everywhere
    photo = _record("p.jpg", [("plate", 0, 0, 300, 80), ("car", 0, 0, 1500, 1000)], (3720, 2472))
    sizes = compute_stats([photo]).input_sizes
    assert sizes is not None
    by_model = {name: (c.under_16, c.from_16_to_32, c.over_32) for name, c in sizes.by_model.items()}
    assert by_model["efficientdet-lite0"] == (1, 0, 1)
    assert by_model["efficientdet-d1"] == (1, 0, 1)
    assert by_model["efficientdet-d4"] == (0, 1, 1)
    assert len(by_model) == 14
    assert compute_stats([_record("c.jpg", [], (100, 100))]).input_sizes is None
