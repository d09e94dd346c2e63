"""Fixtures shared by the training, evaluation and export tests: a tiny converted dataset and config."""

from pathlib import Path

import pytest

from effdet.config import Config, get_config
from effdet.data.convert import convert_dataset
from effdet.data.synthetic import write_dataset


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 synthetic licence-plate images converted to automl TFRecords (train-*, val-*, val_annotations.json)."""
    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root / "raw", 16, "voc", seed=5)
    convert_dataset(root / "raw", root / "records", val_fraction=0.25, workers=1)
    return root / "records"


@pytest.fixture
def tiny_config() -> Config:
    """EfficientDet-D0 at the smallest valid input (128) for one class, without jitter."""
    return get_config("efficientdet-d0", {"image_size": 128, "num_classes": 1, "jitter_min": 0.9, "jitter_max": 1.1})
