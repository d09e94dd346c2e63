"""The network: forward shapes, official variable paths, head/anchor layout, behaviour of its parts."""

import re

import numpy as np
import pytest
import tensorflow as tf

from effdet.anchor_grid import anchors_for
from effdet.config import get_config
from effdet.model import EfficientDet, build_model, count_params, flatten_predictions, variable_shapes
from effdet.model.bifpn import add_all, upsample_nearest
from effdet.model.efficientdet import split_outputs
from effdet.model.structure import (
    FusionNode,
    backbone_level_filters,
    bifpn_nodes,
    expand_blocks,
    round_filters,
    round_repeats,
)
from tests.cheap import CHEAP

OFFICIAL_PATHS = [
    "efficientnet-b0/stem/conv2d/kernel",
    "efficientnet-b0/blocks_0/depthwise_conv2d/depthwise_kernel",
    "efficientnet-b0/blocks_0/se/conv2d/kernel",
    "resample_p6/conv2d/kernel",
    "fpn_cells/cell_0/fnode0/WSM",
    "fpn_cells/cell_0/fnode0/op_after_combine5/conv/depthwise_kernel",
    "fpn_cells/cell_0/fnode1/resample_0_2_6/conv2d/kernel",
    "class_net/class-0/pointwise_kernel",
    "class_net/class-2-bn-7/moving_mean",
    "class_net/class-predict/bias",
    "box_net/box-1-bn-3/gamma",
    "box_net/box-predict/pointwise_kernel",
]


@pytest.fixture(scope="module")
def d0_128() -> EfficientDet:
    return build_model(get_config("efficientdet-d0", "image_size=128,num_classes=3"))


def test_variable_paths_follow_official_scopes(d0_128: EfficientDet) -> None:
    paths = {path for path, _ in variable_shapes(d0_128)}
    for path in OFFICIAL_PATHS:
        assert path in paths
    assert not any(p.startswith("efficientnet-b0/head") for p in paths)  # classification head never built


def test_expanded_block_names_follow_tf1_counters(d0_128: EfficientDet) -> None:
    shapes = dict(variable_shapes(d0_128))
    assert shapes["efficientnet-b0/blocks_1/conv2d/kernel"] == (1, 1, 16, 96)  # expand
    assert shapes["efficientnet-b0/blocks_1/conv2d_1/kernel"] == (1, 1, 96, 24)  # project
    assert "efficientnet-b0/blocks_1/tpu_batch_normalization_2/gamma" in shapes
    assert shapes["efficientnet-b0/blocks_1/se/conv2d_1/kernel"] == (1, 1, 4, 96)


def test_freeze_regex_means_what_it_means_in_automl(d0_128: EfficientDet) -> None:
    paths = [path for path, _ in variable_shapes(d0_128)]
    frozen = [p for p in paths if re.match("(efficientnet|fpn_cells|resample_p6)", p)]
    assert frozen
    assert all(not p.startswith(("class_net", "box_net")) for p in frozen)
    assert len(frozen) + sum(p.startswith(("class_net", "box_net")) for p in paths) == len(paths)


