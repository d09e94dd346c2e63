"""The network's structure, without TensorFlow: what `build_model(config)` builds and what its variables are called.

The Keras layers (efficientnet.py, bifpn.py, efficientdet.py) build from these facts, and the API checks a job's
`var_freeze_expr` against `variable_paths(config)` before anything loads TensorFlow; a test builds every variant
and compares, so this description and the model cannot drift apart.

- EfficientNet (Tan & Le, ICML 2019): B0's table of MBConv stages (paper table 1), scaled per variant by width
  and depth coefficients (section 3.3). EfficientNet-Lite0..4 (behind EfficientDet-Lite) differ in three ways,
  all driven by `Scaling.lite`: no squeeze-and-excitation, a stem (32 channels) and first/last stage (one block
  each) that width and depth do not scale, and ReLU6 (the config's `act_type`, set by the lite presets).
- The feature pyramid: backbone levels min_level..5, then extra levels made by `resample_p6`.., fused by the
  BiFPN graph (EfficientDet paper figure 2d) `fpn_cell_repeats` times.
- Variable paths follow the official checkpoint scopes: `efficientnet-b0/blocks_3/depthwise_conv2d/...`,
  `resample_p6/conv2d/kernel`, `fpn_cells/cell_0/fnode1/resample_0_2_6/conv2d/kernel`, `class_net/class-2-bn-7/...`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import count

from effdet.config import Config, ModelConfig

# --- EfficientNet ---


@dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks (a row of the paper's table 1), or after `expand_blocks` one block."""

    kernel_size: int
    num_repeat: int
    input_filters: int
    output_filters: int
    expand_ratio: int
    strides: int
    se_ratio: float | None = 0.25

    @property
    def expanded_filters(self) -> int:
        """Channels inside the block, after the 1x1 expansion (none when expand_ratio is 1)."""
        return self.input_filters * self.expand_ratio

    @property
    def se_filters(self) -> int | None:
        """Channels of the squeeze-and-excitation bottleneck, None without one."""
        return max(1, int(self.input_filters * self.se_ratio)) if self.se_ratio else None


# EfficientNet-B0 (paper table 1): stages 2..8.
B0_BLOCKS: tuple[BlockArgs, ...] = (
    BlockArgs(3, 1, 32, 16, 1, 1),
    BlockArgs(3, 2, 16, 24, 6, 2),
    BlockArgs(5, 2, 24, 40, 6, 2),
    BlockArgs(3, 3, 40, 80, 6, 2),
    BlockArgs(5, 3, 80, 112, 6, 1),
    BlockArgs(5, 4, 112, 192, 6, 2),
    BlockArgs(3, 1, 192, 320, 6, 1),
)

STEM_FILTERS = 32


@dataclass(frozen=True)
class Scaling:
    """Compound-scaling coefficients of one EfficientNet variant."""

    width: float
    depth: float
    survival_prob: float | None  # stochastic depth of the last block; None disables it
    lite: bool = False  # EfficientNet-Lite: no SE, stem and first/last stage not scaled


# EfficientDet disables stochastic depth for B0 only (automl's backbone override, which matches 'b0' and so
# leaves lite0 alone); the others keep 0.8.
SCALINGS: dict[str, Scaling] = {
    "efficientnet-b0": Scaling(1.0, 1.0, None),
    "efficientnet-b1": Scaling(1.0, 1.1, 0.8),
    "efficientnet-b2": Scaling(1.1, 1.2, 0.8),
    "efficientnet-b3": Scaling(1.2, 1.4, 0.8),
    "efficientnet-b4": Scaling(1.4, 1.8, 0.8),
    "efficientnet-b5": Scaling(1.6, 2.2, 0.8),
    "efficientnet-b6": Scaling(1.8, 2.6, 0.8),
    "efficientnet-b7": Scaling(2.0, 3.1, 0.8),
    # automl's efficientnet_lite_builder: (width, depth) per variant.
    "efficientnet-lite0": Scaling(1.0, 1.0, 0.8, lite=True),
    "efficientnet-lite1": Scaling(1.0, 1.1, 0.8, lite=True),
    "efficientnet-lite2": Scaling(1.1, 1.2, 0.8, lite=True),
    "efficientnet-lite3": Scaling(1.2, 1.4, 0.8, lite=True),
    "efficientnet-lite4": Scaling(1.4, 1.8, 0.8, lite=True),
}


