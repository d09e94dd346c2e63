"""Checkpoints read without TensorFlow (effdet.checkpoint_index) and matched to variants (effdet.checkpoint_fit):
the names, shapes and moving averages of each family, and the variants a checkpoint fits."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from effdet.checkpoint_fit import CheckpointFormat, fit_variant, fitting_variants, name_checkpoint
from effdet.checkpoint_index import CheckpointIndexError, read_contents
from effdet.checkpoints import EMA_SUFFIX, save_named_weights
from effdet.config import get_config
from effdet.model.structure import variable_specs

LITE0 = "efficientdet-lite0"


def _zeros(specs: dict[str, tuple[int, ...]]) -> dict[str, tf.Tensor]:
    return {path: tf.zeros(shape) for path, shape in specs.items()}


def test_a_tf1_checkpoint_of_a_variant_fits_that_variant_alone_with_its_averages(tmp_path: Path) -> None:
    specs = variable_specs(get_config(LITE0).override({"num_classes": 3}))
    tensors = _zeros(specs) | {path + EMA_SUFFIX: tf.ones(shape) for path, shape in list(specs.items())[:5]}
    named = name_checkpoint(read_contents(save_named_weights(tensors, tmp_path / "model")))
    assert named.format == CheckpointFormat.TF1
    assert named.shapes == specs
    assert len(named.averages) == 5
    assert fitting_variants(named) == [LITE0]
    fit = fit_variant(named, LITE0)
    assert fit.reinitialised, "3 classes against the preset's 90: the class prediction starts again"
    assert all(path.startswith("class_net/class-predict/") for path in fit.reinitialised)
    assert not fit.fresh


def test_a_backbone_alone_fits_with_the_rest_starting_fresh(tmp_path: Path) -> None:
    specs = variable_specs(get_config(LITE0))
    backbone = {path: shape for path, shape in specs.items() if path.startswith("efficientnet-lite0/")}
    named = name_checkpoint(read_contents(save_named_weights(_zeros(backbone), tmp_path / "backbone")))
    fit = fit_variant(named, LITE0)
    assert fit.fits
    assert fit.fresh
    assert not fit.missing
    assert not fit_variant(named, "efficientdet-lite1").fits, "another backbone's widths differ"


def test_a_variable_in_another_shape_is_a_misfit_that_names_it(tmp_path: Path) -> None:
    specs = variable_specs(get_config(LITE0))
    path = "fpn_cells/cell_0/fnode0/op_after_combine5/conv/pointwise_kernel"
    assert path in specs
    tensors = _zeros(specs) | {path: tf.zeros([1, 1, 64, 32])}
    fit = fit_variant(name_checkpoint(read_contents(save_named_weights(tensors, tmp_path / "m"))), LITE0)
    assert not fit.fits
    assert fit.mismatched == [f"{path}: checkpoint (1, 1, 64, 32), model {specs[path]}"]


def test_an_object_based_checkpoint_names_variables_by_their_saved_names(tmp_path: Path) -> None:
    kernel = tf.Variable(np.ones([3, 3, 3, 32], np.float32), name="efficientnet-lite0/stem/conv2d/kernel")
    checkpoint = tf.train.Checkpoint(model=tf.Module(), kernel=kernel)
    prefix = Path(checkpoint.write(str(tmp_path / "ckpt")))
    contents = read_contents(prefix)
    assert contents.object_based
    names = {variable.full_name for variable in contents.variables or []}
    assert "efficientnet-lite0/stem/conv2d/kernel" in names
    named = name_checkpoint(contents)
    assert named.format == CheckpointFormat.AUTOML_TF2
    assert named.shapes["efficientnet-lite0/stem/conv2d/kernel"] == (3, 3, 3, 32)


def test_files_that_are_no_checkpoint_are_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.index").write_bytes(b"not a table at all, just some bytes" * 3)
    with pytest.raises(CheckpointIndexError, match="not a TensorFlow checkpoint index"):
        read_contents(tmp_path / "model")
    with pytest.raises(CheckpointIndexError, match="cannot read"):
        read_contents(tmp_path / "missing")
