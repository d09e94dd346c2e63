"""The exported SavedModel: TensorFlow-only loading, its signatures, original-pixel boxes, the TFLite twin,
and the prediction helpers built on it."""

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from effdet.config import Config, get_config
from effdet.export import export_saved_model, export_tflite, export_tflite_network
from effdet.predict import Detection, draw_detections, load_exported, predict_images
from tests.cheap import CHEAP

MIN_SCORE = 0.9


def scene(width: int, height: int, seed: int, format: str = "JPEG") -> bytes:
    """An encoded image of random blocks (so the network sees structure, not noise)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((8, 8, 1), np.uint8))[:height, :width]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def decoded(image: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))


# Lossless images at the input size: the model is calibrated on exactly these pixels (see make_lively_model), so
# its scores spread out on them instead of saturating.
CALIBRATION = [scene(128, 128, seed, format="PNG") for seed in range(10, 14)]


def network_inputs(config: Config, images: list[bytes]) -> tf.Tensor:
    """Encoded images of the input size as the network sees them: normalised."""
    pixels = np.stack([decoded(image) for image in images])
    return tf.constant((pixels - np.float32(config.model.mean_rgb)) / np.float32(config.model.stddev_rgb), tf.float32)


@pytest.fixture(scope="module")
def config() -> Config:
    hparams = {**CHEAP, "image_size": 128, "num_classes": 2, "label_map": {1: "plate", 2: "car"}}
    return get_config("efficientdet-d0", hparams)


@pytest.fixture(scope="module")
def model(config: Config, make_lively_model: Callable[[Config, tf.Tensor], Any]) -> Any:
    return make_lively_model(config, network_inputs(config, CALIBRATION))


@pytest.fixture(scope="module")
def exported(model: Any, config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_saved_model(model, config, tmp_path_factory.mktemp("export") / "saved_model", MIN_SCORE)


@pytest.fixture(scope="module")
def loaded(exported: Path) -> Any:
    return tf.saved_model.load(str(exported))


LOAD_WITHOUT_EFFDET = """
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](images=tf.constant([open(sys.argv[2], "rb").read()]))
print(json.dumps({
    "effdet_imported": any(name.startswith("effdet") for name in sys.modules),
    "signatures": {
        name: sorted(fn.structured_input_signature[1]) for name, fn in model.signatures.items()
    },
    "outputs": {name: list(tensor.shape) for name, tensor in out.items()},
}))
"""


@pytest.mark.slow
def test_saved_model_loads_and_runs_with_tensorflow_alone(exported: Path, tmp_path: Path) -> None:
    image = tmp_path / "scene.jpg"
    image.write_bytes(scene(200, 120, seed=1))
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_EFFDET, str(exported), str(image)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["effdet_imported"] is False
    assert report["signatures"] == {
        "serving_default": ["images"],
        "serving_with_threshold": ["images", "score_threshold"],
        "image_tensor": ["images"],
        "image_tensor_with_threshold": ["images", "score_threshold"],
    }
    assert report["outputs"] == {"boxes": [1, 100, 4], "scores": [1, 100], "classes": [1, 100], "num_detections": [1]}
    assert json.loads((exported / "assets" / "label_map.json").read_text()) == {"1": "plate", "2": "car"}
    assert Config.from_yaml(exported / "assets" / "config.yaml").model.image_size == (128, 128)


@pytest.mark.slow
def test_encoded_and_tensor_inputs_give_the_same_boxes_in_original_pixels(loaded: Any) -> None:
    png = scene(300, 90, seed=2, format="PNG")  # lossless, so both inputs hold the same pixels
    from_bytes = loaded.signatures["serving_default"](images=tf.constant([png]))
    from_pixels = loaded.signatures["image_tensor"](images=tf.constant(decoded(png)[np.newaxis]))
    count = int(from_bytes["num_detections"][0])
    assert count > 0
    assert int(from_pixels["num_detections"][0]) == count
    np.testing.assert_allclose(from_bytes["boxes"].numpy(), from_pixels["boxes"].numpy(), atol=1e-3)
    boxes = from_bytes["boxes"][0, :count].numpy()
    assert (boxes[:, 2] <= 300).all()
    assert (boxes[:, 3] <= 90).all()  # clipped to the original image, not the 128x128 input
    assert (boxes[:, :2] <= boxes[:, 2:]).all()  # [xmin, ymin, xmax, ymax]
    assert boxes[:, 2].max() > 128  # scaled back up: the 300-px-wide image was shrunk to 128
    classes = from_bytes["classes"][0, :count].numpy()
    assert set(classes.tolist()) <= {1, 2}


@pytest.mark.slow
def test_score_threshold_defaults_to_the_export_value(loaded: Any) -> None:
    images = tf.constant(CALIBRATION[:2])
    default = loaded.signatures["serving_default"](images=images)
    explicit = loaded.signatures["serving_with_threshold"](images=images, score_threshold=tf.constant(MIN_SCORE))
    restored_function = loaded.detect_encoded(images)  # the threshold argument is optional here
    lower = loaded.detect_encoded(images, score_threshold=0.7)
    for outputs in (explicit, restored_function):
        np.testing.assert_array_equal(outputs["num_detections"], default["num_detections"])
    assert (lower["num_detections"].numpy() >= default["num_detections"].numpy()).all()
    assert lower["num_detections"].numpy().sum() > default["num_detections"].numpy().sum()
    counts = default["num_detections"].numpy()
    for row, count in enumerate(counts):
        assert (default["scores"][row, :count].numpy() >= MIN_SCORE).all()


def test_export_refuses_a_non_empty_folder(model: Any, config: Config, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        export_saved_model(model, config, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_tflite_int8_is_the_network_alone_and_needs_calibration_images(
    model: Any, config: Config, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="export_tflite_network"):
        export_tflite(model, config, tmp_path / "model.tflite", quantization="int8")
    with pytest.raises(ValueError, match="representative_images"):
        export_tflite_network(model, config, tmp_path / "model.tflite", "int8")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_tflite_top_detections_match_the_saved_model(model: Any, config: Config, loaded: Any, tmp_path: Path) -> None:
    path = export_tflite(model, config, tmp_path / "model.tflite", min_score_thresh=MIN_SCORE)
    pixels = decoded(CALIBRATION[0])[np.newaxis]
    interpreter = tf.lite.Interpreter(model_path=str(path))
    lite = interpreter.get_signature_runner("serving_default")(images=pixels)
    reference = loaded.signatures["image_tensor"](images=tf.constant(pixels))
    top = min(5, int(reference["num_detections"][0]))
    assert top > 0
    assert int(lite["num_detections"][0]) >= top
    np.testing.assert_allclose(lite["scores"][0, :top], reference["scores"][0, :top].numpy(), atol=1e-3)
    np.testing.assert_allclose(lite["boxes"][0, :top], reference["boxes"][0, :top].numpy(), atol=0.5)
    np.testing.assert_array_equal(lite["classes"][0, :top], reference["classes"][0, :top].numpy())


@pytest.mark.slow
def test_predict_images_names_classes_and_draw_detections_marks_them(exported: Path) -> None:
    model = load_exported(exported)
    images = [scene(240, 160, seed=6), scene(90, 130, seed=7)]
    results = predict_images(model, images, score_threshold=0.3)
    assert len(results) == 2
    for detections, (width, height) in zip(results, [(240, 160), (90, 130)], strict=True):
        assert detections
        assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
        assert all(d.score >= 0.3 for d in detections)
        assert all(d.label == {1: "plate", 2: "car"}[d.class_id] for d in detections)
        assert all(0 <= d.box[0] <= d.box[2] <= width and 0 <= d.box[1] <= d.box[3] <= height for d in detections)
    capped = predict_images(model, images, score_threshold=0.3, max_detections=2)
    assert [len(d) for d in capped] == [min(2, len(d)) for d in results]
    assert predict_images(model, []) == []

    drawn = draw_detections(images[0], [Detection(box=(20, 30, 120, 90), class_id=1, label="plate", score=0.9)])
    assert drawn.size == (240, 160)
    assert not np.array_equal(np.asarray(drawn), decoded(images[0]))


@pytest.mark.parametrize("scale_range", [False, True])
def test_export_prepares_images_as_the_evaluation_pipeline_does(scale_range: bool) -> None:
    import keras

    from effdet.data.pipeline import make_preprocess
    from effdet.export import DetectionModule

    hparams = {"image_size": 128, "num_classes": 1, "mean_rgb": 0.0, "stddev_rgb": 1.0, "scale_range": scale_range}
    config = get_config("efficientdet-d0", hparams)
    image = tf.constant(decoded(scene(200, 96, seed=1, format="PNG")))
    example = {
        "image": image,
        "boxes": tf.zeros([0, 4]),
        "classes": tf.zeros([0], tf.int32),
        "is_crowd": tf.zeros([0], tf.bool),
        "source_id": tf.constant("1"),
    }
    expected = make_preprocess(config, training=False)(example)["images"].numpy()
    prepared, _, _ = DetectionModule(keras.Sequential(), config).prepare(image)
    np.testing.assert_allclose(prepared.numpy(), expected, atol=1e-5)
    assert float(tf.reduce_min(prepared)) == (-1.0 if scale_range else 0.0)  # padding (and black pixels)
