"""Box sizes at the network input (aspect kept) and the input-size advice, in exact numbers."""

import numpy as np
import pytest

from effdet.data.input_size import (
    TABLE_SIZES,
    BoxSizeCounts,
    count_sizes,
    counts_at,
    describe_input_sizes,
    input_size_warning,
    shorter_sides,
    suggest_input_size,
)

# 3720 x 2472 photos (width x height): plates 300 x 80 px, and two large objects.
PHOTO = (3720.0, 2472.0)
BOXES = np.array([[300.0, 80.0]] * 8 + [[1500.0, 1000.0]] * 2)
IMAGES = np.array([PHOTO] * 10)


def test_shorter_side_scales_by_the_fit_of_the_whole_image() -> None:
    # at 320 x 320 the photo is scaled by min(320 / 2472, 320 / 3720) = 320 / 3720
    assert shorter_sides(BOXES[:1], IMAGES[:1], (320, 320)).tolist() == [pytest.approx(80 * 320 / 3720)]
    # at 'WxH' 640x384 (height 384, width 640): min(384 / 2472, 640 / 3720) = 384 / 2472
    assert shorter_sides(BOXES[:1], IMAGES[:1], (384, 640)).tolist() == [pytest.approx(80 * 384 / 2472)]


def test_count_sizes_splits_at_16_and_32_pixels() -> None:
    # plates: 80 * 320 / 3720 = 6.9 px; large: 1000 * 320 / 3720 = 86 px
    assert count_sizes(BOXES, IMAGES, 320) == BoxSizeCounts(image_size=320, under_16=8, from_16_to_32=0, over_32=2)
    # 80 * 768 / 3720 = 16.5 px
    assert count_sizes(BOXES, IMAGES, 768) == BoxSizeCounts(image_size=768, under_16=0, from_16_to_32=8, over_32=2)
    # 80 * 1536 / 3720 = 33.0 px
    assert count_sizes(BOXES, IMAGES, 1536).over_32 == 10


def test_more_than_a_tenth_under_16_px_is_too_many() -> None:
    assert not BoxSizeCounts(image_size=128, under_16=1, from_16_to_32=0, over_32=9).too_many_small
    assert BoxSizeCounts(image_size=128, under_16=2, from_16_to_32=0, over_32=9).too_many_small
    assert not BoxSizeCounts(image_size=128, under_16=0, from_16_to_32=0, over_32=0).too_many_small


def test_suggested_size_is_the_smallest_multiple_of_128_that_keeps_nine_tenths_at_16_px() -> None:
    report = describe_input_sizes(BOXES, IMAGES, {"efficientdet-lite0": 320, "efficientdet-d0": 512})
    assert report is not None
    assert [c.image_size for c in report.by_size] == list(TABLE_SIZES)
    assert report.by_model["efficientdet-lite0"].under_16 == 8
    # 744 px (80 * 744 / 3720 = 16) is the first size that works; 768 the first multiple of 128 at or above it
    assert count_sizes(BOXES, IMAGES, 736).under_16 == 8
    assert suggest_input_size(report) == 768
    assert suggest_input_size(report, max_level=8) == 768  # a multiple of 256 too
    assert suggest_input_size(report, max_level=8) % 256 == 0


def test_warning_names_the_share_and_the_size_that_fixes_it() -> None:
    report = describe_input_sizes(BOXES, IMAGES, {"efficientdet-lite0": 320})
    assert report is not None
    assert input_size_warning(report, (320, 320)) == (
        "80% of the boxes (8 of 10) are under 16 px on their shorter side at image_size 320, too small to detect "
        "well; image_size 768 brings that to 0% (hparams image_size: 768; a larger input costs memory and time), "
        "or train on tiles (hparams tiles: 640)"
    )
    assert input_size_warning(report, (768, 768)) is None
    assert counts_at(report, (384, 640)) == count_sizes(BOXES, IMAGES, 384)  # judged at the shorter side
    assert counts_at(report, (96, 96)) is None


def test_warning_suggests_tiles_when_no_size_is_enough() -> None:
    tiny = np.array([[100.0, 27.0]] * 10)  # 27 * 1536 / 3720 = 11 px even at the largest size
    report = describe_input_sizes(tiny, IMAGES, {})
    assert report is not None
    assert suggest_input_size(report) is None
    warning = input_size_warning(report, (640, 640))
    assert warning is not None
    assert warning.endswith(
        "no image_size up to 1536 brings that under 10%: train on tiles (hparams tiles: 640, a tile side in "
        "original pixels, or a grid such as '3x2')"
    )


def test_no_boxes_no_report() -> None:
    assert describe_input_sizes(np.zeros((0, 2)), np.zeros((0, 2)), {"efficientdet-d0": 512}) is None


@pytest.mark.parametrize("size", [128, 320, 512, 1536])
def test_table_holds_every_variant_size(size: int) -> None:
    assert size in TABLE_SIZES
