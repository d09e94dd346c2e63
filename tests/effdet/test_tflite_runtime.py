"""Serving the TFLite export with LiteRT: the same detections as the SavedModel on images of any size, the
threshold and cap as predict_images applies them, and no TensorFlow in the serving process."""

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from effdet.config import Config, get_config
from effdet.export import DetectionModule, export_saved_model, export_tflite, export_tflite_network
from effdet.predict import Detection, ExportedModel, load_exported, predict_images
from effdet.tflite_runtime import (
    TFLiteModel,
    head_outputs,
    letterbox,
    load_tflite,
    load_tflite_export,
    pad_colour,
    predict_tflite,
    resize_bilinear,
)
from tests.cheap import CHEAP

MIN_SCORE = 0.1
"""The threshold both exports bake in; the comparisons use THRESHOLD above it."""
THRESHOLD = 0.2
LABELS = {1: "plate", 2: "car"}
EXIF_ROTATED = 6  # stored landscape, shown portrait (rotate 90 degrees clockwise)


def scene(width: int, height: int, seed: int, format: str = "JPEG", orientation: int | None = None) -> bytes:
    """An encoded image of random 8-px blocks, optionally with an EXIF orientation tag."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((8, 8, 1), np.uint8))[:height, :width]
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(buffer, format=format, exif=exif)
    return buffer.getvalue()


# Lossless images, so both runtimes decode the same pixels: shrunk landscape and portrait (padded below and to
# the right) and enlarged. And a JPEG stored landscape with an EXIF rotation: both runtimes use the stored pixels,
# but TensorFlow decodes JPEG with libjpeg's fast integer DCT and Pillow with the accurate one (a grey level or
# two apart), which moves this untrained model's boxes by up to a few pixels.
IMAGES = {
    "200x120": scene(200, 120, seed=1, format="PNG"),
    "90x300": scene(90, 300, seed=2, format="PNG"),
    "60x40": scene(60, 40, seed=3, format="PNG"),
    "exif": scene(160, 100, seed=4, orientation=EXIF_ROTATED),
}
LOSSLESS = (1.0, 2e-3, 10)
TOLERANCES = {"200x120": LOSSLESS, "90x300": LOSSLESS, "60x40": LOSSLESS, "exif": (3.0, 5e-3, 5)}
"""Per image: (box pixels, score, top): each of the SavedModel's top detections has a TFLite twin that close."""
INT8_CORRELATION, INT8_ERROR = 0.95, 0.25
"""int8 rounds every activation to one of 256 steps: its head outputs follow the float network's (correlation
above 0.95, mean error under a quarter of their spread). This untrained model's scores crowd near 1, so its
detections' order is too fragile to compare; what int8 costs in AP is measured on trained models
(effdet.format_export scores every format of a job, BENCHMARKS.md)."""


@pytest.fixture(scope="module")
def config() -> Config:
    hparams = {**CHEAP, "image_size": 128, "num_classes": 2, "label_map": LABELS}
    return get_config("efficientdet-d0", hparams)


