"""AutoAugment policies for detection (Zoph et al. 2019, "Learning Data Augmentation Strategies for Object
Detection") and RandAugment (Cubuk et al. 2020), applied to one image and its boxes inside a tf.data map.

A policy is a list of sub-policies; one is drawn per image and its (op, probability, level) steps are applied
in order (the ops are in autoaugment_ops.py). RandAugment draws one op per layer and applies it at a fixed
magnitude. Randomness is stateless: the same seed gives the same result.
"""

from __future__ import annotations

import tensorflow as tf

from effdet.data.autoaugment_ops import OPS, apply_step, fold_seed, random_int

RANDAUGMENT_LAYERS = 1
RANDAUGMENT_MAGNITUDE = 15.0
"""google/automl's RandAugment settings for detection (one op at magnitude 15 on the 0..10 scale)."""

Step = tuple[str, float, float]
"""(op name, probability, level)."""

Policy = list[list[Step]]

POLICIES: dict[str, Policy] = {
    # v0: the policy behind the paper's reported COCO results; v1-v3: further policies from the same search.
    "v0": [
        [("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)],
        [("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)],
        [("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)],
        [("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)],
        [("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)],
    ],
    "v1": [
        [("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)],
        [("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)],
        [("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)],
        [("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)],
        [("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)],
        [("Color", 0.0, 0), ("ShearX_Only_BBoxes", 0.8, 4)],
        [("ShearY_Only_BBoxes", 0.8, 2), ("Flip_Only_BBoxes", 0.0, 10)],
        [("Equalize", 0.6, 10), ("TranslateX_BBox", 0.2, 2)],
        [("Color", 1.0, 10), ("TranslateY_Only_BBoxes", 0.4, 6)],
        [("Rotate_BBox", 0.8, 10), ("Contrast", 0.0, 10)],
        [("Cutout", 0.2, 2), ("Brightness", 0.8, 10)],
        [("Color", 1.0, 6), ("Equalize", 1.0, 2)],
        [("Cutout_Only_BBoxes", 0.4, 6), ("TranslateY_Only_BBoxes", 0.8, 2)],
        [("Color", 0.2, 8), ("Rotate_BBox", 0.8, 10)],
        [("Sharpness", 0.4, 4), ("TranslateY_Only_BBoxes", 0.0, 4)],
        [("Sharpness", 1.0, 4), ("SolarizeAdd", 0.4, 4)],
        [("Rotate_BBox", 1.0, 8), ("Sharpness", 0.2, 8)],
        [("ShearY_BBox", 0.6, 10), ("Equalize_Only_BBoxes", 0.6, 8)],
        [("ShearX_BBox", 0.2, 6), ("TranslateY_Only_BBoxes", 0.2, 10)],
        [("SolarizeAdd", 0.6, 8), ("Brightness", 0.8, 10)],
    ],
    "v2": [
        [("Color", 0.0, 6), ("Cutout", 0.6, 8), ("Sharpness", 0.4, 8)],
        [("Rotate_BBox", 0.4, 8), ("Sharpness", 0.4, 2), ("Rotate_BBox", 0.8, 10)],
        [("TranslateY_BBox", 1.0, 8), ("AutoContrast", 0.8, 2)],
        [("AutoContrast", 0.4, 6), ("ShearX_BBox", 0.8, 8), ("Brightness", 0.0, 10)],
        [("SolarizeAdd", 0.2, 6), ("Contrast", 0.0, 10), ("AutoContrast", 0.6, 0)],
        [("Cutout", 0.2, 0), ("Solarize", 0.8, 8), ("Color", 1.0, 4)],
        [("TranslateY_BBox", 0.0, 4), ("Equalize", 0.6, 8), ("Solarize", 0.0, 10)],
        [("TranslateY_BBox", 0.2, 2), ("ShearY_BBox", 0.8, 8), ("Rotate_BBox", 0.8, 8)],
        [("Cutout", 0.8, 8), ("Brightness", 0.8, 8), ("Cutout", 0.2, 2)],
        [("Color", 0.8, 4), ("TranslateY_BBox", 1.0, 6), ("Rotate_BBox", 0.6, 6)],
        [("Rotate_BBox", 0.6, 10), ("BBox_Cutout", 1.0, 4), ("Cutout", 0.2, 8)],
        [("Rotate_BBox", 0.0, 0), ("Equalize", 0.6, 6), ("ShearY_BBox", 0.6, 8)],
        [("Brightness", 0.8, 8), ("AutoContrast", 0.4, 2), ("Brightness", 0.2, 2)],
        [("TranslateY_BBox", 0.4, 8), ("Solarize", 0.4, 6), ("SolarizeAdd", 0.2, 10)],
        [("Contrast", 1.0, 10), ("SolarizeAdd", 0.2, 8), ("Equalize", 0.2, 4)],
    ],
    "v3": [
        [("Posterize", 0.8, 2), ("TranslateX_BBox", 1.0, 8)],
        [("BBox_Cutout", 0.2, 10), ("Sharpness", 1.0, 8)],
        [("Rotate_BBox", 0.6, 8), ("Rotate_BBox", 0.8, 10)],
        [("Equalize", 0.8, 10), ("AutoContrast", 0.2, 10)],
        [("SolarizeAdd", 0.2, 2), ("TranslateY_BBox", 0.2, 8)],
        [("Sharpness", 0.0, 2), ("Color", 0.4, 8)],
        [("Equalize", 1.0, 8), ("TranslateY_BBox", 1.0, 8)],
        [("Posterize", 0.6, 2), ("Rotate_BBox", 0.0, 10)],
        [("AutoContrast", 0.6, 0), ("Rotate_BBox", 1.0, 6)],
        [("Equalize", 0.0, 4), ("Cutout", 0.8, 10)],
        [("Brightness", 1.0, 2), ("TranslateY_BBox", 1.0, 6)],
        [("Contrast", 0.0, 2), ("ShearY_BBox", 0.8, 0)],
        [("AutoContrast", 0.8, 10), ("Contrast", 0.2, 10)],
        [("Rotate_BBox", 1.0, 10), ("Cutout", 1.0, 10)],
        [("SolarizeAdd", 0.8, 6), ("Equalize", 0.8, 8)],
    ],
}
"""google/automl's detection policies: each sub-policy is a list of (op, probability, level) steps."""

RANDAUGMENT_OPS = (
    "Equalize",
    "Solarize",
    "Color",
    "Cutout",
    "SolarizeAdd",
    "TranslateX_BBox",
    "TranslateY_BBox",
    "ShearX_BBox",
    "ShearY_BBox",
    "Rotate_BBox",
)
"""The ops RandAugment draws from for detection (as google/automl)."""


def _sub_policy(steps: list[Step], image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    for index, (name, probability, level) in enumerate(steps):
        image, boxes = apply_step(image, boxes, name, probability, level, fold_seed(seed, index))
    return image, boxes


def _autoaugment(policy: Policy, image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Draw one sub-policy and apply it."""
    choice = random_int(fold_seed(seed, 0), 0, len(policy))
    branches = [lambda steps=steps: _sub_policy(steps, image, boxes, fold_seed(seed, 1)) for steps in policy]
    return tf.switch_case(choice, branches)


def _randaugment(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """RandAugment: RANDAUGMENT_LAYERS times, one op drawn uniformly, applied at RANDAUGMENT_MAGNITUDE."""
    for layer in range(RANDAUGMENT_LAYERS):
        image, boxes = _randaugment_layer(image, boxes, fold_seed(seed, layer))
    return image, boxes


def _randaugment_layer(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    choice = random_int(fold_seed(seed, 0), 0, len(RANDAUGMENT_OPS))
    op_seed = fold_seed(seed, 1)
    branches = [lambda op=OPS[name]: op(image, boxes, RANDAUGMENT_MAGNITUDE, op_seed) for name in RANDAUGMENT_OPS]
    return tf.switch_case(choice, branches)


@tf.autograph.experimental.do_not_convert
def distort(image: tf.Tensor, boxes: tf.Tensor, policy: str, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment one image with AutoAugment policy 'v0'..'v3' or RandAugment ('randaug').

    image: uint8 (or float 0..255) [H, W, 3]; boxes: float32 [N, 4] as [ymin, xmin, ymax, xmax] normalised;
    seed: int [2]. Returns the image in its own dtype and shape and the boxes [N, 4], same order, clipped to
    [0, 1] (a box moved out of the image has zero area).
    """
    if policy != "randaug" and policy not in POLICIES:
        raise ValueError(f"unknown autoaugment_policy {policy!r}; use one of {[*POLICIES, 'randaug']} or null")
    dtype = image.dtype
    pixels = image if dtype == tf.uint8 else tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    boxes = tf.cast(boxes, tf.float32)
    if policy == "randaug":
        pixels, moved = _randaugment(pixels, boxes, seed)
    else:
        pixels, moved = _autoaugment(POLICIES[policy], pixels, boxes, seed)
    result = tf.cast(pixels, dtype)
    result.set_shape(image.shape)
    moved.set_shape(boxes.shape)
    return result, moved