def scaling(name: str) -> Scaling:
    """The coefficients of backbone `name`; ValueError listing the known backbones otherwise."""
    if name not in SCALINGS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(SCALINGS)}")
    return SCALINGS[name]


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by `width`, rounded to a multiple of `divisor` and never down by more than 10%."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's block count by `depth`, rounding up."""
    return math.ceil(depth * repeats)


def stem_filters(name: str) -> int:
    """Output channels of variant `name`'s stem (fixed at 32 for the lite variants)."""
    coefficients = scaling(name)
    return STEM_FILTERS if coefficients.lite else round_filters(STEM_FILTERS, coefficients.width)


def expand_blocks(name: str) -> list[BlockArgs]:
    """The per-block arguments of variant `name`, one entry per MBConv block, strides only on the first."""
    coefficients = scaling(name)
    blocks = []
    for i, stage in enumerate(B0_BLOCKS):
        fixed_depth = coefficients.lite and i in (0, len(B0_BLOCKS) - 1)
        repeats = stage.num_repeat if fixed_depth else round_repeats(stage.num_repeat, coefficients.depth)
        first = replace(
            stage,
            # The first stage reads the stem, whose width a lite variant does not scale.
            input_filters=stem_filters(name) if i == 0 else round_filters(stage.input_filters, coefficients.width),
            output_filters=round_filters(stage.output_filters, coefficients.width),
            se_ratio=None if coefficients.lite else stage.se_ratio,
        )
        blocks.append(first)
        rest = replace(first, input_filters=first.output_filters, strides=1)
        blocks.extend(rest for _ in range(repeats - 1))
    return blocks


def level_ends(blocks: list[BlockArgs]) -> list[int]:
    """Indices of the blocks whose output is a pyramid level (1, 2, ...): the last block before each
    downsampling block, and the last block."""
    return [i for i in range(len(blocks)) if i == len(blocks) - 1 or blocks[i + 1].strides > 1]


def tf1_name(base: str, index: int) -> str:
    """TF1's layer-name counter, which the official scopes keep: `conv2d`, `conv2d_1`, `conv2d_2`, ..."""
    return base if index == 0 else f"{base}_{index}"


# --- The feature pyramid and the BiFPN ---

BACKBONE_MAX_LEVEL = 5


def backbone_level_filters(backbone_name: str) -> dict[int, int]:
    """Channels of the backbone feature at each level 1..5 (stride 2**level)."""
    blocks = expand_blocks(backbone_name)
    return {level: blocks[i].output_filters for level, i in enumerate(level_ends(blocks), start=1)}


def pyramid_filters(config: ModelConfig) -> dict[int, int]:
    """Channels of the BiFPN's inputs, level min..max: the backbone's features up to level 5, then the extra
    levels (`resample_p6`, ...), each made from the level below with `fpn_num_filters` channels."""
    widths = backbone_level_filters(config.backbone_name)
    return {
        level: widths[level] if level <= BACKBONE_MAX_LEVEL else config.fpn_num_filters
        for level in range(config.min_level, config.max_level + 1)
    }


@dataclass(frozen=True)
class FusionNode:
    """One fused node of a BiFPN cell: its pyramid level and the indices of the features it fuses.

    Indices count the cell's inputs (P_min..P_max, index 0..n-1) followed by the nodes made so far.
    """

    level: int
    inputs: tuple[int, ...]


def bifpn_nodes(min_level: int, max_level: int) -> list[FusionNode]:
    """The BiFPN graph for levels min..max: top-down nodes, then bottom-up nodes with a same-level skip."""
    ids = {level: [level - min_level] for level in range(min_level, max_level + 1)}
    next_id = count(max_level - min_level + 1)
    nodes = []
    for level in range(max_level - 1, min_level - 1, -1):
        nodes.append(FusionNode(level, (ids[level][-1], ids[level + 1][-1])))
        ids[level].append(next(next_id))
    for level in range(min_level + 1, max_level + 1):
        nodes.append(FusionNode(level, (*ids[level], ids[level - 1][-1])))
        ids[level].append(next(next_id))
    return nodes


def resample_name(input_index: int, offset: int, num_feats: int) -> str:
    """Scope of a fused node's resampling of its `input_index`-th input, feature `offset` of the `num_feats`
    the cell holds when the node is made."""
    return f"resample_{input_index}_{offset}_{num_feats}"