@pytest.fixture(scope="module")
def exports(
    config: Config, make_lively_model: Callable[[Config, tf.Tensor], Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(SavedModel folder, float32 TFLite file) of one model, both dropping scores under MIN_SCORE."""
    # Calibrated on the test images and a dozen others as the network sees them, so that scores spread instead
    # of saturating (ties would leave the order of detections to chance) and a grey level of rounding moves
    # boxes by a fraction of a pixel rather than by several (a handful of images leaves some batch-norm
    # variances tiny and the network oversensitive). Seeded, so every run checks the same model.
    keras.utils.set_random_seed(18)
    sizes = np.random.default_rng(18).integers(40, 300, size=(12, 2))
    others = [scene(int(width), int(height), seed=100 + i, format="PNG") for i, (width, height) in enumerate(sizes)]
    prepare = DetectionModule(keras.Sequential(), config).prepare
    inputs = [prepare(tf.io.decode_image(image, channels=3))[0] for image in [*IMAGES.values(), *others]]
    model = make_lively_model(config, tf.stack(inputs))
    folder = tmp_path_factory.mktemp("tflite_runtime")
    saved_model = export_saved_model(model, config, folder / "saved_model", MIN_SCORE)
    tflite = export_tflite(model, config, folder / "model.tflite", min_score_thresh=MIN_SCORE)
    # The network alone, in float32 (checks the numpy decoding and NMS) and int8 (calibrated on the same images
    # as the model's batch norms, letterboxed as serving letterboxes them).
    export_tflite_network(model, config, folder / "network.tflite", "float32")
    pad = pad_colour(config.model.mean_rgb)
    decoded = [np.asarray(Image.open(io.BytesIO(image)).convert("RGB")) for image in [*IMAGES.values(), *others]]
    canvases = [letterbox(pixels, config.model.image_size, pad)[0] for pixels in decoded]
    export_tflite_network(model, config, folder / "model_int8.tflite", "int8", lambda: iter(canvases))
    return saved_model, tflite


@pytest.fixture(scope="module")
def saved_model(exports: tuple[Path, Path]) -> ExportedModel:
    return load_exported(exports[0])


@pytest.fixture(scope="module")
def lite(exports: tuple[Path, Path], saved_model: ExportedModel, config: Config) -> TFLiteModel:
    return load_tflite(exports[1], saved_model.label_map, 2, MIN_SCORE, config.model.mean_rgb)


def assert_same_detections(
    got: list[Detection], expected: list[Detection], box_tolerance: float, score_tolerance: float, top: int
) -> None:
    """Each of the expected top detections has a twin in got: same class and label, box and score within the
    tolerances. Twins are searched in the whole list because near-equal scores may swap places. On lossless
    images the tolerances cover the resized pixels and the pad colour rounded to whole grey levels (the
    SavedModel resizes and pads in float) and XNNPACK's float32 arithmetic against TensorFlow's."""
    assert expected, "the comparison needs detections; lower THRESHOLD"
    assert abs(len(got) - len(expected)) <= 2
    for want in expected[:top]:
        twins = [
            d
            for d in got
            if d.class_id == want.class_id
            and np.abs(np.subtract(d.box, want.box)).max() <= box_tolerance
            and abs(d.score - want.score) <= score_tolerance
        ]
        assert twins, f"no twin for {want} among {got[:top]}"
        assert twins[0].label == want.label


def assert_matches_saved_model(
    lite: TFLiteModel, saved_model: ExportedModel, threshold: float
) -> list[list[Detection]]:
    """The TFLite model's detections of IMAGES above threshold: best first, labelled, each of the SavedModel's top
    detections with a twin within the image's TOLERANCES. Returns them."""
    images = list(IMAGES.values())
    expected = predict_images(saved_model, images, score_threshold=threshold)
    got = predict_tflite(lite, images, score_threshold=threshold)
    for name, found, wanted in zip(IMAGES, got, expected, strict=True):
        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True), name
        assert all(d.score > threshold and d.label == LABELS[d.class_id] for d in found), name
        assert_same_detections(found, wanted, *TOLERANCES[name])
    return got


def test_resize_bilinear_matches_tensorflow() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    for height, width in [(77, 128), (128, 38), (250, 300), (120, 200)]:
        expected = tf.image.resize(tf.constant(pixels, tf.float32), [height, width], method="bilinear").numpy()
        np.testing.assert_allclose(resize_bilinear(pixels, height, width), expected, atol=0.5 + 0.02)


def test_letterbox_places_the_image_at_the_top_left_on_the_mean_colour() -> None:
    pixels = np.full((300, 90, 3), 7, np.uint8)
    canvas, scale = letterbox(pixels, (128, 128), (124, 116, 104))
    assert canvas.shape == (128, 128, 3)
    assert scale == np.float32(128 / 300)
    assert (canvas[:, :38] == 7).all()  # round(90 * 128 / 300) = 38 columns of image
    assert (canvas[:, 38:] == [124, 116, 104]).all()


@pytest.mark.slow
def test_tflite_detections_match_the_saved_model(saved_model: ExportedModel, lite: TFLiteModel) -> None:
    got = assert_matches_saved_model(lite, saved_model, THRESHOLD)
    stored = Image.open(io.BytesIO(IMAGES["exif"]))
    assert stored.getexif()[0x0112] == EXIF_ROTATED
    assert max(d.box[2] for d in got[-1]) > stored.height  # boxes on the stored 160x100, not the upright 100x160
    assert max(d.box[2] for d in got[0]) > 128  # scaled back to the 200-px-wide original


@pytest.mark.slow
def test_tflite_threshold_and_cap_apply_as_predict_images_does(saved_model: ExportedModel, lite: TFLiteModel) -> None:
    images = [IMAGES["200x120"], IMAGES["90x300"]]
    everything = predict_tflite(lite, images)
    assert all(d.score > MIN_SCORE for found in everything for d in found)
    high = 0.6
    above = predict_tflite(lite, images, score_threshold=high)
    assert above == [[d for d in found if d.score > high] for found in everything]
    counts = [len(found) for found in predict_images(saved_model, images, high)]
    assert all(
        abs(len(found) - count) <= 1 for found, count in zip(above, counts, strict=True)
    )  # a score at 0.6 may flip
    capped = predict_tflite(lite, images, score_threshold=high, max_detections=3)
    assert capped == [found[:3] for found in above]
    assert predict_tflite(lite, []) == []
    with pytest.raises(ValueError, match="exported with"):
        predict_tflite(lite, images, score_threshold=MIN_SCORE / 2)


SERVE_WITHOUT_TENSORFLOW = """
import json, sys
from effdet.tflite_runtime import load_tflite, load_tflite_export, predict_tflite
image = open(sys.argv[3], "rb").read()
model = load_tflite(sys.argv[1], {1: "plate", 2: "car"}, 1, 0.1, [123.675, 116.28, 103.53])
network = load_tflite_export(sys.argv[2], sys.argv[4], 1, 0.1)
counts = [len(predict_tflite(served, [image])[0]) for served in (model, network)]
print(json.dumps({"detections": counts, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""
"""Both kinds of file: NMS in the graph, and the network alone with the boxes decoded and NMS run in numpy."""


@pytest.mark.slow
def test_serving_tflite_imports_no_tensorflow(exports: tuple[Path, Path], tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(IMAGES["200x120"])
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_WITHOUT_TENSORFLOW,
            str(exports[1]),
            str(exports[1].with_name("model_int8.tflite")),
            str(image),
            str(exports[0]),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(count > 0 for count in report["detections"])
    assert "ai_edge_litert" in report["loaded"]
    assert not {"tensorflow", "keras", "tf_keras"} & set(report["loaded"])


@pytest.fixture(scope="module")
def network(exports: tuple[Path, Path]) -> TFLiteModel:
    return load_tflite_export(exports[1].with_name("network.tflite"), exports[0], 2, MIN_SCORE)


@pytest.mark.slow
def test_network_file_decoded_in_numpy_matches_the_saved_model(
    saved_model: ExportedModel, network: TFLiteModel
) -> None:
    assert network.decoder is not None
    assert network.decoder.input_scale == 0
    for threshold in (THRESHOLD, MIN_SCORE / 2):  # below the export's threshold too: NMS runs here
        assert_matches_saved_model(network, saved_model, threshold)
    images = list(IMAGES.values())
    capped = predict_tflite(network, images[:1], score_threshold=THRESHOLD, max_detections=2)
    assert capped == [predict_tflite(network, images[:1], score_threshold=THRESHOLD)[0][:2]]


@pytest.mark.slow
def test_int8_file_takes_uint8_and_keeps_the_network_outputs(
    exports: tuple[Path, Path], network: TFLiteModel, config: Config
) -> None:
    int8 = load_tflite_export(exports[1].with_name("model_int8.tflite"), exports[0], 2, MIN_SCORE)
    assert int8.decoder is not None
    assert np.dtype(int8.decoder.input_dtype) == np.uint8
    assert network.decoder is not None
    assert int8.path.stat().st_size < 0.4 * exports[1].stat().st_size  # int8 weights: a quarter of float32's
    pad = pad_colour(config.model.mean_rgb)
    for name in ("200x120", "90x300"):
        canvas = letterbox(np.asarray(Image.open(io.BytesIO(IMAGES[name])).convert("RGB")), (128, 128), pad)[0]
        for got, want in zip(
            head_outputs(int8, int8.decoder, canvas), head_outputs(network, network.decoder, canvas), strict=True
        ):
            correlation = np.corrcoef(got.ravel(), want.ravel())[0, 1]
            assert correlation > INT8_CORRELATION, name
            assert np.abs(got - want).mean() < INT8_ERROR * want.std(), name
    found = predict_tflite(int8, [IMAGES["200x120"]], score_threshold=THRESHOLD)[0]
    assert found
    assert all(d.score > THRESHOLD and d.label == LABELS[d.class_id] for d in found)
