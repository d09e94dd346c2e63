"""The tf.data input pipeline: automl TFRecords -> normalised, augmented, anchor-labelled batches.

Each element is a dict: `images` float32 [batch, H, W, 3] (normalised by mean_rgb/stddev_rgb),
`cls_targets` int32 [batch, anchors] (1-based class, 0 background), `box_targets` float32 [batch, anchors, 4],
`boxes` float32 [batch, max_instances, 4] yxyx input pixels and `classes` int32 [batch, max_instances]
(0 pads), `image_scales` float32 [batch] (original pixels per input pixel), `image_sizes` float32
[batch, 2] (original height, width), `source_ids` string [batch]; with the segmentation head, `seg_labels`
uint8 [batch, H / 2**(min_level - 1), W / 2**(min_level - 1)] (the class map moved with the image, then
nearest-sampled to the logits' size as automl's demo does; 255 where nothing counts, e.g. padding).
With `tiles` set, training also cuts each image into overlapping tiles (effdet.data.tiles) before augmenting.
Training augments in automl's order: `grid_mask` (GridMask) and `autoaugment_policy` (AutoAugment v0..v3 or
RandAugment) on the decoded uint8 image, then normalisation, horizontal flip and scale jitter (around
`target_size` when set); `scale_range` maps the placed image to [-1, 1] in training and evaluation alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from effdet.anchor_grid import anchors_for
from effdet.anchors import assign_targets
from effdet.config import Config
from effdet.data.augment import place_mask, random_horizontal_flip, resize_and_crop, to_unit_range
from effdet.data.autoaugment import distort
from effdet.data.gridmask import grid_mask
from effdet.data.masks import IGNORE
from effdet.data.shards import parse_example, record_files
from effdet.data.tiles import tile_examples

TILE_SHUFFLE = 32
"""Decoded crops held to mix tiles across images (a few hundred MB at most for 2000+ px photos)."""
AUGMENT_SEED = "augment_seed"
"""Key of the int64 [2] per-example seed build_dataset adds when an autoaugment policy or grid_mask is on."""
GRID_MASK_STREAM = 1
"""Folded into the example's seed for GridMask, so its draws do not repeat AutoAugment's."""


def _normalise(image: tf.Tensor, config: Config) -> tf.Tensor:
    mean = tf.constant(config.model.mean_rgb, tf.float32)
    std = tf.constant(config.model.stddev_rgb, tf.float32)
    return (tf.cast(image, tf.float32) - mean) / std


def _example_seed(example: dict[str, tf.Tensor], seed: int | None) -> tf.Tensor:
    """The example's own stateless seed: the one build_dataset attached, else a fresh draw."""
    if AUGMENT_SEED in example:
        return example[AUGMENT_SEED]
    return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64, seed=seed)


