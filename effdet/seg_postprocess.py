"""Segmentation post-processing: logits at a quarter of the network input -> class maps at each image's own size.

Evaluation and inference place an image top-left in the network input, scaled by `scale` and unjittered
(effdet.data.augment.resize_and_crop), so only the window round(size * scale) of the logits, once resized to the
input, describes the image. Evaluation (effdet.seg_evaluate) resizes that window's logits bilinearly to the image
and argmaxes there; the export (`class_map`) argmaxes at the window and resizes the classes nearest, because
logits at a photo's full size cost C x height x width floats (about 1 GB for 21 classes on a 12-megapixel photo).
"""

from __future__ import annotations

import tensorflow as tf

from effdet.data.masks import IGNORE


def logits_window(logits: tf.Tensor, input_size: tuple[int, int], scale: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """float32 [window_h, window_w, C]: the logits over the part of the input an image fills.

    logits: float [h, w, C] for the network input `input_size` (height, width); scale: float32 [] input pixels
    per original pixel; size: the original (height, width). The window is resize_and_crop's scaled size.
    """
    upsampled = tf.image.resize(tf.cast(logits, tf.float32)[tf.newaxis], input_size, method="bilinear")[0]
    scaled = tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32)
    window = tf.clip_by_value(scaled, 1, tf.constant(input_size, tf.int32))
    return upsampled[: window[0], : window[1]]


def class_map(logits: tf.Tensor, input_size: tuple[int, int], scale: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """uint8 [height, width] classes of one image at its original size (height, width) = size, from its logits
    [h, w, C] (arguments as `logits_window`): argmax in the window, then a nearest resize (see the module)."""
    classes = tf.argmax(logits_window(logits, input_size, scale, size), axis=-1, output_type=tf.int32)
    at_size = tf.image.resize(tf.cast(classes, tf.uint8)[..., tf.newaxis], tf.cast(size, tf.int32), method="nearest")
    return at_size[..., 0]


def padded_class_maps(logits: tf.Tensor, input_size: tuple[int, int], image_sizes: tf.Tensor) -> tf.Tensor:
    """uint8 [N, max_height, max_width]: each image's class map at its original size, padded bottom/right with
    IGNORE so a batch of mixed sizes fits one tensor.

    logits: float [N, h, w, C] for the input `input_size`; image_sizes: [N, 2] original (height, width). Each
    image's scale is recomputed as resize_and_crop computes it (the largest that fits the input).
    """
    sizes = tf.cast(image_sizes, tf.int32)
    largest = tf.reduce_max(tf.concat([sizes, tf.ones([1, 2], tf.int32)], axis=0), axis=0)
    target = tf.constant(input_size, tf.float32)

    def one(item: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        image_logits, size = item
        scale = tf.reduce_min(target / tf.cast(size, tf.float32))
        classes = class_map(image_logits, input_size, scale, size)
        padding = [[0, largest[0] - size[0]], [0, largest[1] - size[1]]]
        return tf.pad(classes, padding, constant_values=IGNORE)

    spec = tf.TensorSpec([None, None], tf.uint8)
    return tf.map_fn(one, (logits, sizes), fn_output_signature=spec)
