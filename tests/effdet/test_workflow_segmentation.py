"""resolve_config with a segmentation head: only on a dataset whose training images have masks."""

import pytest

from effdet.config import ConfigError
from effdet.data.class_maps import SegmentationSummary
from effdet.data.convert import ConversionReport
from effdet.workflow import resolve_config
from tests.helpers.reports import one_class_report


def _masked(train_images: int) -> ConversionReport:
    """The one-class report with class maps on train_images of its training images."""
    summary = SegmentationSummary(
        images={"train": train_images, "val": 0}, class_shares={"background": 0.9, "raccoon": 0.1}, ignore_share=0.0
    )
    return one_class_report().model_copy(update={"segmentation": summary})


@pytest.mark.parametrize("heads", [["object_detection", "segmentation"], ["segmentation"]])
def test_segmentation_heads_train_on_a_dataset_with_masks(heads: list[str]) -> None:
    config = resolve_config("efficientdet-d0", _masked(9), {"heads": heads})
    assert config.model.heads == heads
    assert config.model.seg_num_classes == 2  # background and raccoon


def test_segmentation_is_refused_without_masks_in_train() -> None:
    for report in (one_class_report(), _masked(0)):
        with pytest.raises(ConfigError, match="the dataset has no masks in its train split; upload COCO segmentation"):
            resolve_config("efficientdet-d0", report, {"heads": ["segmentation"]})
    assert resolve_config("efficientdet-d0", one_class_report(), None).model.heads == ["object_detection"]


def test_too_few_segmentation_classes_are_refused() -> None:
    with pytest.raises(ConfigError, match="seg_num_classes 1 is below the dataset's 2 mask classes"):
        resolve_config("efficientdet-d0", _masked(9), {"heads": ["segmentation"], "seg_num_classes": 1})
    wider = resolve_config("efficientdet-d0", _masked(9), {"heads": ["segmentation"], "seg_num_classes": 4})
    assert wider.model.seg_num_classes == 4


def test_records_given_without_a_report_may_train_segmentation() -> None:
    assert resolve_config("efficientdet-d0", None, {"heads": ["segmentation"]}).model.heads == ["segmentation"]
