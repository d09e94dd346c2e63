"""A segmentation model's SavedModel: class maps at each image's own size beside unchanged detections, the
empty detection outputs of a segmentation-only model, prediction with masks, and the TFLite refusal."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from typer.testing import CliRunner

from effdet.cli import app
from effdet.config import Config, get_config
from effdet.data.pipeline import make_preprocess
from effdet.export import (
    SEGMENTATION_TFLITE_REFUSAL,
    DetectionModule,
    export_saved_model,
    export_tflite,
    export_tflite_network,
)
from effdet.format_export import export_tflite_formats
from effdet.model.efficientdet import build_model, split_outputs
from effdet.predict import SEGMENTATION_ASSET, ExportedModel, load_exported, predict_batch, predict_images
from tests.cheap import CHEAP
from tests.effdet.test_export import scene

HPARAMS = {**CHEAP, "image_size": 128, "num_classes": 2, "label_map": {1: "plate", 2: "car"}, "seg_num_classes": 3}
# (width, height): one wider and one taller than the 128x128 input, so each fills a different window of it.
SIZES = [(200, 96), (90, 130)]
IMAGES = [scene(width, height, seed, format="PNG") for seed, (width, height) in enumerate(SIZES)]


def seg_config(heads: list[str]) -> Config:
    return get_config("efficientdet-d0", {**HPARAMS, "heads": heads})


def network_input(image: bytes) -> tf.Tensor:
    """float32 [1, H, W, 3]: the image as the evaluation pipeline prepares it (for any heads: the class map is
    not needed here)."""
    pixels = tf.io.decode_png(image, channels=3)
    example = {
        "image": pixels,
        "boxes": tf.zeros([0, 4]),
        "classes": tf.zeros([0], tf.int32),
        "is_crowd": tf.zeros([0], tf.bool),
        "source_id": tf.constant("1"),
    }
    return make_preprocess(seg_config(["object_detection"]), training=False)(example)["images"][tf.newaxis]


def lively(config: Config) -> keras.Model:
    """An untrained model whose batch norms take their statistics from the test images, so its logits vary from
    pixel to pixel instead of fading to the bias."""
    model = build_model(config)
    inputs = tf.concat([network_input(image) for image in IMAGES], axis=0)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(inputs, training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model


TIE = 1e-3
"""Logits of the two best classes closer than this are a tie: the export's kernels may order them either way."""