def test_forward_shapes_square(d0_128: EfficientDet) -> None:
    classes, boxes = d0_128(tf.zeros([2, 128, 128, 3]))
    assert [tuple(c.shape) for c in classes] == [(2, 128 // 2**lv, 128 // 2**lv, 9 * 3) for lv in range(3, 8)]
    assert [tuple(b.shape) for b in boxes] == [(2, 128 // 2**lv, 128 // 2**lv, 9 * 4) for lv in range(3, 8)]


def test_forward_shapes_non_square() -> None:
    config = get_config("efficientdet-d0", "image_size=256x128,num_classes=2")
    model = build_model(config)
    classes, boxes = model(tf.zeros([1, 128, 256, 3]))
    assert [tuple(c.shape[1:3]) for c in classes] == [(128 // 2**lv, 256 // 2**lv) for lv in range(3, 8)]
    assert all(c.shape[-1] == 9 * 2 for c in classes)
    assert all(b.shape[-1] == 9 * 4 for b in boxes)


def test_head_outputs_line_up_with_anchors(d0_128: EfficientDet) -> None:
    config = get_config("efficientdet-d0", "image_size=128,num_classes=3").model
    anchors = anchors_for(config)
    classes, boxes = d0_128(tf.zeros([1, 128, 128, 3]))
    assert [(c.shape[1], c.shape[2]) for c in classes] == [(h, w) for _, h, w in anchors.level_sizes]
    flat_classes, flat_boxes = flatten_predictions(classes, boxes, 3)
    assert flat_classes.shape == (1, anchors.num_anchors, 3)
    assert flat_boxes.shape == (1, anchors.num_anchors, 4)


def test_class_prior_bias_gives_one_percent_foreground(d0_128: EfficientDet) -> None:
    bias = {v.path: v for v in d0_128.variables}["class_net/class-predict/bias"]
    np.testing.assert_allclose(tf.sigmoid(bias.numpy()), 0.01, rtol=1e-5)


def test_per_level_batch_norm_in_heads(d0_128: EfficientDet) -> None:
    paths = {path for path, _ in variable_shapes(d0_128)}
    for i in range(3):
        for level in range(3, 8):
            assert f"class_net/class-{i}-bn-{level}/gamma" in paths
            assert f"box_net/box-{i}-bn-{level}/gamma" in paths
    assert sum(p.startswith("class_net/class-0/") for p in paths) == 3  # one conv shared by all levels


def test_bifpn_graph_matches_paper_figure() -> None:
    assert bifpn_nodes(3, 7) == [
        FusionNode(6, (3, 4)),
        FusionNode(5, (2, 5)),
        FusionNode(4, (1, 6)),
        FusionNode(3, (0, 7)),
        FusionNode(4, (1, 7, 8)),
        FusionNode(5, (2, 6, 9)),
        FusionNode(6, (3, 5, 10)),
        FusionNode(7, (4, 11)),
    ]


def test_sum_fusion_has_no_weights_and_fast_fusion_has_one_per_input() -> None:
    model = build_model(get_config("efficientdet-d0", "image_size=128,fpn_weight_method=sum"))
    assert not any("WSM" in path for path, _ in variable_shapes(model))
    fast = build_model(get_config("efficientdet-d0", "image_size=128"))
    fnode4 = [p for p, _ in variable_shapes(fast) if p.startswith("fpn_cells/cell_0/fnode4/WSM")]
    assert sorted(fnode4) == [
        "fpn_cells/cell_0/fnode4/WSM",
        "fpn_cells/cell_0/fnode4/WSM_1",
        "fpn_cells/cell_0/fnode4/WSM_2",
    ]


def test_compound_scaling_rounding() -> None:
    assert round_filters(32, 1.1) == 32
    assert round_filters(40, 1.4) == 56
    assert round_filters(320, 2.0) == 640
    assert round_repeats(3, 1.1) == 4
    assert len(expand_blocks("efficientnet-b0")) == 16
    assert backbone_level_filters("efficientnet-b0") == {1: 16, 2: 24, 3: 40, 4: 112, 5: 320}


def test_training_mode_updates_batch_norm_statistics_unless_frozen() -> None:
    model = build_model(get_config("efficientdet-d0", "image_size=128"))
    stem_mean = {v.path: v for v in model.variables}["efficientnet-b0/stem/tpu_batch_normalization/moving_mean"]
    before = stem_mean.numpy().copy()
    model(tf.random.normal([1, 128, 128, 3]), training=True)
    assert not np.allclose(before, stem_mean.numpy())

    frozen = build_model(get_config("efficientdet-d0", "image_size=128,is_training_bn=false"))
    frozen_mean = {v.path: v for v in frozen.variables}["efficientnet-b0/stem/tpu_batch_normalization/moving_mean"]
    frozen_before = frozen_mean.numpy().copy()
    frozen(tf.random.normal([1, 128, 128, 3]), training=True)
    np.testing.assert_array_equal(frozen_before, frozen_mean.numpy())


def test_count_params_excludes_batch_norm_statistics(d0_128: EfficientDet) -> None:
    moving = sum(int(np.prod(s)) for p, s in variable_shapes(d0_128) if "moving_" in p)
    assert count_params(d0_128, trainable_only=False) - count_params(d0_128) == moving


def test_lite_backbone_fixes_stem_and_end_stages_and_drops_squeeze_excite() -> None:
    blocks = expand_blocks("efficientnet-lite4")
    assert blocks[0].input_filters == 32  # stem not scaled (automl's fix_head_stem)
    assert len(blocks) == 1 + 4 + 4 + 6 + 6 + 8 + 1  # first and last stage keep one block
    assert all(b.se_ratio is None for b in blocks)
    assert len(expand_blocks("efficientnet-lite0")) == 16


def test_lite0_at_320_lines_up_with_rounded_up_anchors() -> None:
    config = get_config("efficientdet-lite0", "num_classes=2")
    model_config = config.model
    assert (model_config.act_type, model_config.weight_method) == ("relu6", "sum")
    assert (model_config.anchor_scale, model_config.mean_rgb, model_config.stddev_rgb) == (3.0, 127.0, 128.0)
    model = build_model(config)
    paths = [v.path for v in model.variables]
    assert paths[0] == "efficientnet-lite0/stem/conv2d/kernel"
    assert not any("/se/" in p for p in paths)
    anchors = anchors_for(config.model)
    classes, boxes = model(tf.zeros([1, 320, 320, 3]))
    assert [(c.shape[1], c.shape[2]) for c in classes] == [(h, w) for _, h, w in anchors.level_sizes]
    assert flatten_predictions(classes, boxes, 2)[0].shape == (1, anchors.num_anchors, 2)


def test_nearest_upsampling_and_sums_give_what_tensorflows_ops_give() -> None:
    x = tf.random.stateless_normal([2, 5, 7, 3], seed=[1, 2])
    for height, width in [(10, 14), (15, 21), (9, 13), (5, 14)]:
        expected = tf.image.resize(x, [height, width], method="nearest")
        np.testing.assert_array_equal(upsample_nearest(x, height, width).numpy(), expected.numpy())
    parts = [tf.random.stateless_normal([4, 6], seed=[3, i]) for i in range(3)]
    np.testing.assert_array_equal(add_all(parts).numpy(), tf.add_n(parts).numpy())


@pytest.mark.parametrize(
    ("heads", "max_level"), [(["object_detection", "segmentation"], 7), (["segmentation"], 8)], ids=["both", "seg"]
)
def test_the_segmentation_head_gives_logits_at_a_quarter_of_the_input(heads: list[str], max_level: int) -> None:
    config = get_config(
        "efficientdet-d0",
        {"image_size": 256, "num_classes": 2, "seg_num_classes": 4, "heads": heads, "max_level": max_level, **CHEAP},
    )
    model = build_model(config)
    outputs = split_outputs(model(tf.zeros([2, 256, 256, 3]), training=False), config.model.heads)
    assert outputs.seg_logits is not None
    assert tuple(outputs.seg_logits.shape) == (2, 64, 64, 4)
    if "object_detection" in heads:
        assert outputs.class_outputs is not None
        assert outputs.box_outputs is not None
        assert [tuple(c.shape[1:3]) for c in outputs.class_outputs] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    else:
        assert (outputs.class_outputs, outputs.box_outputs) == (None, None)
        assert not any(v.path.startswith(("class_net/", "box_net/")) for v in model.variables)
    upsamples = sorted({v.path.split("/")[1] for v in model.variables if v.path.startswith("segmentation_head/")})
    assert len([u for u in upsamples if u.startswith("conv2d_transpose")]) == max_level - 3 + 1
