"""Class and box prediction networks, shared across all pyramid levels (paper section 3.3, figure 3).

Each head repeats (separable 3x3 conv shared by every level -> batch norm of that level -> activation),
then one prediction conv. The class-prediction bias starts at -log((1 - pi) / pi) with pi = 0.01 so the
initial foreground probability is 0.01 (focal loss paper, section 4.1). Names follow the official
checkpoints: `class_net/class-0`, `class_net/class-2-bn-7`, `class_net/class-predict`, `box_net/box-predict`.

The segmentation head is google/automl's (`heads: ['segmentation']`): from the coarsest BiFPN level down to the
finest, a 3x3 stride-2 transposed conv, batch norm and activation, then concatenation with the next finer level;
a last transposed conv gives per-pixel class logits at a quarter of the input size (for min_level 3).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from effdet.model.layers import Composite, activation, batch_norm, drop_connect
from effdet.model.structure import SEG_HEAD, seg_upsample_name

CLASS_PRIOR = 0.01


class HeadNet(Composite):
    """Shared conv tower plus a prediction conv with `outputs_per_anchor` channels per anchor.

    call(feats: list of float [batch, h_l, w_l, filters], one per level) ->
    list of float [batch, h_l, w_l, num_anchors * outputs_per_anchor].
    """

    def __init__(
        self,
        prefix: str,
        outputs_per_anchor: int,
        num_anchors: int,
        filters: int,
        min_level: int,
        max_level: int,
        repeats: int,
        act_type: str,
        separable_conv: bool = True,
        survival_prob: float | None = None,
        predict_bias: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix
        self.outputs_per_anchor = outputs_per_anchor
        self.num_anchors = num_anchors
        self.filters = filters
        self.min_level = min_level
        self.max_level = max_level
        self.repeats = repeats
        self.act_type = act_type
        self.separable_conv = separable_conv
        self.survival_prob = survival_prob
        self.predict_bias = predict_bias
        self.convs = [self._conv(filters, f"{prefix}-{i}", 0.0) for i in range(repeats)]
        self.bns = [
            [batch_norm(f"{prefix}-{i}-bn-{level}") for level in range(min_level, max_level + 1)]
            for i in range(repeats)
        ]
        self.predict = self._conv(num_anchors * outputs_per_anchor, f"{prefix}-predict", predict_bias)

    def _conv(self, filters: int, name: str, bias: float) -> keras.layers.Layer:
        if self.separable_conv:
            return keras.layers.SeparableConv2D(
                filters,
                3,
                padding="same",
                depthwise_initializer="variance_scaling",
                pointwise_initializer="variance_scaling",
                bias_initializer=keras.initializers.Constant(bias),
                name=name,
            )
        return keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer=keras.initializers.Constant(bias),
            name=name,
        )

    def call(self, feats: list[tf.Tensor], training: bool = False) -> list[tf.Tensor]:
        outputs = []
        for level_index, x in enumerate(feats):
            for i in range(self.repeats):
                residual = x
                x = self.bns[i][level_index](self.convs[i](x), training=training)
                x = activation(x, self.act_type, training)
                if i > 0 and self.survival_prob:
                    x = drop_connect(x, training, self.survival_prob) + residual
            outputs.append(self.predict(x))
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "prefix": self.prefix,
            "outputs_per_anchor": self.outputs_per_anchor,
            "num_anchors": self.num_anchors,
            "filters": self.filters,
            "min_level": self.min_level,
            "max_level": self.max_level,
            "repeats": self.repeats,
            "act_type": self.act_type,
            "separable_conv": self.separable_conv,
            "survival_prob": self.survival_prob,
            "predict_bias": self.predict_bias,
        }


def class_net(num_classes: int, num_anchors: int, **kwargs: Any) -> HeadNet:
    """Class logits per anchor (sigmoid, no background channel), bias set to the 0.01 prior."""
    prior_bias = -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR)
    return HeadNet("class", num_classes, num_anchors, predict_bias=prior_bias, name="class_net", **kwargs)


def box_net(num_anchors: int, **kwargs: Any) -> HeadNet:
    """Box regression [ty, tx, th, tw] per anchor."""
    return HeadNet("box", 4, num_anchors, name="box_net", **kwargs)


class SegmentationHead(Composite):
    """Semantic segmentation logits from the BiFPN features, automl's `SegmentationHead`.

    call(feats: list of float [batch, h_l, w_l, filters], levels min..max) ->
    float [batch, 2 * h_min, 2 * w_min, num_classes] (logits). Layers are named as automl's Keras 2 counter
    names them in a fresh model (`conv2d_transpose`, `conv2d_transpose_1`, ..., the last one the classifier),
    batch norms `bn_0`.. from the coarsest level down.
    """

    def __init__(
        self, num_classes: int, filters: int, min_level: int, max_level: int, act_type: str, **kwargs: Any
    ) -> None:
        super().__init__(**{"name": SEG_HEAD, **kwargs})
        self.num_classes = num_classes
        self.filters = filters
        self.min_level = min_level
        self.max_level = max_level
        self.act_type = act_type
        steps = max_level - min_level
        self.upsamples = [
            keras.layers.Conv2DTranspose(
                filters, 3, strides=2, padding="same", use_bias=False, name=seg_upsample_name(i)
            )
            for i in range(steps)
        ]
        self.bns = [batch_norm(f"bn_{i}") for i in range(steps)]
        self.classifier = keras.layers.Conv2DTranspose(
            num_classes, 3, strides=2, padding="same", name=seg_upsample_name(steps)
        )

    def call(self, feats: list[tf.Tensor], training: bool = False) -> tf.Tensor:
        x = feats[-1]
        for upsample, bn, skip in zip(self.upsamples, self.bns, reversed(feats[:-1]), strict=True):
            x = activation(bn(upsample(x), training=training), self.act_type, training)
            x = tf.concat([x, skip], axis=-1)
        return self.classifier(x)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "filters": self.filters,
            "min_level": self.min_level,
            "max_level": self.max_level,
            "act_type": self.act_type,
        }