def _class_map(png: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """uint8 [height, width, 1]: the stored class map, or all ignore for an image without one."""
    return tf.cond(
        tf.strings.length(png) > 0,
        lambda: tf.io.decode_png(png, channels=1),
        lambda: tf.fill(tf.stack([height, width, 1]), tf.constant(IGNORE, tf.uint8)),
    )


def seg_label_size(config: Config) -> tuple[int, int]:
    """The (height, width) of the segmentation logits, where the labels are compared with them."""
    stride = 2 ** (config.model.min_level - 1)
    height, width = config.model.image_size
    return height // stride, width // stride


def make_preprocess(config: Config, training: bool, seed: int | None = None):  # type: ignore[no-untyped-def]
    """The per-example map function (parsed automl example -> model inputs and anchor targets)."""
    anchors = tf.constant(anchors_for(config.model).boxes)
    max_instances = config.input.max_instances_per_image
    target_size = config.model.image_size
    segmentation = "segmentation" in config.model.heads

    def preprocess(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = example["image"]
        if image.dtype == tf.string:
            image = tf.io.decode_image(image, channels=3, expand_animations=False)
        height = tf.cast(tf.shape(image)[0], tf.float32)
        width = tf.cast(tf.shape(image)[1], tf.float32)
        boxes = example["boxes"] * tf.stack([height, width, height, width])
        classes = example["classes"]
        if training and config.input.skip_crowd_during_training:
            not_crowd = tf.logical_not(example["is_crowd"])
            if_present = tf.shape(example["is_crowd"])[0] == tf.shape(classes)[0]
            keep = tf.cond(if_present, lambda: not_crowd, lambda: tf.ones_like(classes, tf.bool))
            boxes, classes = tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)
        if training and config.input.grid_mask:
            mask_seed = tf.random.experimental.stateless_fold_in(_example_seed(example, seed), GRID_MASK_STREAM)
            image = grid_mask(image, mask_seed)
        policy = config.input.autoaugment_policy
        if training and policy:
            size = tf.stack([height, width, height, width])
            image, normalised = distort(image, boxes / size, policy, _example_seed(example, seed))
            boxes = normalised * size
        image = _normalise(image, config)
        if segmentation:  # the class map rides along as a fourth channel, so a flip moves both alike
            class_map = _class_map(example["seg_mask"], tf.shape(image)[0], tf.shape(image)[1])
            image = tf.concat([image, tf.cast(class_map, tf.float32)], axis=-1)
        if training and config.input.input_rand_hflip:
            image, boxes = random_horizontal_flip(image, boxes, seed)
        if segmentation:
            image, class_map = image[..., :3], tf.cast(image[..., 3:], tf.uint8)
        jitter = (config.input.jitter_min, config.input.jitter_max) if training else None
        placed = resize_and_crop(image, boxes, target_size, jitter, seed, jitter_around=config.input.target_size)
        network_input = to_unit_range(placed.image) if config.model.scale_range else placed.image
        boxes = tf.boolean_mask(placed.boxes, placed.keep)
        classes = tf.boolean_mask(classes, placed.keep)
        cls_targets, box_targets, _ = assign_targets(boxes, classes, anchors)
        count = tf.shape(classes)[0]
        checked = tf.debugging.assert_less_equal(
            count,
            max_instances,
            message=f"an image has more boxes than max_instances_per_image={max_instances}; raise it in the "
            "hyperparameters (the converter reports the largest count in dataset.json)",
        )
        with tf.control_dependencies([checked]):
            pad = max_instances - count
        outputs = {}
        if segmentation:
            placed_map = place_mask(class_map, placed, target_size, IGNORE)
            outputs["seg_labels"] = tf.image.resize(placed_map, seg_label_size(config), "nearest")[..., 0]
        return outputs | {
            "images": tf.ensure_shape(network_input, [*target_size, 3]),
            "cls_targets": cls_targets,
            "box_targets": box_targets,
            "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), [max_instances, 4]),
            "classes": tf.ensure_shape(tf.pad(classes, [[0, pad]]), [max_instances]),
            "image_scales": 1.0 / placed.scale,
            "image_sizes": tf.stack([height, width]),
            "source_ids": example["source_id"],
        }

    return preprocess


def build_dataset(
    files: str | Sequence[str],
    config: Config,
    batch_size: int,
    training: bool,
    seed: int | None = None,
    repeat: bool | None = None,
) -> tf.data.Dataset:
    """Batches from TFRecord files (a glob pattern or a list). Training shuffles, augments and repeats;
    evaluation keeps file order and every image (the last batch may be smaller)."""
    paths = record_files(files)
    repeat = training if repeat is None else repeat
    options = tf.data.Options()
    options.deterministic = seed is not None or not training
    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        dataset = dataset.shuffle(len(paths), seed=seed)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset, cycle_length=min(4, len(paths)), num_parallel_calls=tf.data.AUTOTUNE
    ).with_options(options)
    if training:
        dataset = dataset.shuffle(256, seed=seed)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE)
    if training and config.input.tiles is not None:
        # The tiles of one image arrive together; a second shuffle mixes them with other images' tiles.
        dataset = dataset.flat_map(tile_examples(config.input, seed)).shuffle(TILE_SHUFFLE, seed=seed)
    if training and (config.input.autoaugment_policy or config.input.grid_mask):
        # One seed pair per example, in element order: the same seed gives the same augmentation.
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(lambda example, pair: {**example, AUGMENT_SEED: pair})
    dataset = dataset.map(make_preprocess(config, training, seed), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    return dataset.prefetch(tf.data.AUTOTUNE)
