"""BiFPN: the weighted bi-directional feature pyramid (paper section 3, figure 2d and equation 2).

Each cell runs a top-down pass (P_max-1 ... P_min) then a bottom-up pass (P_min+1 ... P_max). Every fused
node resamples its inputs to its level (1x1 conv + BN when the width differs; max-pool down, nearest up),
fuses them (fast normalised fusion: sum_i relu(w_i) x_i / (eps + sum_j relu(w_j)), or a plain sum), then
applies activation -> separable 3x3 conv -> BN. Names follow the official checkpoints:
`fpn_cells/cell_0/fnode1/resample_0_2_6/conv2d`, `fpn_cells/cell_0/fnode0/WSM`, `.../op_after_combine5/conv`.
The graph (`bifpn_nodes`) and these scope names are in `structure.py`, which describes the network without
TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
import tensorflow as tf

from effdet.model.layers import Composite, activation, batch_norm
from effdet.model.structure import (
    FusionNode,
    bifpn_nodes,
    fusion_weight_shape,
    op_after_combine_name,
    resample_name,
    tf1_name,
)

FUSION_EPSILON = 1e-4


def upsample_nearest(x: tf.Tensor, target_height: int, target_width: int) -> tf.Tensor:
    """Nearest-neighbour upsampling. A whole factor k on both axes is done as k*k copies moved into place
    (concat + depth_to_space): the same values as tf.image.resize, in ops that TFLite's XNNPACK delegate runs
    (it does not take RESIZE_NEAREST_NEIGHBOR, so every resize split the graph); other sizes use the resize."""
    height, width = int(x.shape[1]), int(x.shape[2])
    factor = target_height // height
    if factor > 1 and target_height == factor * height and target_width == factor * width:
        return tf.nn.depth_to_space(tf.concat([x] * factor * factor, axis=-1), factor)
    return tf.image.resize(x, [target_height, target_width], method="nearest")


def add_all(tensors: list[tf.Tensor]) -> tf.Tensor:
    """The sum, added left to right: tf.add_n's value, in ADD ops (XNNPACK does not take ADD_N)."""
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


