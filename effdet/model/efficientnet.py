"""EfficientNet-B0..B7 backbone (Tan & Le, ICML 2019), returning the multi-scale features EfficientDet uses.

MBConv blocks (inverted residual with squeeze-and-excitation, swish, stochastic depth) scaled by width and
depth coefficients (paper section 3.3). Layer names follow the official checkpoints:
`efficientnet-b0/stem/conv2d`, `efficientnet-b0/blocks_3/depthwise_conv2d`, `.../se/conv2d_1`, ...

EfficientNet-Lite0..4 (the edge variants behind EfficientDet-Lite) are the same network with three
changes, all driven by `Scaling.lite`: no squeeze-and-excitation, a stem (32 channels) and first/last stage
(one block each) that width and depth do not scale, and ReLU6 (the caller's `act_type`, set by the lite
presets). Their variables are named `efficientnet-lite0/stem/conv2d/kernel`, `efficientnet-lite0/blocks_0/...`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import count
from typing import Any

import keras
import tensorflow as tf

from effdet.model.layers import (
    Composite,
    DepthwiseConv,
    activation,
    batch_norm,
    conv_kernel_initializer,
    drop_connect,
)


@dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks (a row of the paper's table 1)."""

    kernel_size: int
    num_repeat: int
    input_filters: int
    output_filters: int
    expand_ratio: int
    strides: int
    se_ratio: float | None = 0.25


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
    scaling = SCALINGS[name]
    return STEM_FILTERS if scaling.lite else round_filters(STEM_FILTERS, scaling.width)


def expand_blocks(name: str) -> list[BlockArgs]:
    """The per-block arguments of variant `name`, one entry per MBConv block, strides only on the first."""
    scaling = SCALINGS[name]
    blocks = []
    for i, stage in enumerate(B0_BLOCKS):
        fixed_depth = scaling.lite and i in (0, len(B0_BLOCKS) - 1)
        repeats = stage.num_repeat if fixed_depth else round_repeats(stage.num_repeat, scaling.depth)
        first = replace(
            stage,
            # The first stage reads the stem, whose width a lite variant does not scale.
            input_filters=stem_filters(name) if i == 0 else round_filters(stage.input_filters, scaling.width),
            output_filters=round_filters(stage.output_filters, scaling.width),
            se_ratio=None if scaling.lite else stage.se_ratio,
        )
        blocks.append(first)
        rest = replace(first, input_filters=first.output_filters, strides=1)
        blocks.extend(rest for _ in range(repeats - 1))
    return blocks


def _conv(filters: int, kernel_size: int, name: str, strides: int = 1, use_bias: bool = False) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=conv_kernel_initializer(),
        name=name,
    )


class SqueezeExcite(Composite):
    """Squeeze-and-excitation: channel gates from globally pooled features."""

    def __init__(self, reduced_filters: int, filters: int, act_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reduced_filters = reduced_filters
        self.filters = filters
        self.act_type = act_type
        self.reduce = _conv(reduced_filters, 1, "conv2d", use_bias=True)
        self.expand = _conv(filters, 1, "conv2d_1", use_bias=True)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        squeezed = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        gates = self.expand(activation(self.reduce(squeezed), self.act_type))
        return tf.sigmoid(gates) * x

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "reduced_filters": self.reduced_filters,
            "filters": self.filters,
            "act_type": self.act_type,
        }


class MBConvBlock(Composite):
    """Mobile inverted bottleneck: 1x1 expand -> depthwise -> SE -> 1x1 project, residual when shapes allow."""

    def __init__(self, args: BlockArgs, act_type: str, survival_prob: float | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.args = args
        self.act_type = act_type
        self.survival_prob = survival_prob
        conv_ids, bn_ids = count(), count()

        def conv_name() -> str:
            i = next(conv_ids)
            return "conv2d" if i == 0 else f"conv2d_{i}"

        def bn_name() -> str:
            i = next(bn_ids)
            return "tpu_batch_normalization" if i == 0 else f"tpu_batch_normalization_{i}"

        filters = args.input_filters * args.expand_ratio
        self.expand_conv: keras.layers.Conv2D | None = None
        self.bn0: keras.layers.BatchNormalization | None = None
        if args.expand_ratio != 1:
            self.expand_conv = _conv(filters, 1, conv_name())
            self.bn0 = batch_norm(bn_name())
        self.depthwise_conv = DepthwiseConv(args.kernel_size, args.strides, name="depthwise_conv2d")
        self.bn1 = batch_norm(bn_name())
        self.se: SqueezeExcite | None = None
        if args.se_ratio:
            reduced = max(1, int(args.input_filters * args.se_ratio))
            self.se = SqueezeExcite(reduced, filters, act_type, name="se")
        self.project_conv = _conv(args.output_filters, 1, conv_name())
        self.bn2 = batch_norm(bn_name())

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = inputs
        if self.expand_conv is not None and self.bn0 is not None:
            x = activation(self.bn0(self.expand_conv(x), training=training), self.act_type)
        x = activation(self.bn1(self.depthwise_conv(x), training=training), self.act_type)
        if self.se is not None:
            x = self.se(x)
        x = self.bn2(self.project_conv(x), training=training)
        if self.args.strides == 1 and self.args.input_filters == self.args.output_filters:
            x = drop_connect(x, training, self.survival_prob) + inputs
        return x

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "args": self.args.__dict__,
            "act_type": self.act_type,
            "survival_prob": self.survival_prob,
        }


class Stem(Composite):
    """3x3 stride-2 convolution that opens the network."""

    def __init__(self, filters: int, act_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.act_type = act_type
        self.conv = _conv(filters, 3, "conv2d", strides=2)
        self.bn = batch_norm("tpu_batch_normalization")

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return activation(self.bn(self.conv(x), training=training), self.act_type)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "act_type": self.act_type}


class EfficientNet(Composite):
    """EfficientNet feature extractor: returns the last feature map of each stride 2, 4, 8, 16, 32.

    call(images: float32 [batch, H, W, 3], normalised) -> list of 5 tensors, element i at stride 2**(i+1)
    (levels 1..5; the classification head is not part of detection and is never built).
    """

    def __init__(self, backbone_name: str, act_type: str = "swish", **kwargs: Any) -> None:
        if backbone_name not in SCALINGS:
            raise ValueError(f"unknown backbone {backbone_name!r}; choose one of {', '.join(SCALINGS)}")
        super().__init__(name=backbone_name, **kwargs)
        self.backbone_name = backbone_name
        self.act_type = act_type
        scaling = SCALINGS[backbone_name]
        self.stem = Stem(stem_filters(backbone_name), act_type, name="stem")
        args = expand_blocks(backbone_name)
        self.blocks = []
        for i, block in enumerate(args):
            survival = None
            if scaling.survival_prob is not None:
                survival = 1.0 - (1.0 - scaling.survival_prob) * i / len(args)
            self.blocks.append(MBConvBlock(block, act_type, survival, name=f"blocks_{i}"))
        # A block ends a level when the next block downsamples, or it is the last block.
        self._level_ends = {i for i in range(len(args)) if i == len(args) - 1 or args[i + 1].strides > 1}

    def call(self, images: tf.Tensor, training: bool = False) -> list[tf.Tensor]:
        x = self.stem(images, training=training)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x, training=training)
            if i in self._level_ends:
                features.append(x)
        return features

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("name", None)
        return {**config, "backbone_name": self.backbone_name, "act_type": self.act_type}
