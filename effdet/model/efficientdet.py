"""EfficientDet (Tan, Pang, Le, CVPR 2020): EfficientNet backbone -> BiFPN -> shared class and box nets.

`build_model(config)` is the one factory every entry point uses. Variable paths follow the official
checkpoint scopes (`efficientnet-b0/...`, `resample_p6/...`, `fpn_cells/cell_0/...`, `class_net/...`,
`box_net/...`), so automl's `var_freeze_expr` regexes mean the same here; `structure.variable_paths(config)`
lists them without building the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from effdet.config import Config, ModelConfig
from effdet.model.bifpn import FPNCells, FusionSettings, ResampleFeatureMap
from effdet.model.efficientnet import EfficientNet
from effdet.model.heads import SegmentationHead, box_net, class_net
from effdet.model.structure import BACKBONE_MAX_LEVEL, pyramid_filters


class EfficientDet(keras.Model):
    """The network without pre/post-processing, with the heads `config.heads` names, in automl's output order.

    call(images: float32 [batch, H, W, 3], normalised by mean_rgb/stddev_rgb) -> a tuple of
    class_outputs, box_outputs (object_detection): lists over levels min..max of
    float [batch, H / 2**l, W / 2**l, num_anchors * num_classes] (logits) and [..., num_anchors * 4];
    then seg_logits (segmentation): float [batch, H / 2**(min_level - 1), W / 2**(min_level - 1), seg_num_classes].
    `split_outputs` names them.
    """

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        # An empty model name keeps variable paths identical to the official checkpoint scopes.
        super().__init__(name="", **kwargs)
        self.hparams = config
        self.backbone = EfficientNet(config.backbone_name, config.act_type)
        widths = pyramid_filters(config)
        filters = config.fpn_num_filters
        # Each extra level is made from the one below it.
        self.resample_layers = [
            ResampleFeatureMap(
                filters,
                widths[level - 1],
                config.apply_bn_for_resampling,
                config.conv_after_downsample,
                name=f"resample_p{level}",
            )
            for level in range(BACKBONE_MAX_LEVEL + 1, config.max_level + 1)
        ]
        input_filters = list(widths.values())
        settings = FusionSettings(
            filters=filters,
            weight_method=config.weight_method,
            act_type=config.act_type,
            separable_conv=config.separable_conv,
            apply_bn_for_resampling=config.apply_bn_for_resampling,
            conv_after_downsample=config.conv_after_downsample,
            conv_bn_act_pattern=config.conv_bn_act_pattern,
        )
        self.fpn_cells = FPNCells(
            config.min_level,
            config.max_level,
            input_filters,
            config.fpn_cell_repeats,
            settings,
            name="fpn_cells",
        )
        head_args: dict[str, Any] = {
            "filters": filters,
            "min_level": config.min_level,
            "max_level": config.max_level,
            "repeats": config.box_class_repeats,
            "act_type": config.act_type,
            "separable_conv": config.separable_conv,
            "survival_prob": config.survival_prob,
        }
        if "object_detection" in config.heads:
            self.class_net = class_net(config.num_classes, config.num_anchors, **head_args)
            self.box_net = box_net(config.num_anchors, **head_args)
        if "segmentation" in config.heads:
            self.seg_head = SegmentationHead(
                config.seg_num_classes, filters, config.min_level, config.max_level, config.act_type
            )

    def build(self, input_shape: Any) -> None:
        """Sub-layers build on the first call (see layers.Composite: no symbolic pre-run of the network)."""
        self.built = True

    def call(self, images: tf.Tensor, training: bool = False) -> tuple[Any, ...]:
        # is_training_bn=False freezes batch statistics (and stochastic depth) even while training.
        training = bool(training) and self.hparams.is_training_bn
        config = self.hparams
        backbone_feats = self.backbone(images, training=training)
        feats = backbone_feats[config.min_level - 1 : min(config.max_level, BACKBONE_MAX_LEVEL)]
        for layer in self.resample_layers:
            height, width = int(feats[-1].shape[1]), int(feats[-1].shape[2])
            feats.append(
                layer(
                    feats[-1],
                    target_height=(height + 1) // 2,
                    target_width=(width + 1) // 2,
                    training=training,
                )
            )
        feats = self.fpn_cells(feats, training=training)
        outputs: list[Any] = []
        if "object_detection" in config.heads:
            outputs += [self.class_net(feats, training=training), self.box_net(feats, training=training)]
        if "segmentation" in config.heads:
            outputs.append(self.seg_head(feats, training=training))
        return tuple(outputs)

    def get_config(self) -> dict[str, Any]:
        return {"config": self.hparams.model_dump(mode="json")}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EfficientDet:
        return cls(ModelConfig.model_validate(config["config"]))


@dataclass(frozen=True)
class Outputs:
    """The model's outputs by name; a head the model does not have is None."""

    class_outputs: list[tf.Tensor] | None
    box_outputs: list[tf.Tensor] | None
    seg_logits: tf.Tensor | None


def split_outputs(outputs: tuple[Any, ...], heads: Sequence[str]) -> Outputs:
    """Name the tuple `EfficientDet.call` returns for a model with `heads`."""
    rest = list(outputs)
    class_outputs = box_outputs = seg_logits = None
    if "object_detection" in heads:
        class_outputs, box_outputs = rest.pop(0), rest.pop(0)
    if "segmentation" in heads:
        seg_logits = rest.pop(0)
    return Outputs(class_outputs, box_outputs, seg_logits)


def build_model(config: Config | ModelConfig) -> EfficientDet:
    """Create an EfficientDet for `config` with all its variables made (built on a tiny input)."""
    model_config = config.model if isinstance(config, Config) else config
    model = EfficientDet(model_config)
    # The network is fully convolutional: the smallest size every level divides builds the same variables.
    side = 2**model_config.max_level
    model(tf.zeros([1, side, side, 3]), training=False)
    return model


def variable_shapes(model: keras.Model) -> list[tuple[str, tuple[int, ...]]]:
    """(path, shape) of every variable, in creation order; paths are the official checkpoint names."""
    return [(v.path, tuple(int(d) for d in v.shape)) for v in model.variables]


def count_params(model: keras.Model, trainable_only: bool = True) -> int:
    """Number of parameters (the paper counts trainable ones: BN moving statistics are excluded)."""
    variables = model.trainable_variables if trainable_only else model.variables
    return int(sum(np.prod(v.shape) for v in variables))


def flatten_predictions(
    class_outputs: list[tf.Tensor], box_outputs: list[tf.Tensor], num_classes: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Concatenate per-level head outputs in anchor order (level, y, x, anchor).

    Returns class logits float [batch, num_anchors_total, num_classes] and
    box regressions float [batch, num_anchors_total, 4] as [ty, tx, th, tw].
    """
    batch = tf.shape(class_outputs[0])[0]
    classes = tf.concat([tf.reshape(c, [batch, -1, num_classes]) for c in class_outputs], axis=1)
    boxes = tf.concat([tf.reshape(b, [batch, -1, 4]) for b in box_outputs], axis=1)
    return classes, boxes
