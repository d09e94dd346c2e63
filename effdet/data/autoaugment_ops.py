"""The image operations of AutoAugment for detection (Zoph et al. 2019, "Learning Data Augmentation Strategies for
Object Detection"), as pure TensorFlow ops that run inside a tf.data map; the policies are in autoaugment.py.

Every op takes a uint8 image [H, W, 3] and boxes float32 [N, 4] as [ymin, xmin, ymax, xmax] normalised to
[0, 1], and returns both with the same shapes. Ops come in the paper's three kinds: colour ops change pixels
and leave boxes alone; geometric ops (`*_BBox`) warp the image and move each box to the box enclosing its
warped corners; box-only ops (`*_Only_BBoxes`) change the pixels inside each box, each box with a third of
the step's probability. A magnitude is the paper's level 0..10; each op turns it into its own argument
(degrees, pixels, a blend factor) with google/automl's constants, so that automl's policies mean the same
here. Randomness is stateless: the same seed gives the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

MAX_LEVEL = 10.0
"""The paper's largest magnitude; an op's argument at this level is its constant below."""

FILL = 128
"""Grey written where an op leaves pixels empty (warped-in borders, cutouts)."""

ROTATE_DEGREES = 30.0
SHEAR = 0.3
TRANSLATE_PIXELS = 250.0
BOX_TRANSLATE_PIXELS = 120.0
CUTOUT_PIXELS = 100
BOX_CUTOUT_PIXELS = 50
BBOX_CUTOUT_FRACTION = 0.75
BOX_ONLY_PROBABILITY_SCALE = 1.0 / 3.0
"""Box-only steps apply to each box with this fraction of their probability (so crowded images keep most boxes)."""

ImageOp = Callable[[tf.Tensor, float, tf.Tensor], tf.Tensor]
"""(uint8 image [H, W, 3], level, seed [2]) -> uint8 image [H, W, 3]."""

BoxOp = Callable[[tf.Tensor, tf.Tensor, float, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
"""(uint8 image, boxes float32 [N, 4] normalised yxyx, level, seed [2]) -> (image, boxes)."""

Warp = Callable[[tf.Tensor, tf.Tensor, float, tf.Tensor], tf.Tensor]
"""(height, width float32, level, seed) -> float32 [3, 3] mapping input (x, y, 1) to output pixels."""


def fold_seed(seed: tf.Tensor, index: int | tf.Tensor) -> tf.Tensor:
    """A new seed for one random draw, distinct per index."""
    return tf.random.experimental.stateless_fold_in(seed, index)


def _uniform(seed: tf.Tensor) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed)


def random_int(seed: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """A uniform int32 in [low, high)."""
    return tf.random.stateless_uniform([], seed, low, high, dtype=tf.int32)


def _random_sign(value: float, seed: tf.Tensor) -> tf.Tensor:
    """value or -value with equal chance (the paper's geometric magnitudes go both ways)."""
    return tf.where(_uniform(seed) < 0.5, -value, value)


def _size(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.cast(tf.shape(image), tf.float32)
    return shape[0], shape[1]


# Colour ops.


def _blend(base: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
    """PIL ImageEnhance: base + factor * (image - base), clipped; 0 gives base, 1 the image, above 1 extrapolates."""
    base = tf.cast(base, tf.float32)
    mixed = base + factor * (tf.cast(image, tf.float32) - base)
    return tf.cast(tf.clip_by_value(tf.round(mixed), 0.0, 255.0), tf.uint8)


def _enhance_factor(level: float) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


def color(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Saturation: blend towards the greyscale image (PIL Color)."""
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    return _blend(grey, image, _enhance_factor(level))


def contrast(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Contrast: blend towards the image's mean grey (PIL Contrast)."""
    mean = tf.reduce_mean(tf.cast(tf.image.rgb_to_grayscale(image), tf.float32))
    return _blend(tf.fill(tf.shape(image), mean), image, _enhance_factor(level))


def brightness(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Brightness: blend towards black (PIL Brightness)."""
    return _blend(tf.zeros_like(image), image, _enhance_factor(level))


def sharpness(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Sharpness: blend towards PIL's 3x3 smoothing of the image (border pixels stay as they are)."""
    pixels = tf.cast(image, tf.float32)
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(pixels[tf.newaxis], kernel, [1, 1, 1, 1], "SAME")[0]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows, cols = tf.range(height)[:, tf.newaxis], tf.range(width)[tf.newaxis, :]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return _blend(tf.where(interior[..., tf.newaxis], tf.round(smooth), pixels), image, _enhance_factor(level))


def posterize(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Keep the top bits of each channel: level 10 keeps 4, low levels keep 1 (automl's shift saturates at 7)."""
    shift = tf.constant(8 - max(1, int(level / MAX_LEVEL * 4)), tf.uint8)
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def solarize(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Invert every pixel value at or above a threshold (256 at level 10: nothing; lower levels invert more)."""
    threshold = int(level / MAX_LEVEL * 256)
    pixels = tf.cast(image, tf.int32)
    return tf.cast(tf.where(pixels < threshold, pixels, 255 - pixels), tf.uint8)


def solarize_add(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Brighten the pixel values below 128 by up to 110 (level 10), clipped at 255."""
    addition = int(level / MAX_LEVEL * 110)
    pixels = tf.cast(image, tf.int32)
    return tf.cast(tf.where(pixels < 128, tf.minimum(pixels + addition, 255), pixels), tf.uint8)


def autocontrast(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Stretch each channel so its darkest value becomes 0 and its brightest 255 (PIL autocontrast)."""
    pixels = tf.cast(image, tf.float32)
    low = tf.reduce_min(pixels, axis=[0, 1])
    high = tf.reduce_max(pixels, axis=[0, 1])
    stretched = (pixels - low) * 255.0 / tf.maximum(high - low, 1.0)
    return tf.cast(tf.clip_by_value(tf.where(high > low, stretched, pixels), 0.0, 255.0), tf.uint8)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
    """PIL's histogram equalisation of one int32 channel [H, W]: the lookup table from the cumulative histogram."""
    histogram = tf.math.bincount(tf.reshape(channel, [-1]), minlength=256, maxlength=256)
    last = tf.gather(histogram, tf.reduce_max(tf.where(histogram > 0)))
    step = (tf.reduce_sum(histogram) - last) // 255
    table = (tf.cumsum(histogram, exclusive=True) + step // 2) // tf.maximum(step, 1)
    return tf.where(step > 0, tf.gather(tf.clip_by_value(table, 0, 255), channel), channel)


def equalize(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Equalise each channel's histogram (PIL ImageOps.equalize)."""
    pixels = tf.cast(image, tf.int32)
    return tf.cast(tf.stack([_equalize_channel(pixels[..., c]) for c in range(3)], axis=-1), tf.uint8)


def _fill_window(image: tf.Tensor, top: tf.Tensor, left: tf.Tensor, bottom: tf.Tensor, right: tf.Tensor) -> tf.Tensor:
    """The image with rows [top, bottom) x columns [left, right) set to grey (bounds may lie outside it)."""
    rows = tf.range(tf.shape(image)[0])[:, tf.newaxis]
    cols = tf.range(tf.shape(image)[1])[tf.newaxis, :]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    return tf.where(inside[..., tf.newaxis], tf.constant(FILL, image.dtype), image)


def _cutout(half_side_at_max: int) -> ImageOp:
    """Cutout (DeVries & Taylor 2017): a grey square of side 2 * half at a random centre in the image."""

    def cutout(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
        half = int(level / MAX_LEVEL * half_side_at_max)
        centre_y = random_int(fold_seed(seed, 0), 0, tf.shape(image)[0])
        centre_x = random_int(fold_seed(seed, 1), 0, tf.shape(image)[1])
        return _fill_window(image, centre_y - half, centre_x - half, centre_y + half, centre_x + half)

    return cutout


def flip(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Mirror left-right (used inside boxes; the pipeline's own flip handles whole images)."""
    return tf.image.flip_left_right(image)


# Geometric ops: an affine map in continuous pixel coordinates (pixel i spans [i, i + 1]), x right, y down.


def _matrix(rows: list[list[tf.Tensor | float]]) -> tf.Tensor:
    return tf.stack([tf.stack([tf.cast(value, tf.float32) for value in row]) for row in rows])


def _rotation(height: tf.Tensor, width: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """Rotation about the image centre by up to 30 degrees (level 10), either way."""
    radians = _random_sign(level / MAX_LEVEL * ROTATE_DEGREES, seed) * math.pi / 180.0
    cos, sin = tf.cos(radians), tf.sin(radians)
    cx, cy = width / 2.0, height / 2.0
    return _matrix([[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy], [0.0, 0.0, 1.0]])


def _shear_x(height: tf.Tensor, width: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """x += s * y with |s| up to 0.3 (level 10)."""
    shear = _random_sign(level / MAX_LEVEL * SHEAR, seed)
    return _matrix([[1.0, shear, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _shear_y(height: tf.Tensor, width: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
    """y += s * x with |s| up to 0.3 (level 10)."""
    shear = _random_sign(level / MAX_LEVEL * SHEAR, seed)
    return _matrix([[1.0, 0.0, 0.0], [shear, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _translation(pixels_at_max: float, horizontal: bool) -> Warp:
    """A shift by up to pixels_at_max pixels (level 10), either way, along x or y."""

    def translation(height: tf.Tensor, width: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
        shift = _random_sign(level / MAX_LEVEL * pixels_at_max, seed)
        dx, dy = (shift, 0.0) if horizontal else (0.0, shift)
        return _matrix([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])

    return translation


def _transform(image: tf.Tensor, forward: tf.Tensor) -> tf.Tensor:
    """Warp the image by `forward` (nearest pixel; pixels that come from outside the image are grey)."""
    to_centre = tf.constant([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    from_centre = tf.constant([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    # The kernel maps each output pixel index back to the input pixel index it samples.
    backward = from_centre @ tf.linalg.inv(forward) @ to_centre
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=tf.reshape(backward / backward[2, 2], [9])[tf.newaxis, :8],
        output_shape=tf.shape(image)[:2],
        fill_value=float(FILL),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0]
    warped.set_shape(image.shape)
    return warped


def move_boxes(boxes: tf.Tensor, forward: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Boxes float32 [N, 4] normalised yxyx -> the boxes enclosing their four corners mapped by `forward`,
    clipped to the image (a box moved out of it keeps zero area and is dropped later by the pipeline)."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes * tf.stack([height, width, height, width]), axis=-1)
    xs = tf.stack([xmin, xmax, xmin, xmax], axis=-1)
    ys = tf.stack([ymin, ymin, ymax, ymax], axis=-1)
    new_x = forward[0, 0] * xs + forward[0, 1] * ys + forward[0, 2]
    new_y = forward[1, 0] * xs + forward[1, 1] * ys + forward[1, 2]
    moved = tf.stack(
        [
            tf.reduce_min(new_y, axis=-1) / height,
            tf.reduce_min(new_x, axis=-1) / width,
            tf.reduce_max(new_y, axis=-1) / height,
            tf.reduce_max(new_x, axis=-1) / width,
        ],
        axis=-1,
    )
    return tf.clip_by_value(moved, 0.0, 1.0)


def _warp_image(warp: Warp) -> ImageOp:
    """The image-only op of a warp (for box-only steps, applied to a box's pixels)."""

    def op(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
        height, width = _size(image)
        return _transform(image, warp(height, width, level, seed))

    return op


def _warp_with_boxes(warp: Warp) -> BoxOp:
    """The op that warps the image and moves its boxes alike."""

    def op(image: tf.Tensor, boxes: tf.Tensor, level: float, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        height, width = _size(image)
        forward = warp(height, width, level, seed)
        return _transform(image, forward), move_boxes(boxes, forward, height, width)

    return op


def _keep_boxes(op: ImageOp) -> BoxOp:
    """A colour op as a BoxOp: boxes pass through unchanged."""

    def wrapped(image: tf.Tensor, boxes: tf.Tensor, level: float, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return op(image, level, seed), boxes

    return wrapped


def _pixel_window(box: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """(top, left, bottom, right) int32 pixel bounds covering a normalised box, at least one pixel, in the image."""
    size = tf.cast(tf.stack([height, width]), tf.float32)
    low = tf.cast(tf.floor(box[:2] * size), tf.int32)
    high = tf.cast(tf.math.ceil(box[2:] * size), tf.int32)
    top = tf.clip_by_value(low[0], 0, height - 1)
    left = tf.clip_by_value(low[1], 0, width - 1)
    return top, left, tf.clip_by_value(high[0], top + 1, height), tf.clip_by_value(high[1], left + 1, width)


def bbox_cutout(image: tf.Tensor, boxes: tf.Tensor, level: float, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Cut a grey rectangle (up to 0.75 of the box's sides at level 10) centred inside one random box."""
    fraction = level / MAX_LEVEL * BBOX_CUTOUT_FRACTION
    height, width = tf.shape(image)[0], tf.shape(image)[1]

    def cut() -> tf.Tensor:
        box = boxes[random_int(fold_seed(seed, 0), 0, tf.shape(boxes)[0])]
        top, left, bottom, right = _pixel_window(box, height, width)
        half_h = tf.cast(fraction * tf.cast(bottom - top, tf.float32) / 2.0, tf.int32)
        half_w = tf.cast(fraction * tf.cast(right - left, tf.float32) / 2.0, tf.int32)
        centre_y = random_int(fold_seed(seed, 1), top, bottom)
        centre_x = random_int(fold_seed(seed, 2), left, right)
        return _fill_window(image, centre_y - half_h, centre_x - half_w, centre_y + half_h, centre_x + half_w)

    return tf.cond(tf.shape(boxes)[0] > 0, cut, lambda: image), boxes


def _inside_each_box(
    op: ImageOp, image: tf.Tensor, boxes: tf.Tensor, level: float, probability: float, seed: tf.Tensor
) -> tf.Tensor:
    """Apply an image op to the pixels of each box (as if cut out, changed, pasted back), each with `probability`."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]

    def body(index: tf.Tensor, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        box_seed = fold_seed(seed, index)

        def changed() -> tf.Tensor:
            top, left, bottom, right = _pixel_window(boxes[index], height, width)
            patch = op(image[top:bottom, left:right], level, fold_seed(box_seed, 1))
            placed = tf.pad(patch, [[top, height - bottom], [left, width - right], [0, 0]])
            rows = tf.range(height)[:, tf.newaxis]
            cols = tf.range(width)[tf.newaxis, :]
            inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
            result = tf.where(inside[..., tf.newaxis], placed, image)
            result.set_shape(image.shape)
            return result

        return index + 1, tf.cond(_uniform(box_seed) < probability, changed, lambda: image)

    _, image = tf.while_loop(lambda index, _: index < tf.shape(boxes)[0], body, [tf.constant(0), image])
    return image


OPS: dict[str, BoxOp] = {
    "AutoContrast": _keep_boxes(autocontrast),
    "Equalize": _keep_boxes(equalize),
    "Posterize": _keep_boxes(posterize),
    "Solarize": _keep_boxes(solarize),
    "SolarizeAdd": _keep_boxes(solarize_add),
    "Color": _keep_boxes(color),
    "Contrast": _keep_boxes(contrast),
    "Brightness": _keep_boxes(brightness),
    "Sharpness": _keep_boxes(sharpness),
    "Cutout": _keep_boxes(_cutout(CUTOUT_PIXELS)),
    "BBox_Cutout": bbox_cutout,
    "Rotate_BBox": _warp_with_boxes(_rotation),
    "ShearX_BBox": _warp_with_boxes(_shear_x),
    "ShearY_BBox": _warp_with_boxes(_shear_y),
    "TranslateX_BBox": _warp_with_boxes(_translation(TRANSLATE_PIXELS, horizontal=True)),
    "TranslateY_BBox": _warp_with_boxes(_translation(TRANSLATE_PIXELS, horizontal=False)),
}
"""Whole-image ops by the paper's names."""

BOX_ONLY_OPS: dict[str, ImageOp] = {
    "Rotate_Only_BBoxes": _warp_image(_rotation),
    "ShearX_Only_BBoxes": _warp_image(_shear_x),
    "ShearY_Only_BBoxes": _warp_image(_shear_y),
    "TranslateX_Only_BBoxes": _warp_image(_translation(BOX_TRANSLATE_PIXELS, horizontal=True)),
    "TranslateY_Only_BBoxes": _warp_image(_translation(BOX_TRANSLATE_PIXELS, horizontal=False)),
    "Flip_Only_BBoxes": flip,
    "Solarize_Only_BBoxes": solarize,
    "Equalize_Only_BBoxes": equalize,
    "Cutout_Only_BBoxes": _cutout(BOX_CUTOUT_PIXELS),
}
"""Ops applied to the pixels inside each box (boxes do not move)."""


def apply_step(
    image: tf.Tensor, boxes: tf.Tensor, name: str, probability: float, level: float, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply one (op, probability, level) step: the whole op with `probability`, or each box with a third of it."""
    if name in BOX_ONLY_OPS:
        scaled = probability * BOX_ONLY_PROBABILITY_SCALE
        if scaled <= 0.0:
            return image, boxes
        return _inside_each_box(BOX_ONLY_OPS[name], image, boxes, level, scaled, seed), boxes
    if name not in OPS:
        raise ValueError(f"unknown augmentation op {name!r}; use one of {sorted([*OPS, *BOX_ONLY_OPS])}")
    op = OPS[name]
    if probability <= 0.0:
        return image, boxes
    if probability >= 1.0:
        return op(image, boxes, level, fold_seed(seed, 1))
    return tf.cond(
        _uniform(fold_seed(seed, 0)) < probability,
        lambda: op(image, boxes, level, fold_seed(seed, 1)),
        lambda: (image, boxes),
    )