def op_after_combine_name(num_feats: int) -> str:
    """Scope of the convolution after a fusion, numbered by the features the cell holds when it is made."""
    return f"op_after_combine{num_feats}"


def fusion_weight_shape(weight_method: str, filters: int) -> tuple[int, ...] | None:
    """Shape of each fusion weight (one per input, `WSM`, `WSM_1`, ...): a scalar, one per channel for the
    channel_* methods, or None for 'sum', which has no weights."""
    if weight_method == "sum":
        return None
    return (filters,) if weight_method.startswith("channel_") else ()


# --- Variables ---

BATCH_NORM_STATISTICS = ("moving_mean", "moving_variance")
"""The only variables that are not trainable (training never updates them by gradient, nor freezes them)."""
BATCH_NORM_VARIABLES = ("gamma", "beta", *BATCH_NORM_STATISTICS)

Shapes = dict[str, tuple[int, ...]]


def _conv(shapes: Shapes, scope: str, size: int, inputs: int, outputs: int, bias: bool) -> None:
    shapes[f"{scope}/kernel"] = (size, size, inputs, outputs)
    if bias:
        shapes[f"{scope}/bias"] = (outputs,)


def _conv3x3(shapes: Shapes, scope: str, inputs: int, outputs: int, bias: bool, separable: bool) -> None:
    """A 3x3 convolution of the BiFPN or the heads, depthwise-separable when the config says so."""
    if not separable:
        _conv(shapes, scope, 3, inputs, outputs, bias)
        return
    shapes[f"{scope}/depthwise_kernel"] = (3, 3, inputs, 1)
    shapes[f"{scope}/pointwise_kernel"] = (1, 1, inputs, outputs)
    if bias:
        shapes[f"{scope}/bias"] = (outputs,)


def _batch_norm(shapes: Shapes, scope: str, channels: int) -> None:
    shapes.update({f"{scope}/{name}": (channels,) for name in BATCH_NORM_VARIABLES})


def _mbconv_block(shapes: Shapes, scope: str, block: BlockArgs) -> None:
    conv_ids, bn_ids = count(), count()

    def conv(inputs: int, outputs: int) -> None:
        _conv(shapes, f"{scope}/{tf1_name('conv2d', next(conv_ids))}", 1, inputs, outputs, bias=False)

    def bn(channels: int) -> None:
        _batch_norm(shapes, f"{scope}/{tf1_name('tpu_batch_normalization', next(bn_ids))}", channels)

    expanded = block.expanded_filters
    if block.expand_ratio != 1:
        conv(block.input_filters, expanded)
        bn(expanded)
    shapes[f"{scope}/depthwise_conv2d/depthwise_kernel"] = (block.kernel_size, block.kernel_size, expanded, 1)
    bn(expanded)
    if block.se_filters is not None:
        _conv(shapes, f"{scope}/se/conv2d", 1, expanded, block.se_filters, bias=True)
        _conv(shapes, f"{scope}/se/conv2d_1", 1, block.se_filters, expanded, bias=True)
    conv(expanded, block.output_filters)
    bn(block.output_filters)


def _backbone(shapes: Shapes, backbone_name: str) -> None:
    stem = stem_filters(backbone_name)
    _conv(shapes, f"{backbone_name}/stem/conv2d", 3, 3, stem, bias=False)
    _batch_norm(shapes, f"{backbone_name}/stem/tpu_batch_normalization", stem)
    for i, block in enumerate(expand_blocks(backbone_name)):
        _mbconv_block(shapes, f"{backbone_name}/blocks_{i}", block)


def _resample(shapes: Shapes, scope: str, inputs: int, config: ModelConfig) -> None:
    filters = config.fpn_num_filters
    if inputs != filters:  # a resample only convolves to change the width
        _conv(shapes, f"{scope}/conv2d", 1, inputs, filters, bias=True)
        if config.apply_bn_for_resampling:
            _batch_norm(shapes, f"{scope}/bn", filters)


