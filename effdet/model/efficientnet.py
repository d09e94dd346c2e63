"""EfficientNet-B0..B7 backbone (Tan & Le, ICML 2019), returning the multi-scale features EfficientDet uses.

MBConv blocks (inverted residual with squeeze-and-excitation, swish, stochastic depth) scaled by width and
depth coefficients (paper section 3.3). Layer names follow the official checkpoints:
`efficientnet-b0/stem/conv2d`, `efficientnet-b0/blocks_3/depthwise_conv2d`, `.../se/conv2d_1`, ...

EfficientNet-Lite0..4 (the edge variants behind EfficientDet-Lite) are the same network without
squeeze-and-excitation, with a fixed stem and first/last stage, and ReLU6 (the caller's `act_type`). The block
table, the scaling of each variant and its Lite differences live in `structure.py`, which describes the
network without TensorFlow; this module turns that description into Keras layers.
"""

from __future__ import annotations

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
from effdet.model.structure import BlockArgs, expand_blocks, level_ends, scaling, stem_filters, tf1_name


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
            return tf1_name("conv2d", next(conv_ids))

        def bn_name() -> str:
            return tf1_name("tpu_batch_normalization", next(bn_ids))

        filters = args.expanded_filters
        self.expand_conv: keras.layers.Conv2D | None = None
        self.bn0: keras.layers.BatchNormalization | None = None
        if args.expand_ratio != 1:
            self.expand_conv = _conv(filters, 1, conv_name())
            self.bn0 = batch_norm(bn_name())
        self.depthwise_conv = DepthwiseConv(args.kernel_size, args.strides, name="depthwise_conv2d")
        self.bn1 = batch_norm(bn_name())
        self.se: SqueezeExcite | None = None
        if args.se_filters is not None:
            self.se = SqueezeExcite(args.se_filters, filters, act_type, name="se")
        self.project_conv = _conv(args.output_filters, 1, conv_name())
        self.bn2 = batch_norm(bn_name())

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = inputs
        if self.expand_conv is not None and self.bn0 is not None:
            x = activation(self.bn0(self.expand_conv(x), training=training), self.act_type, training)
        x = activation(self.bn1(self.depthwise_conv(x, training=training), training=training), self.act_type, training)
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
        return activation(self.bn(self.conv(x), training=training), self.act_type, training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "act_type": self.act_type}


class EfficientNet(Composite):
    """EfficientNet feature extractor: returns the last feature map of each stride 2, 4, 8, 16, 32.

    call(images: float32 [batch, H, W, 3], normalised) -> list of 5 tensors, element i at stride 2**(i+1)
    (levels 1..5; the classification head is not part of detection and is never built).
    """

    def __init__(self, backbone_name: str, act_type: str = "swish", **kwargs: Any) -> None:
        survival_prob = scaling(backbone_name).survival_prob  # ValueError for an unknown backbone
        super().__init__(name=backbone_name, **kwargs)
        self.backbone_name = backbone_name
        self.act_type = act_type
        self.stem = Stem(stem_filters(backbone_name), act_type, name="stem")
        args = expand_blocks(backbone_name)
        self.blocks = []
        for i, block in enumerate(args):
            survival = None
            if survival_prob is not None:
                survival = 1.0 - (1.0 - survival_prob) * i / len(args)
            self.blocks.append(MBConvBlock(block, act_type, survival, name=f"blocks_{i}"))
        self._level_ends = set(level_ends(args))

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
