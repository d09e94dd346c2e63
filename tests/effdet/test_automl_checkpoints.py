"""Checkpoints written by google/automl's own code load into our model with output parity: EfficientDet-Lite0
(3 classes, 128 px) saved by automl's TF1 graph code (with ExponentialMovingAverage shadows), by its Keras
`EfficientDetNet.save_weights`, and by its TF2 training loop (`emackpt-N` and `ckpt-N`, the moving averages as
the optimizer's `average` slots). The fixtures, their expected head outputs (automl's forward in its own TF 2.15
venv) and the script that regenerates them are in tests/reference/automl; see its README."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest

from effdet.checkpoint_fit import CheckpointFormat, fit_model, fit_variant, name_checkpoint
from effdet.checkpoint_index import find_prefix, read_contents
from effdet.checkpoints import load_pretrained
from effdet.config import get_config
from effdet.model.efficientdet import EfficientDet, build_model, split_outputs

FIXTURES = Path(__file__).parents[1] / "reference" / "automl" / "fixtures"
LEVELS = range(3, 8)
RELATIVE = 1e-4


def _unpacked(name: str, folder: Path) -> Path:
    """The fixture checkpoint folder `name` copied to folder with its data file decompressed."""
    target = folder / name
    target.mkdir(parents=True)
    for path in (FIXTURES / name).iterdir():
        if path.suffix == ".xz":
            (target / path.stem).write_bytes(lzma.decompress(path.read_bytes()))
        else:
            shutil.copy(path, target / path.name)
    return target


@pytest.fixture(scope="module")
def model() -> EfficientDet:
    """Our EfficientDet-Lite0 with automl's fixture settings."""
    return build_model(get_config("efficientdet-lite0", {"num_classes": 3, "image_size": 128}))


@pytest.mark.parametrize(
    ("checkpoint", "expected", "family", "averaged"),
    [
        ("tf1", "tf1_outputs", CheckpointFormat.TF1, 372 + 216),
        ("tf2_weights", "tf2_weights_outputs", CheckpointFormat.AUTOML_TF2, 0),
        ("tf2_train", "tf2_train_outputs", CheckpointFormat.AUTOML_TF2, 372),
        ("tf2_train_ckpt", "tf2_train_ckpt_average_outputs", CheckpointFormat.AUTOML_TF2, 372),
    ],
)
def test_automl_checkpoints_load_with_automl_head_outputs(
    model: EfficientDet, checkpoint: str, expected: str, family: CheckpointFormat, averaged: int, tmp_path: Path
) -> None:
    folder = _unpacked(checkpoint, tmp_path)
    prefix = find_prefix(folder)
    assert prefix is not None
    named = name_checkpoint(read_contents(prefix))
    assert named.format == family
    assert fit_variant(named, "efficientdet-lite0").fits
    report = load_pretrained(model, folder)
    assert (report.loaded, report.missing, report.shape_mismatch) == (len(model.variables), [], [])
    assert report.from_moving_average == averaged, "moving averages are preferred wherever the checkpoint has them"
    classes, boxes = model(np.load(FIXTURES / "input.npy"), training=False)
    reference = np.load(FIXTURES / f"{expected}.npz")
    for level, ours_class, ours_box in zip(LEVELS, classes, boxes, strict=True):
        for name, ours in ((f"class_{level}", ours_class), (f"box_{level}", ours_box)):
            theirs = reference[name]
            scale = float(np.abs(theirs).max())
            np.testing.assert_allclose(np.asarray(ours), theirs, rtol=RELATIVE, atol=RELATIVE * scale, err_msg=name)


def test_the_raw_weights_of_a_training_checkpoint_are_not_what_loads(model: EfficientDet, tmp_path: Path) -> None:
    """automl's own restore ignores the `average` slots of a ckpt-N; ours prefers them, so its outputs differ from
    automl's raw-weight outputs: the test above is not passing by accident."""
    load_pretrained(model, _unpacked("tf2_train_ckpt", tmp_path))
    classes, _ = model(np.load(FIXTURES / "input.npy"), training=False)
    raw = np.load(FIXTURES / "tf2_train_ckpt_outputs.npz")["class_3"]
    assert np.abs(np.asarray(classes[0]) - raw).max() > 0.1


def test_an_automl_segmentation_head_loads_with_automl_outputs(tmp_path: Path) -> None:
    """automl's Keras model with both heads (`heads: [object_detection, segmentation]`, seg_num_classes 3), saved by
    `save_weights`: its head's keys (`seg_head/con2d_ts/0/...`) map to our layers, and the segmentation logits at a
    quarter of the input match automl's along with the detection outputs."""
    heads = ["object_detection", "segmentation"]
    config = get_config("efficientdet-lite0", {"num_classes": 3, "image_size": 128, "heads": heads})
    model = build_model(config)
    folder = _unpacked("tf2_seg", tmp_path)
    prefix = find_prefix(folder)
    assert prefix is not None
    fit = fit_model(name_checkpoint(read_contents(prefix)), config.model)
    assert (fit.fits, fit.fresh, fit.reinitialised) == (True, [], [])
    report = load_pretrained(model, folder)
    assert (report.loaded, report.missing, report.shape_mismatch) == (len(model.variables), [], [])
    outputs = split_outputs(model(np.load(FIXTURES / "input.npy"), training=False), heads)
    assert outputs.class_outputs is not None
    assert outputs.box_outputs is not None
    ours = {"seg": outputs.seg_logits}
    for level, ours_class, ours_box in zip(LEVELS, outputs.class_outputs, outputs.box_outputs, strict=True):
        ours |= {f"class_{level}": ours_class, f"box_{level}": ours_box}
    reference = np.load(FIXTURES / "tf2_seg_outputs.npz")
    assert reference["seg"].shape == (1, 32, 32, 3)
    for name, value in ours.items():
        theirs = reference[name]
        scale = float(np.abs(theirs).max())
        np.testing.assert_allclose(np.asarray(value), theirs, rtol=RELATIVE, atol=RELATIVE * scale, err_msg=name)


def test_a_detection_checkpoint_leaves_the_segmentation_head_fresh(tmp_path: Path) -> None:
    """A COCO-style detection checkpoint fits a model with both heads: the segmentation head starts fresh."""
    config = get_config(
        "efficientdet-lite0", {"num_classes": 3, "image_size": 128, "heads": ["object_detection", "segmentation"]}
    )
    prefix = find_prefix(_unpacked("tf1", tmp_path))
    assert prefix is not None
    fit = fit_model(name_checkpoint(read_contents(prefix)), config.model)
    assert fit.fits
    assert all(p.startswith("segmentation_head/") for p in fit.fresh)
    assert len(fit.fresh) == 4 * 4 + 4  # bn_0..3 and the four upsampling kernels
    assert fit.reinitialised == [f"segmentation_head/conv2d_transpose_4/{v}" for v in ("kernel", "bias")]
