"""Fixtures shared by the training, evaluation and export tests: a tiny converted dataset and config."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from effdet.config import Config, get_config
from effdet.data.convert import convert_dataset
from effdet.data.synthetic import write_dataset
from effdet.model import build_model
from tests.cheap import CHEAP


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 synthetic licence-plate images converted to automl TFRecords (train-*, val-*, val_annotations.json)."""
    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root / "raw", 16, "voc", seed=5)
    convert_dataset(root / "raw", root / "records", val_fraction=0.25, workers=1)
    return root / "records"


@pytest.fixture
def tiny_config() -> Config:
    """EfficientDet-D0 at the smallest valid input (128) for one class, without jitter, with one BiFPN cell and one
    head repeat (every code path of D0, a quarter less work per step)."""
    hparams = {**CHEAP, "image_size": 128, "num_classes": 1, "jitter_min": 0.9, "jitter_max": 1.1}
    return get_config("efficientdet-d0", hparams)


def _std(outputs: list[tf.Tensor]) -> float:
    return float(tf.math.reduce_std(tf.concat([tf.reshape(o, [-1]) for o in outputs], axis=0)))


@pytest.fixture(scope="session")
def make_lively_model() -> Callable[[Config, tf.Tensor], Any]:
    """Build an untrained model whose detections differ from anchor to anchor on the given kind of images.

    A fresh model's activations fade through its untrained batch norms, so every score is the prior and ties
    make comparisons arbitrary. Here each batch norm takes its statistics from `images` (float32 [n, H, W, 3],
    normalised network inputs), and the head outputs are scaled to class logits of std 2 and box codes of
    std 0.1 on them: scores spread over (0, 1) and boxes stay near their anchors.
    """

    def make(config: Config, images: tf.Tensor) -> Any:
        model = build_model(config)
        norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
        momenta = [layer.momentum for layer in norms]
        for layer in norms:
            layer.momentum = 0.0
        model(images, training=True)
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
        class_outputs, box_outputs = model(images, training=False)
        spreads = {"class_net/class-predict": 2.0 / _std(class_outputs), "box_net/box-predict": 0.1 / _std(box_outputs)}
        for variable in model.variables:
            for head, factor in spreads.items():
                if variable.path == f"{head}/pointwise_kernel":
                    variable.assign(variable.numpy() * factor)
                if variable.path == f"{head}/bias":
                    variable.assign(np.zeros(variable.shape, np.float32))
        return model

    return make