class ResampleFeatureMap(Composite):
    """Bring a feature map to a target level: 1x1 conv (+BN) to the target width if it differs, then
    max-pool (downsampling) or nearest-neighbour resize (upsampling) to the target size."""

    def __init__(
        self,
        target_filters: int,
        input_filters: int,
        apply_bn: bool = True,
        conv_after_downsample: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target_filters = target_filters
        self.input_filters = input_filters
        self.apply_bn = apply_bn
        self.conv_after_downsample = conv_after_downsample
        self.conv2d: keras.layers.Conv2D | None = None
        self.bn: keras.layers.BatchNormalization | None = None
        if input_filters != target_filters:
            self.conv2d = keras.layers.Conv2D(target_filters, 1, padding="same", name="conv2d")
            if apply_bn:
                self.bn = batch_norm("bn")

    def _project(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        if self.conv2d is not None:
            x = self.conv2d(x)
            if self.bn is not None:
                x = self.bn(x, training=training)
        return x

    def call(self, x: tf.Tensor, target_height: int, target_width: int, training: bool = False) -> tf.Tensor:
        height, width = int(x.shape[1]), int(x.shape[2])
        if height > target_height and width > target_width:
            if not self.conv_after_downsample:
                x = self._project(x, training)
            stride_h, stride_w = (height - 1) // target_height + 1, (width - 1) // target_width + 1
            x = tf.nn.max_pool2d(x, ksize=[stride_h + 1, stride_w + 1], strides=[stride_h, stride_w], padding="SAME")
            if self.conv_after_downsample:
                x = self._project(x, training)
            return x
        if height <= target_height and width <= target_width:
            x = self._project(x, training)
            if height < target_height or width < target_width:
                x = upsample_nearest(x, target_height, target_width)
            return x
        raise ValueError(f"cannot resample a {height}x{width} feature map to {target_height}x{target_width}")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "target_filters": self.target_filters,
            "input_filters": self.input_filters,
            "apply_bn": self.apply_bn,
            "conv_after_downsample": self.conv_after_downsample,
        }


class OpAfterCombine(Composite):
    """What follows a fusion: activation -> (separable) 3x3 conv -> BN (or conv -> BN -> activation)."""

    def __init__(
        self, filters: int, act_type: str, separable_conv: bool, conv_bn_act_pattern: bool, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.act_type = act_type
        self.separable_conv = separable_conv
        self.conv_bn_act_pattern = conv_bn_act_pattern
        conv = keras.layers.SeparableConv2D if separable_conv else keras.layers.Conv2D
        self.conv = conv(filters, 3, padding="same", use_bias=not conv_bn_act_pattern, name="conv")
        self.bn = batch_norm("bn")

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if not self.conv_bn_act_pattern:
            x = activation(x, self.act_type, training)
        x = self.bn(self.conv(x), training=training)
        if self.conv_bn_act_pattern:
            x = activation(x, self.act_type, training)
        return x

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "act_type": self.act_type,
            "separable_conv": self.separable_conv,
            "conv_bn_act_pattern": self.conv_bn_act_pattern,
        }


@dataclass(frozen=True)
class FusionSettings:
    """How every node of a BiFPN fuses and convolves (automl's fpn_* and conv hyperparameters)."""

    filters: int
    weight_method: str
    act_type: str
    separable_conv: bool = True
    apply_bn_for_resampling: bool = True
    conv_after_downsample: bool = False
    conv_bn_act_pattern: bool = False


class FNode(keras.layers.Layer):
    """One fused node: resample each input to the node's level, fuse with learned weights, convolve."""

    def __init__(
        self,
        node: FusionNode,
        min_level: int,
        input_filters: list[int],
        settings: FusionSettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.node = node
        self.min_level = min_level
        self.input_filters = input_filters
        self.settings = settings
        num_feats = len(input_filters)
        self.resamples = [
            ResampleFeatureMap(
                settings.filters,
                input_filters[offset],
                settings.apply_bn_for_resampling,
                settings.conv_after_downsample,
                name=resample_name(i, offset, num_feats),
            )
            for i, offset in enumerate(node.inputs)
        ]
        self.op_after_combine = OpAfterCombine(
            settings.filters,
            settings.act_type,
            settings.separable_conv,
            settings.conv_bn_act_pattern,
            name=op_after_combine_name(num_feats),
        )

    def build(self, input_shape: Any) -> None:
        self.fusion_weights = []
        shape = fusion_weight_shape(self.settings.weight_method, self.settings.filters)
        if shape is not None:
            for i in range(len(self.node.inputs)):
                self.fusion_weights.append(self.add_weight(name=tf1_name("WSM", i), shape=shape, initializer="ones"))

    def _fuse(self, nodes: list[tf.Tensor]) -> tf.Tensor:
        method = self.settings.weight_method
        if method == "sum":
            return add_all(nodes)
        weights = [tf.cast(w, nodes[0].dtype) for w in self.fusion_weights]
        if method in ("attn", "channel_attn"):
            normalised = tf.nn.softmax(tf.stack(weights, axis=-1), axis=-1)
            return add_all([node * normalised[..., i] for i, node in enumerate(nodes)])
        relu_weights = [tf.nn.relu(w) for w in weights]
        total = add_all(relu_weights) + FUSION_EPSILON
        return add_all([node * w / total for node, w in zip(nodes, relu_weights, strict=True)])

    def call(self, feats: list[tf.Tensor], training: bool = False) -> tf.Tensor:
        """feats: the cell's inputs P_min..P_max then the nodes made so far, float [batch, h, w, c] each."""
        target = feats[self.node.level - self.min_level]
        height, width = int(target.shape[1]), int(target.shape[2])
        resampled = [
            layer(feats[offset], target_height=height, target_width=width, training=training)
            for layer, offset in zip(self.resamples, self.node.inputs, strict=True)
        ]
        return self.op_after_combine(self._fuse(resampled), training=training)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "node": asdict(self.node),
            "min_level": self.min_level,
            "input_filters": self.input_filters,
            "settings": asdict(self.settings),
        }


class FPNCell(Composite):
    """One BiFPN layer: all fused nodes in order; returns the newest feature of every level."""

    def __init__(
        self,
        min_level: int,
        max_level: int,
        input_filters: list[int],
        settings: FusionSettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_level = min_level
        self.max_level = max_level
        self.input_filters = input_filters
        self.settings = settings
        self.nodes = bifpn_nodes(min_level, max_level)
        widths = list(input_filters)
        self.fnodes = []
        for i, node in enumerate(self.nodes):
            self.fnodes.append(FNode(node, min_level, list(widths), settings, name=f"fnode{i}"))
            widths.append(settings.filters)

    def call(self, feats: list[tf.Tensor], training: bool = False) -> list[tf.Tensor]:
        """feats: P_min..P_max, float [batch, h_l, w_l, c_l]; returns P_min..P_max with `filters` channels."""
        all_feats = list(feats)
        newest = {level: i for i, level in enumerate(range(self.min_level, self.max_level + 1))}
        for node, fnode in zip(self.nodes, self.fnodes, strict=True):
            all_feats.append(fnode(all_feats, training=training))
            newest[node.level] = len(all_feats) - 1
        return [all_feats[newest[level]] for level in range(self.min_level, self.max_level + 1)]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "min_level": self.min_level,
            "max_level": self.max_level,
            "input_filters": self.input_filters,
            "settings": asdict(self.settings),
        }


class FPNCells(Composite):
    """`fpn_cell_repeats` stacked BiFPN layers; the first adapts the backbone widths."""

    def __init__(
        self,
        min_level: int,
        max_level: int,
        input_filters: list[int],
        repeats: int,
        settings: FusionSettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_level = min_level
        self.max_level = max_level
        self.input_filters = input_filters
        self.repeats = repeats
        self.settings = settings
        uniform = [settings.filters] * len(input_filters)
        self.cells = [
            FPNCell(min_level, max_level, input_filters if i == 0 else uniform, settings, name=f"cell_{i}")
            for i in range(repeats)
        ]

    def call(self, feats: list[tf.Tensor], training: bool = False) -> list[tf.Tensor]:
        for cell in self.cells:
            feats = cell(feats, training=training)
        return feats

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "min_level": self.min_level,
            "max_level": self.max_level,
            "input_filters": self.input_filters,
            "repeats": self.repeats,
            "settings": asdict(self.settings),
        }