def reference_class_map(model: keras.Model, config: Config, image: bytes) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [height, width] from the model's own logits, computed apart from the export: bilinear to the input,
    the window resize_and_crop fills, argmax, nearest back to the image's size; and where the best two classes
    tie, a bool map of the same shape."""
    height, width = tf.io.decode_png(image).shape[:2]
    logits = split_outputs(model(network_input(image), training=False), config.model.heads).seg_logits
    upsampled = tf.image.resize(logits, config.model.image_size, method="bilinear")[0].numpy()
    scale = min(128 / height, 128 / width)
    window = upsampled[: round(height * scale), : round(width * scale)]
    classes = window.argmax(axis=-1)
    best_two = np.sort(window, axis=-1)[..., -2:]
    tied = best_two[..., 1] - best_two[..., 0] < TIE
    rows = np.minimum(((np.arange(height) + 0.5) * classes.shape[0] / height).astype(int), classes.shape[0] - 1)
    columns = np.minimum(((np.arange(width) + 0.5) * classes.shape[1] / width).astype(int), classes.shape[1] - 1)
    return classes[rows][:, columns].astype(np.uint8), tied[rows][:, columns]


@pytest.fixture(scope="module")
def both_config() -> Config:
    return seg_config(["object_detection", "segmentation"])


@pytest.fixture(scope="module")
def both_model(both_config: Config) -> keras.Model:
    return lively(both_config)


@pytest.fixture(scope="module")
def both_export(both_model: keras.Model, both_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_saved_model(both_model, both_config, tmp_path_factory.mktemp("both") / "saved_model")


@pytest.fixture(scope="module")
def seg_only() -> tuple[Config, keras.Model]:
    config = seg_config(["segmentation"])
    return config, lively(config)


@pytest.fixture(scope="module")
def seg_only_export(seg_only: tuple[Config, keras.Model], tmp_path_factory: pytest.TempPathFactory) -> Path:
    config, model = seg_only
    return export_saved_model(model, config, tmp_path_factory.mktemp("seg") / "saved_model")


def encoded_outputs(folder: Path) -> dict[str, np.ndarray]:
    outputs = tf.saved_model.load(str(folder)).signatures["serving_default"](images=tf.constant(IMAGES))
    return {name: tensor.numpy() for name, tensor in outputs.items()}


def check_class_maps(outputs: dict[str, np.ndarray], model: keras.Model, config: Config) -> None:
    """The padded batch map holds each image's reference map at its own size and 255 beyond it."""
    np.testing.assert_array_equal(outputs["image_sizes"], [[height, width] for width, height in SIZES])
    assert outputs["segmentation"].dtype == np.uint8
    assert outputs["segmentation"].shape == (2, 130, 200)
    for padded, image, (width, height) in zip(outputs["segmentation"], IMAGES, SIZES, strict=True):
        expected, tied = reference_class_map(model, config, image)
        assert len(np.unique(expected)) > 1  # the map has structure to compare
        assert tied.mean() < 0.01  # ties are rare, so the comparison below still covers the map
        np.testing.assert_array_equal(np.where(tied, expected, padded[:height, :width]), expected)
        assert (padded[height:] == 255).all()
        assert (padded[:, width:] == 255).all()


@pytest.mark.slow
def test_class_maps_come_at_each_image_size_padded_with_ignore(
    both_export: Path, both_model: keras.Model, both_config: Config
) -> None:
    check_class_maps(encoded_outputs(both_export), both_model, both_config)
    classes = json.loads((both_export / "assets" / "segmentation_classes.json").read_text())
    assert classes == {"0": "background", "1": "plate", "2": "car"}


