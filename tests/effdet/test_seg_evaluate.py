"""Class maps back at the image's own size: logits for the network input, cut to the window the image fills."""

from __future__ import annotations

import tensorflow as tf

from effdet.config import get_config
from effdet.seg_evaluate import class_map_at, seg_class_names


def test_only_the_window_the_image_fills_is_scaled_back_to_its_size() -> None:
    # Logits at a quarter of an 8x8 input: class 1 wins in the left column (input x 0..3), class 0 on the right.
    logits = tf.constant([[[0.0, 4.0], [4.0, 0.0]], [[0.0, 4.0], [4.0, 0.0]]])
    # A 16x8 photo scaled by 0.5 fills the input's left 4 columns (and all 8 rows): all of it is class 1.
    assert (class_map_at(logits, (8, 8), 0.5, (16, 8)) == 1).all()
    # An 8x8 photo at scale 1 fills the whole input: its left half is class 1, its right half class 0.
    whole = class_map_at(logits, (8, 8), 1.0, (8, 8))
    assert whole.shape == (8, 8)
    assert (whole[:, :3] == 1).all()
    assert (whole[:, 5:] == 0).all()


def test_segmentation_classes_are_named_by_the_label_map() -> None:
    config = get_config(
        "efficientdet-d0", {"heads": ["segmentation"], "num_classes": 2, "seg_num_classes": 3, "label_map": {1: "a"}}
    )
    assert seg_class_names(config) == ["background", "a", "class_2"]
