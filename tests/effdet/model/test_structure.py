"""The TensorFlow-free description of the network against the network Keras builds."""

import subprocess
import sys

import pytest

from effdet.config import BACKBONES, MODEL_NAMES, Config, get_config
from effdet.model import build_model
from effdet.model.structure import SCALINGS, expand_blocks, variable_paths, variable_specs
from tests.cheap import CHEAP


def _assert_predicted_variables_are_built(config: Config) -> None:
    """Every variable path and shape `variable_specs` predicts is built, and nothing else; trainable ones too."""
    model = build_model(config)
    built = {v.path: tuple(int(d) for d in v.shape) for v in model.variables}
    predicted = variable_specs(config)
    assert set(predicted) == set(built)  # pytest lists the paths on either side alone
    assert predicted == built
    assert set(variable_paths(config, trainable_only=True)) == {v.path for v in model.trainable_variables}


def test_structure_imports_without_tensorflow() -> None:
    code = "import sys, effdet.model.structure; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_configurable_backbone_has_a_scaling() -> None:
    assert set(SCALINGS) == set(BACKBONES)


def test_lite4_has_thirty_blocks_without_squeeze_excite() -> None:
    paths = variable_paths(get_config("efficientdet-lite4"))
    assert len(expand_blocks("efficientnet-lite4")) == 30
    assert "efficientnet-lite4/blocks_29/conv2d_1/kernel" in paths
    assert not any("/se/" in p for p in paths)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_predicted_variables_are_exactly_the_built_ones(name: str) -> None:
    _assert_predicted_variables_are_built(get_config(name))


@pytest.mark.parametrize(
    "overrides",
    [
        # Plain convolutions, conv-BN-act, per-channel fusion weights, resampling without BN, a second extra level.
        {
            **CHEAP,
            "separable_conv": False,
            "conv_bn_act_pattern": True,
            "fpn_weight_method": "channel_fastattn",
            "apply_bn_for_resampling": False,
            "max_level": 8,
            "num_classes": 3,
        },
        # A pyramid from level 2 to 6, softmax fusion, fewer anchors.
        {**CHEAP, "min_level": 2, "max_level": 6, "fpn_weight_method": "attn", "num_scales": 2},
        # automl's segmentation head beside the detection heads, and alone.
        {**CHEAP, "heads": ["object_detection", "segmentation"], "seg_num_classes": 5},
        {**CHEAP, "heads": ["segmentation"], "max_level": 8, "image_size": 256},
    ],
    ids=["plain-conv-channel-weights", "levels-2-to-6", "both-heads", "segmentation-only-to-level-8"],
)
def test_predicted_variables_follow_non_default_settings(overrides: dict[str, object]) -> None:
    _assert_predicted_variables_are_built(get_config("efficientdet-d0", overrides))