@pytest.mark.slow
def test_both_heads_detect_as_a_detection_only_model_with_the_same_weights(
    both_export: Path, both_model: keras.Model, both_config: Config
) -> None:
    detection_config = seg_config(["object_detection"])
    detector = build_model(detection_config)
    weights = {variable.path: variable for variable in both_model.variables}
    for variable in detector.variables:
        variable.assign(weights[variable.path])
    threshold = tf.constant(0.0)
    expected = DetectionModule(detector, detection_config).detect_encoded(tf.constant(IMAGES), threshold)
    loaded = tf.saved_model.load(str(both_export))  # held: its functions need the object alive
    found = loaded.detect_encoded(tf.constant(IMAGES), score_threshold=threshold)
    assert int(tf.reduce_sum(expected["num_detections"])) > 0
    for key in ("boxes", "scores", "classes", "num_detections"):
        np.testing.assert_allclose(found[key].numpy(), expected[key].numpy(), atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_segmentation_only_model_returns_empty_detections_and_class_maps(
    seg_only_export: Path, seg_only: tuple[Config, keras.Model]
) -> None:
    config, model = seg_only
    outputs = encoded_outputs(seg_only_export)
    np.testing.assert_array_equal(outputs["num_detections"], [0, 0])
    assert outputs["boxes"].shape == (2, 100, 4)
    assert not outputs["boxes"].any()
    assert outputs["scores"].shape == (2, 100)
    assert outputs["classes"].shape == (2, 100)
    check_class_maps(outputs, model, config)
    pixels = tf.io.decode_png(IMAGES[1], channels=3)[tf.newaxis]
    loaded = tf.saved_model.load(str(seg_only_export))
    from_tensor = loaded.signatures["image_tensor"](images=pixels)
    np.testing.assert_array_equal(from_tensor["segmentation"][0].numpy(), outputs["segmentation"][1, :130, :90])


@pytest.mark.slow
def test_predict_batch_answers_detections_and_cropped_class_maps(both_export: Path) -> None:
    loaded = load_exported(both_export)
    assert loaded.segments
    assert loaded.segmentation_classes == {0: "background", 1: "plate", 2: "car"}
    found = predict_batch(loaded, IMAGES, score_threshold=0.0, max_detections=3)
    assert [prediction.class_map.shape for prediction in found if prediction.class_map is not None] == [
        (96, 200),
        (130, 90),
    ]
    assert [len(prediction.detections) for prediction in found] == [3, 3]
    detections = predict_images(loaded, IMAGES, score_threshold=0.0, max_detections=3)
    assert detections == [prediction.detections for prediction in found]
    assert predict_batch(loaded, []) == []


def test_cli_predict_writes_class_maps_and_prints_their_classes(both_export: Path, tmp_path: Path) -> None:
    paths = []
    for i, image in enumerate(IMAGES):
        paths.append(tmp_path / f"scene-{i}.png")
        paths[-1].write_bytes(image)
    args = ["predict", str(both_export), *map(str, paths), "--score-threshold", "0.5"]
    result = CliRunner().invoke(app, [*args, "--json", "--mask-out", str(tmp_path / "masks"), "--draw", str(tmp_path)])
    assert result.exit_code == 0, result.output
    found = predict_batch(load_exported(both_export), IMAGES, score_threshold=0.5)
    document = json.loads(result.output)
    for path, prediction, (width, height) in zip(paths, found, SIZES, strict=True):
        assert prediction.class_map is not None
        written = np.asarray(Image.open(tmp_path / "masks" / f"{path.stem}.png"))
        np.testing.assert_array_equal(written, prediction.class_map)
        assert Image.open(tmp_path / f"{path.stem}.jpg").size == (width, height)
        masks = document[str(path)]["segmentation"]
        assert sum(mask["area"] for mask in masks) == int((prediction.class_map > 0).sum())
    detector = tmp_path / "detector"
    shutil.copytree(both_export, detector)
    (detector / "assets" / SEGMENTATION_ASSET).unlink()
    refused = CliRunner().invoke(app, ["predict", str(detector), str(paths[0]), "--mask-out", str(tmp_path / "m.png")])
    assert refused.exit_code != 0
    assert "no segmentation head" in refused.output


def test_a_detector_predicts_without_class_maps() -> None:
    def serving_default(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {
            "boxes": tf.constant([[[1.0, 2.0, 3.0, 4.0]]]),
            "scores": tf.constant([[0.9]]),
            "classes": tf.constant([[2]]),
            "num_detections": tf.constant([1]),
        }

    module = SimpleNamespace(signatures={"serving_default": serving_default})
    loaded = ExportedModel(path=Path("detector"), module=module, label_map={2: "car"})
    assert not loaded.segments
    (found,) = predict_batch(loaded, IMAGES[:1])
    assert found.class_map is None
    assert [(d.label, d.box) for d in found.detections] == [("car", (1.0, 2.0, 3.0, 4.0))]


def test_tflite_formats_are_refused_for_segmentation_models(
    both_model: keras.Model, both_config: Config, tmp_path: Path
) -> None:
    def images() -> Any:
        yield np.zeros((128, 128, 3), np.uint8)

    with pytest.raises(ValueError, match="TFLite formats carry detections only"):
        export_tflite(both_model, both_config, tmp_path / "model.tflite")
    with pytest.raises(ValueError, match="export saved_model for segmentation models"):
        export_tflite_network(both_model, both_config, tmp_path / "model.tflite", "int8", images)
    with pytest.raises(ValueError, match=SEGMENTATION_TFLITE_REFUSAL):
        export_tflite_formats(both_model, both_config, tmp_path, ["saved_model", "tflite_float16"], None)
    assert list(tmp_path.iterdir()) == []
