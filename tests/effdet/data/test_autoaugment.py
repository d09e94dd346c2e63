"""AutoAugment and RandAugment: every policy runs in tf.data, geometric ops keep boxes on their objects
(checked on the pixels), colour ops leave boxes alone, and the training pipeline applies the policy."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from effdet.config import get_config
from effdet.data import autoaugment, autoaugment_ops
from effdet.data.pipeline import build_dataset
from effdet.data.records import Box
from effdet.data.shards import write_shard
from effdet.data.validate import ValidItem

HEIGHT, WIDTH = 64, 80
RED = (250, 20, 20)


def scene() -> tuple[tf.Tensor, tf.Tensor]:
    """A dark 64x80 image with a red block at rows 20..40, columns 30..54, and its normalised box."""
    pixels = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
    pixels[20:40, 30:54] = RED
    return tf.constant(pixels), tf.constant([[20 / HEIGHT, 30 / WIDTH, 40 / HEIGHT, 54 / WIDTH]])


def red_extent(image: np.ndarray) -> np.ndarray:
    """[ymin, xmin, ymax, xmax] in pixels of the red pixels."""
    rows, cols = np.nonzero((image[..., 0] > 200) & (image[..., 1] < 100))
    return np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], np.float32)


def seed(value: int) -> tf.Tensor:
    return tf.constant([value, 0], tf.int64)


@pytest.mark.parametrize("policy", ["v0", "v1", "v2", "v3", "randaug"])
def test_every_policy_runs_in_a_tf_data_map_and_keeps_shapes(policy: str) -> None:
    image, boxes = scene()
    two = tf.concat([boxes, [[0.1, 0.1, 0.3, 0.2]]], axis=0)

    def augment(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = tf.image.resize_with_crop_or_pad(image, HEIGHT, WIDTH)  # static shape lost as in decode
        return autoaugment.distort(pixels, two, policy, tf.stack([index, tf.constant(3, tf.int64)]))

    dataset = tf.data.Dataset.range(6).map(augment, num_parallel_calls=2).batch(3)
    batches = list(dataset)
    assert len(batches) == 2
    for images, moved in batches:
        assert images.dtype == tf.uint8
        assert images.shape == (3, HEIGHT, WIDTH, 3)
        assert moved.shape == (3, 2, 4)
        assert np.all((moved.numpy() >= 0.0) & (moved.numpy() <= 1.0))


def test_distort_is_deterministic_for_a_seed_and_keeps_float_images_float() -> None:
    image, boxes = scene()
    first = autoaugment.distort(image, boxes, "v3", seed(5))
    again = autoaugment.distort(image, boxes, "v3", seed(5))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    outputs = {autoaugment.distort(image, boxes, "v3", seed(s))[0].numpy().tobytes() for s in range(6)}
    assert len(outputs) > 1
    floats, _ = autoaugment.distort(tf.cast(image, tf.float32), boxes, "v0", seed(1))
    assert floats.dtype == tf.float32
    with pytest.raises(ValueError, match="unknown autoaugment_policy 'v9'"):
        autoaugment.distort(image, boxes, "v9", seed(1))


@pytest.mark.parametrize(
    ("op", "level"),
    [
        ("Rotate_BBox", 10),
        ("Rotate_BBox", 5),
        ("ShearX_BBox", 10),
        ("ShearY_BBox", 10),
        ("TranslateX_BBox", 1),
        ("TranslateY_BBox", 0.5),
    ],
)
@pytest.mark.parametrize("sign_seed", [0, 1, 2, 3])
def test_geometric_ops_keep_the_box_on_the_object(op: str, level: float, sign_seed: int) -> None:
    image, boxes = scene()
    moved_image, moved = autoaugment_ops.OPS[op](image, boxes, level, seed(sign_seed))
    pixels = moved_image.numpy()
    assert moved_image.shape == image.shape
    box = moved[0].numpy() * np.array([HEIGHT, WIDTH, HEIGHT, WIDTH])
    red = red_extent(pixels)
    # The box encloses every red pixel, and is no more than a few pixels larger on any side.
    assert np.all(box[:2] <= red[:2] + 1.0)
    assert np.all(box[2:] >= red[2:] - 1.0)
    assert np.all(np.abs(box - red) <= 3.0), (box, red)
    assert not np.allclose(box, [20, 30, 40, 54]) or level == 0


def test_translation_moving_the_object_out_leaves_a_box_without_area() -> None:
    image, boxes = scene()
    _, moved = autoaugment_ops.OPS["TranslateX_BBox"](image, boxes, 10, seed(0))  # 250 px either way
    ymin, xmin, ymax, xmax = moved[0].numpy()
    assert xmax - xmin == 0.0
    assert ymax - ymin > 0.0


@pytest.mark.parametrize(
    "op",
    [
        "AutoContrast",
        "Equalize",
        "Posterize",
        "Solarize",
        "SolarizeAdd",
        "Color",
        "Contrast",
        "Brightness",
        "Sharpness",
        "Cutout",
        "BBox_Cutout",
    ],
)
def test_colour_ops_change_pixels_not_boxes(op: str) -> None:
    image, boxes = scene()
    changed, same = autoaugment_ops.OPS[op](image, boxes, 4, seed(2))
    np.testing.assert_array_equal(same.numpy(), boxes.numpy())
    assert changed.dtype == tf.uint8
    assert changed.shape == image.shape


@pytest.mark.parametrize("op", sorted(autoaugment_ops.BOX_ONLY_OPS))
def test_box_only_ops_change_only_pixels_inside_boxes(op: str) -> None:
    image, boxes = scene()
    pixels = image.numpy()
    pixels[22:30, 32:40] = (40, 220, 40)  # something inside the box for flips and shears to move
    changed, same = autoaugment_ops.apply_step(tf.constant(pixels), boxes, op, 1.0, 6, seed(4))
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[20:40, 30:54] = False
    np.testing.assert_array_equal(changed.numpy()[outside], pixels[outside])
    np.testing.assert_array_equal(same.numpy(), boxes.numpy())


def test_colour_values_match_pil_semantics() -> None:
    ramp = tf.constant(np.tile(np.arange(0, 256, 4, dtype=np.uint8)[None, :, None], (4, 1, 3)))
    solarized = autoaugment_ops.solarize(ramp, 5, seed(0)).numpy()[0, :, 0]
    assert solarized.tolist()[:32] == list(range(0, 128, 4))  # below the threshold 128: unchanged
    assert solarized.tolist()[32:] == [255 - v for v in range(128, 256, 4)]
    posterized = autoaugment_ops.posterize(ramp, 10, seed(0)).numpy()[0, :, 0]
    assert set(posterized.tolist()) <= set(range(0, 256, 16))  # 4 bits kept
    stretched = autoaugment_ops.autocontrast(ramp // 2 + 10, 0, seed(0)).numpy()
    assert (stretched.min(), stretched.max()) == (0, 255)
    grey = autoaugment_ops.color(tf.constant([[[200, 0, 0]]], tf.uint8), 0, seed(0)).numpy()  # factor 0.1
    assert abs(int(grey[0, 0, 0]) - int(grey[0, 0, 1])) < 60


def _shard(tmp_path: Path) -> str:
    items = []
    for index in range(4):
        path = tmp_path / f"{index}.png"
        pixels = np.full((60, 90, 3), 40, np.uint8)
        pixels[10:40, 20 + index : 60 + index] = RED
        Image.fromarray(pixels).save(path)
        box = Box(xmin=20 + index, ymin=10, xmax=60 + index, ymax=40, label="plate")
        item = ValidItem(
            image_path=path, filename=path.name, width=90, height=60, boxes=[box], sha1=str(index), image_format="png"
        )
        items.append((index + 1, item))
    write_shard(tmp_path / "train-00000-of-00001.tfrecord", items, {"plate": 1})
    return str(tmp_path / "train-*.tfrecord")


@pytest.mark.parametrize("policy", ["v0", "randaug"])
def test_build_dataset_applies_the_policy_when_training(policy: str, tmp_path: Path) -> None:
    config = get_config(
        "efficientdet-d0", f"image_size=128,num_classes=1,max_instances_per_image=4,autoaugment_policy={policy}"
    )
    batches = build_dataset(_shard(tmp_path), config, batch_size=2, training=True, seed=3)
    for batch in batches.take(3):
        assert batch["images"].shape == (2, 128, 128, 3)
        assert batch["boxes"].shape == (2, 4, 4)
        assert np.all(np.isfinite(batch["images"].numpy()))