def _fpn_cell(shapes: Shapes, scope: str, input_filters: list[int], config: ModelConfig) -> None:
    filters = config.fpn_num_filters
    weight_shape = fusion_weight_shape(config.weight_method, filters)
    widths = list(input_filters)  # of every feature the cell holds, inputs then fused nodes
    for i, node in enumerate(bifpn_nodes(config.min_level, config.max_level)):
        node_scope = f"{scope}/fnode{i}"
        for input_index, offset in enumerate(node.inputs):
            _resample(shapes, f"{node_scope}/{resample_name(input_index, offset, len(widths))}", widths[offset], config)
            if weight_shape is not None:
                shapes[f"{node_scope}/{tf1_name('WSM', input_index)}"] = weight_shape
        op_scope = f"{node_scope}/{op_after_combine_name(len(widths))}"
        _conv3x3(shapes, f"{op_scope}/conv", filters, filters, not config.conv_bn_act_pattern, config.separable_conv)
        _batch_norm(shapes, f"{op_scope}/bn", filters)
        widths.append(filters)


def _head(shapes: Shapes, net: str, prefix: str, outputs_per_anchor: int, config: ModelConfig) -> None:
    filters = config.fpn_num_filters
    for i in range(config.box_class_repeats):
        _conv3x3(shapes, f"{net}/{prefix}-{i}", filters, filters, True, config.separable_conv)
        for level in range(config.min_level, config.max_level + 1):
            _batch_norm(shapes, f"{net}/{prefix}-{i}-bn-{level}", filters)
    outputs = config.num_anchors * outputs_per_anchor
    _conv3x3(shapes, f"{net}/{prefix}-predict", filters, outputs, True, config.separable_conv)


SEG_HEAD = "segmentation_head"


def seg_upsample_name(index: int) -> str:
    """The segmentation head's transposed convs as automl's fresh model names them: the upsampling steps from the
    coarsest level down, then the classifier (index max_level - min_level)."""
    return tf1_name("conv2d_transpose", index)


def seg_classifier(config: ModelConfig) -> str:
    """The scope of the segmentation head's last layer, whose shape follows seg_num_classes."""
    return f"{SEG_HEAD}/{seg_upsample_name(config.max_level - config.min_level)}/"


def _seg_head(shapes: Shapes, config: ModelConfig) -> None:
    """automl's segmentation head: transposed convs (kernel [3, 3, out, in]) from the coarsest level down."""
    filters, steps = config.fpn_num_filters, config.max_level - config.min_level
    for i in range(steps):
        inputs = filters if i == 0 else 2 * filters  # each step after the first reads the concatenated skip
        shapes[f"{SEG_HEAD}/{seg_upsample_name(i)}/kernel"] = (3, 3, filters, inputs)
        _batch_norm(shapes, f"{SEG_HEAD}/bn_{i}", filters)
    classifier = seg_classifier(config)
    shapes[f"{classifier}kernel"] = (3, 3, config.seg_num_classes, 2 * filters)
    shapes[f"{classifier}bias"] = (config.seg_num_classes,)


def variable_specs(config: Config | ModelConfig) -> dict[str, tuple[int, ...]]:
    """Path -> shape of every variable `build_model(config)` makes (Keras 3 `variable.path`), BN statistics
    included."""
    model = config.model if isinstance(config, Config) else config
    shapes: Shapes = {}
    _backbone(shapes, model.backbone_name)
    pyramid = pyramid_filters(model)
    for level in range(BACKBONE_MAX_LEVEL + 1, model.max_level + 1):
        _resample(shapes, f"resample_p{level}", pyramid[level - 1], model)
    cell_inputs = list(pyramid.values())
    for cell in range(model.fpn_cell_repeats):
        _fpn_cell(shapes, f"fpn_cells/cell_{cell}", cell_inputs, model)
        cell_inputs = [model.fpn_num_filters] * len(cell_inputs)
    if "object_detection" in model.heads:
        _head(shapes, "class_net", "class", model.num_classes, model)
        _head(shapes, "box_net", "box", 4, model)
    if "segmentation" in model.heads:
        _seg_head(shapes, model)
    return shapes


def variable_paths(config: Config | ModelConfig, trainable_only: bool = False) -> list[str]:
    """The path of every variable `build_model(config)` makes, backbone first, heads last; with `trainable_only`,
    of every `model.trainable_variables`, which is what automl's `var_freeze_expr` regexes are matched against."""
    paths = list(variable_specs(config))
    if trainable_only:
        return [p for p in paths if p.rsplit("/", 1)[-1] not in BATCH_NORM_STATISTICS]
    return paths
