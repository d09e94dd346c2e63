"""Export a trained model as a self-contained SavedModel (and TFLite) with pre- and post-processing inside.

The SavedModel needs only TensorFlow to load and run. Its signatures (all outputs named alike):

- `serving_default`: `images` tf.string [N] of encoded images (JPEG, PNG, GIF, BMP; any sizes, mixed).
- `serving_with_threshold`: the same plus `score_threshold` float32 [].
- `image_tensor`: `images` uint8 [N, H, W, 3] of any H, W (one size per batch).
- `image_tensor_with_threshold`: the same plus `score_threshold` float32 [].

A signature cannot give an input a default, so each input kind has one signature without `score_threshold`
(the export-time `min_score_thresh` applies) and one with it. From Python the restored functions
`loaded.detect_encoded(images, score_threshold=...)` and `loaded.detect_image(images, score_threshold=...)`
take the threshold as an optional argument. Outputs: `boxes` float32 [N, max_detections, 4] as
[xmin, ymin, xmax, ymax] in pixels of each original image, `scores` float32 [N, max_detections], `classes`
int32 [N, max_detections] (1-based label-map ids, 0 in padding), `num_detections` int32 [N].

A model with a segmentation head (`heads` holds "segmentation") adds two outputs to every signature:
`segmentation` uint8 [N, max_height, max_width], each image's per-pixel class at its original size (0 background,
k the label-map id k), padded with 255 beyond the image's bottom and right edges (a batch of encoded images may
mix sizes), and `image_sizes` int32 [N, 2], each image's (height, width), to crop its map with. The classes are
argmaxed in the window the image fills and resized nearest to the image (effdet.seg_postprocess). A
segmentation-only model still returns the four detection outputs, well shaped and empty (num_detections 0,
zeros elsewhere), so every consumer reads one contract. TFLite formats carry detections only and are refused
for segmentation models.

Pre-processing is the evaluation path of the input pipeline: decode, normalise by mean_rgb/stddev_rgb,
resize keeping the aspect ratio to fit image_size, pad bottom/right with zeros (after normalisation), then with
`scale_range` map to [-1, 1] (x * 2 / 255 - 1) as training saw it. A model trained with `tiles` detects on the
whole image and its tiles and merges the boxes (effdet.tiled), so every signature and the TFLite file honour
the tiling the model was trained with.
Assets: `label_map.json` ({"id": "name"}), `config.yaml` (the resolved config, `Config.from_yaml` reads it) and,
for a segmentation model, `segmentation_classes.json` ({"id": "name"} for every class map value 0..
seg_num_classes - 1, "0" being "background"): its presence tells a reader the model segments, and it names
classes beyond the label map (seg_num_classes need not be num_classes + 1).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from effdet.anchor_grid import anchors_for
from effdet.config import Config
from effdet.data.augment import resize_and_crop, to_unit_range
from effdet.model.efficientdet import Outputs, flatten_predictions, split_outputs
from effdet.postprocess import Detections, postprocess
from effdet.predict import CONFIG_ASSET, DEFAULT_MIN_SCORE_THRESH, LABEL_MAP_ASSET, SEGMENTATION_ASSET
from effdet.seg_postprocess import padded_class_maps
from effdet.tiled import detect_tiled

ENCODED_SPEC = tf.TensorSpec([None], tf.string, name="images")
IMAGE_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
Quantization = Literal["float32", "float16", "int8"]
SEGMENTATION_TFLITE_REFUSAL = "TFLite formats carry detections only; export saved_model for segmentation models"


def label_names(config: Config) -> dict[int, str]:
    """Class id (1..num_classes) -> name: the config's label map, numbers for classes it does not name."""
    named = config.input.label_map if isinstance(config.input.label_map, dict) else {}
    return {i: named.get(i, f"class_{i}") for i in range(1, config.model.num_classes + 1)}


def seg_class_names(config: Config) -> list[str]:
    """The name of each segmentation class id: background, then the detection label map's names (class k of the
    class map is label id k)."""
    names = label_names(config)
    return ["background", *(names.get(k, f"class_{k}") for k in range(1, config.model.seg_num_classes))]


def refuse_tflite_for_segmentation(config: Config) -> None:
    """Raise ValueError for a model with a segmentation head: the TFLite graphs return detections only."""
    if "segmentation" in config.model.heads:
        raise ValueError(SEGMENTATION_TFLITE_REFUSAL)


def _detection_heads(outputs: tuple[Any, ...], config: Config) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
    """The class and box outputs of a model with a detection head (beside a segmentation head or not)."""
    named = split_outputs(outputs, config.model.heads)
    if named.class_outputs is None or named.box_outputs is None:
        raise ValueError(f"the model's heads {config.model.heads} have no object_detection head to detect with")
    return named.class_outputs, named.box_outputs


def run_detection(
    model: keras.Model,
    config: Config,
    images: tf.Tensor,
    image_scales: tf.Tensor,
    image_sizes: tf.Tensor,
    score_threshold: float | tf.Tensor | None = None,
    max_detections: int | None = None,
) -> Detections:
    """Run the network and post-processing on a prepared batch: what evaluation and export both run.

    images: float32 [batch, H, W, 3] normalised, at config.model.image_size; image_scales: float32 [batch]
    (original pixels per input pixel); image_sizes: float32 [batch, 2] original (height, width). Returns
    boxes yxyx in original pixels; score_threshold and max_detections default to config.eval.nms_configs.
    """
    class_outputs, box_outputs = _detection_heads(model(images, training=False), config)
    return decode_detections(
        class_outputs, box_outputs, config, image_scales, image_sizes, score_threshold, max_detections
    )


def decode_detections(
    class_outputs: list[tf.Tensor],
    box_outputs: list[tf.Tensor],
    config: Config,
    image_scales: tf.Tensor,
    image_sizes: tf.Tensor,
    score_threshold: float | tf.Tensor | None = None,
    max_detections: int | None = None,
) -> Detections:
    """Decoding and NMS of the detection head's outputs (lists over levels, as EfficientDet returns them);
    the other arguments and the result as `run_detection`'s."""
    anchors = anchors_for(config.model)
    num_classes = config.model.num_classes
    logits, codes = flatten_predictions(class_outputs, box_outputs, num_classes)
    # A dynamic batch leaves the anchor axis unknown after the reshape; post-processing needs it static.
    logits = tf.ensure_shape(logits, [None, anchors.num_anchors, num_classes])
    codes = tf.ensure_shape(codes, [None, anchors.num_anchors, 4])
    return postprocess(
        logits,
        codes,
        tf.constant(anchors.boxes),
        config.model.image_size,
        config.eval.nms_configs,
        image_scales,
        image_sizes,
        score_threshold=score_threshold,
        max_detections=max_detections,
    )


class _Untracked:
    """Holds a value where TensorFlow's object tracking does not look (a plain object is not traversed)."""

    def __init__(self, value: Any) -> None:
        self.value = value


class DetectionModule(tf.Module):
    """The model wrapped with in-graph pre-processing and post-processing (see the module docstring)."""

    def __init__(
        self,
        model: keras.Model,
        config: Config,
        min_score_thresh: float = DEFAULT_MIN_SCORE_THRESH,
        max_detections: int | None = None,
    ) -> None:
        super().__init__(name="efficientdet")
        # The Keras object graph stays out of the SavedModel: only its variables are saved, so loading needs
        # TensorFlow alone (as keras.export.ExportArchive does).
        self._network = _Untracked(model)
        self.model_variables = list(model.variables)
        self._config = config
        self._max_detections = max_detections or config.eval.nms_configs.max_output_size
        height, width = config.model.image_size
        default = float(min_score_thresh)

        self._detect = tf.function(
            self._detect_normalised,
            input_signature=[
                tf.TensorSpec([None, height, width, 3], tf.float32),
                tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([None, 2], tf.float32),
                tf.TensorSpec([], tf.float32),
            ],
        )

        def detect_encoded(images: tf.Tensor, score_threshold: tf.Tensor = default) -> dict[str, tf.Tensor]:
            return self._detect_batch(images, True, score_threshold)

        def detect_image(images: tf.Tensor, score_threshold: tf.Tensor = default) -> dict[str, tf.Tensor]:
            return self._detect_batch(images, False, score_threshold)

        threshold_spec = tf.TensorSpec([], tf.float32, name="score_threshold")
        self.detect_encoded = tf.function(detect_encoded, input_signature=[ENCODED_SPEC, threshold_spec])
        self.detect_image = tf.function(detect_image, input_signature=[IMAGE_SPEC, threshold_spec])

    def signatures(self) -> dict[str, Any]:
        """The four serving signatures (concrete functions) by name."""
        encoded = tf.function(lambda images: self.detect_encoded(images), input_signature=[ENCODED_SPEC])
        image = tf.function(lambda images: self.detect_image(images), input_signature=[IMAGE_SPEC])
        return {
            "serving_default": encoded.get_concrete_function(),
            "serving_with_threshold": self.detect_encoded.get_concrete_function(),
            "image_tensor": image.get_concrete_function(),
            "image_tensor_with_threshold": self.detect_image.get_concrete_function(),
        }

    def prepare(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One uint8 image [h, w, 3] -> (network input float32 [H, W, 3], original pixels per input pixel,
        original (height, width) float32 [2]), exactly as the evaluation input pipeline does it."""
        mean = tf.constant(self._config.model.mean_rgb, tf.float32)
        std = tf.constant(self._config.model.stddev_rgb, tf.float32)
        normalised = (tf.cast(image, tf.float32) - mean) / std
        placed = resize_and_crop(normalised, tf.zeros([0, 4]), self._config.model.image_size)
        network_input = to_unit_range(placed.image) if self._config.model.scale_range else placed.image
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        return network_input, 1.0 / placed.scale, size

    def _detect_batch(self, images: tf.Tensor, encoded: bool, score_threshold: tf.Tensor) -> dict[str, tf.Tensor]:
        """A batch of encoded or uint8 images -> outputs: the whole images, or each image tiled (input.tiles)."""
        if self._config.input.tiles is None:
            return self._detect(*self._prepare_batch(images, encoded), score_threshold)
        count = self._max_detections

        def one(item: tf.Tensor) -> dict[str, tf.Tensor]:
            image = tf.io.decode_image(item, channels=3, expand_animations=False) if encoded else item
            return self._detect_tiled(image, score_threshold)

        signature = {
            "boxes": tf.TensorSpec([count, 4], tf.float32),
            "scores": tf.TensorSpec([count], tf.float32),
            "classes": tf.TensorSpec([count], tf.int32),
            "num_detections": tf.TensorSpec([], tf.int32),
        }
        return tf.map_fn(one, images, fn_output_signature=signature)

    def _detect_tiled(self, image: tf.Tensor, score_threshold: tf.Tensor) -> dict[str, tf.Tensor]:
        """One uint8 image [h, w, 3] detected whole and in tiles, merged (effdet.tiled); outputs unbatched."""

        def detect(images: tf.Tensor, scales: tf.Tensor, sizes: tf.Tensor) -> Detections:
            network, config = self._network.value, self._config
            return run_detection(network, config, images, scales, sizes, score_threshold, self._max_detections)

        size = self._config.model.image_size
        found = detect_tiled(image, self._config.input, size, self.prepare, detect, self._max_detections)
        return {
            "boxes": tf.gather(found.boxes, [1, 0, 3, 2], axis=-1),
            "scores": found.scores,
            "classes": found.classes,
            "num_detections": found.num_detections,
        }

    def _prepare_batch(self, images: tf.Tensor, encoded: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        height, width = self._config.model.image_size

        def one(item: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            image = tf.io.decode_image(item, channels=3, expand_animations=False) if encoded else item
            return self.prepare(image)

        return tf.map_fn(
            one,
            images,
            fn_output_signature=(
                tf.TensorSpec([height, width, 3], tf.float32),
                tf.TensorSpec([], tf.float32),
                tf.TensorSpec([2], tf.float32),
            ),
        )

    def _detect_normalised(
        self, images: tf.Tensor, image_scales: tf.Tensor, image_sizes: tf.Tensor, score_threshold: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Network and post-processing of prepared inputs: detections (boxes xyxy in original pixels), and the
        class maps of a segmentation model."""
        outputs = split_outputs(self._network.value(images, training=False), self._config.model.heads)
        found = self._detections(outputs, image_scales, image_sizes, score_threshold)
        if outputs.seg_logits is None:
            return found
        size = self._config.model.image_size
        return {
            **found,
            "segmentation": padded_class_maps(outputs.seg_logits, size, image_sizes),
            "image_sizes": tf.cast(image_sizes, tf.int32),
        }

    def _detections(
        self, outputs: Outputs, image_scales: tf.Tensor, image_sizes: tf.Tensor, score_threshold: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """The detection outputs (boxes xyxy in original pixels); empty for a model without a detection head."""
        if outputs.class_outputs is None or outputs.box_outputs is None:
            return self._no_detections(tf.shape(image_sizes)[0])
        detections = decode_detections(
            outputs.class_outputs,
            outputs.box_outputs,
            self._config,
            image_scales,
            image_sizes,
            score_threshold,
            self._max_detections,
        )
        return {
            "boxes": tf.gather(detections.boxes, [1, 0, 3, 2], axis=-1),
            "scores": detections.scores,
            "classes": detections.classes,
            "num_detections": detections.num_detections,
        }

    def _no_detections(self, batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """The detection outputs of a model without a detection head: empty, shaped as a detector's."""
        count = self._max_detections
        return {
            "boxes": tf.zeros([batch, count, 4], tf.float32),
            "scores": tf.zeros([batch, count], tf.float32),
            "classes": tf.zeros([batch, count], tf.int32),
            "num_detections": tf.zeros([batch], tf.int32),
        }

    def tflite_function(self, input_size: tuple[int, int], score_threshold: float) -> Any:
        """A concrete function of a fixed-size uint8 image [1, height, width, 3] for TFLite conversion
        (no map_fn: one image is prepared directly)."""

        @tf.function(input_signature=[tf.TensorSpec([1, *input_size, 3], tf.uint8, name="images")])
        def detect(images: tf.Tensor) -> dict[str, tf.Tensor]:
            if self._config.input.tiles is not None:
                found = self._detect_tiled(images[0], tf.constant(score_threshold, tf.float32))
                return {key: value[tf.newaxis] for key, value in found.items()}
            image, scale, size = self.prepare(images[0])
            return self._detect_normalised(image[tf.newaxis], scale[tf.newaxis], size[tf.newaxis], score_threshold)

        return detect.get_concrete_function()


def _staging_dir(output: Path) -> Path:
    """A fresh hidden sibling of output, so the final rename stays on one file system."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))


def _publish(staging: Path, output: Path) -> None:
    """Move a finished staging folder or file to output (an existing empty folder is replaced)."""
    if output.is_dir():
        if any(output.iterdir()):
            raise FileExistsError(f"{output} is not empty; choose a new folder or remove it")
        output.rmdir()
    staging.rename(output)


def _attach_assets(module: DetectionModule, config: Config, folder: Path) -> None:
    """Write the assets (see the module docstring) into folder and attach them to the module being saved."""
    names = {LABEL_MAP_ASSET: label_names(config)}
    if "segmentation" in config.model.heads:
        names[SEGMENTATION_ASSET] = dict(enumerate(seg_class_names(config)))
    for file, by_id in names.items():
        (folder / file).write_text(json.dumps({str(k): v for k, v in by_id.items()}, indent=1))
    (folder / CONFIG_ASSET).write_text(config.to_yaml())
    module.assets = [tf.saved_model.Asset(str(folder / file)) for file in [*names, CONFIG_ASSET]]


def export_saved_model(
    model: keras.Model,
    config: Config,
    output_dir: Path,
    min_score_thresh: float = DEFAULT_MIN_SCORE_THRESH,
    max_detections: int | None = None,
) -> Path:
    """Write the model as a TF-only SavedModel with pre/post-processing to output_dir (atomically); return it.

    max_detections defaults to config.eval.nms_configs.max_output_size; NMS follows config.eval.nms_configs.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir} already exists and is not an empty folder; choose a new one")
    module = DetectionModule(model, config, min_score_thresh, max_detections)
    staging = _staging_dir(output_dir)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            _attach_assets(module, config, Path(scratch))
            tf.saved_model.save(module, str(staging), signatures=module.signatures())
        _publish(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


RepresentativeImages = Callable[[], Iterable[np.ndarray]]
"""A function yielding uint8 images [height, width, 3] of the TFLite input size, for int8 calibration."""


def _configured(
    converter: tf.lite.TFLiteConverter, quantization: Quantization, representative_images: RepresentativeImages | None
) -> tf.lite.TFLiteConverter:
    """The converter with the quantization settings applied. int8: int8 ops only and a uint8 input, calibrated
    on representative_images fed as float32 grey levels (the graph's input)."""
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8" and representative_images is not None:
        images = representative_images

        def calibration() -> Iterable[list[np.ndarray]]:
            for image in images():
                yield [np.asarray(image, np.float32)[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    return converter


def export_tflite_network(
    model: keras.Model,
    config: Config,
    output_path: Path,
    quantization: Quantization = "int8",
    representative_images: RepresentativeImages | None = None,
) -> Path:
    """Convert the network alone, with its normalisation, to a TFLite file: `images` [1, H, W, 3] at
    config.model.image_size, the letterboxed canvas in grey levels (uint8 for 'int8', float32 otherwise) ->
    `class_logits` float32 [1, anchors, classes] and `box_codes` float32 [1, anchors, 4] in anchor order.

    Resizing, box decoding and NMS are left to the serving code (effdet.tflite_runtime), because TensorFlow's
    int8 calibrator cannot run our in-graph NMS and boxes decoded inside an int8 graph would be rounded to
    whole quantization steps. 'int8' quantises every op to int8 (weights and activations), calibrated on
    representative_images (uint8 canvases as effdet.tflite_runtime.letterbox makes them).
    """
    output_path = Path(output_path)
    refuse_tflite_for_segmentation(config)
    if config.input.tiles is not None:
        raise ValueError("a model trained with tiles is served from its SavedModel only")
    if quantization == "int8" and representative_images is None:
        raise ValueError("int8 quantization needs representative_images (a few dozen typical images) to calibrate")
    height, width = config.model.image_size
    mean = tf.constant(config.model.mean_rgb, tf.float32)
    std = tf.constant(config.model.stddev_rgb, tf.float32)
    num_classes = config.model.num_classes

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="images")])
    def network(images: tf.Tensor) -> dict[str, tf.Tensor]:
        normalised = (images - mean) / std
        if config.model.scale_range:
            normalised = to_unit_range(normalised)
        class_outputs, box_outputs = _detection_heads(model(normalised, training=False), config)
        logits, codes = flatten_predictions(class_outputs, box_outputs, num_classes)
        return {"class_logits": logits, "box_codes": codes}

    def converter_for(folder: str) -> tf.lite.TFLiteConverter:
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        return _configured(converter, quantization, representative_images)

    _write_tflite(network.get_concrete_function(), converter_for, output_path)
    return output_path


def _write_tflite(function: Any, converter_for: Callable[[str], tf.lite.TFLiteConverter], output_path: Path) -> None:
    """Freeze a concrete function's variables, convert it with the converter made for its saved form, and write
    the flatbuffer to output_path atomically."""
    # The converter's own variable freezing leaves Keras 3 variables as TFLite resource variables, which fail
    # at run time; freezing them into constants first, and saving the frozen graph with its signature, gives a
    # model of builtin ops only with named inputs and outputs.
    frozen = convert_variables_to_constants_v2(function)

    @tf.function(input_signature=function.structured_input_signature[0])
    def detect(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return tf.nest.pack_sequence_as(function.structured_outputs, frozen(images))

    holder = tf.Module()
    holder.detect = detect
    with tempfile.TemporaryDirectory() as scratch:
        tf.saved_model.save(
            holder,
            scratch,
            signatures={"serving_default": detect.get_concrete_function()},
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
        )
        flatbuffer = bytes(converter_for(scratch).convert())
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_path.parent, prefix=f".{output_path.name}.", delete=False) as tmp:
        tmp.write(flatbuffer)
    Path(tmp.name).replace(output_path)


def export_tflite(
    model: keras.Model,
    config: Config,
    output_path: Path,
    quantization: Quantization = "float32",
    input_size: tuple[int, int] | None = None,
    min_score_thresh: float = DEFAULT_MIN_SCORE_THRESH,
) -> Path:
    """Convert the model with pre/post-processing to a TFLite file taking uint8 [1, height, width, 3].

    input_size (height, width) defaults to config.model.image_size; other sizes are resized inside as the
    SavedModel does. Outputs as the SavedModel's (max_detections = config.eval.tflite_max_detections), with a
    fixed score threshold. NMS is TFLite's builtin NON_MAX_SUPPRESSION_V5, so only builtin ops are needed.
    float32 or float16 weights; int8 is `export_tflite_network`'s (the calibrator cannot run this graph).
    """
    output_path = Path(output_path)
    refuse_tflite_for_segmentation(config)
    if quantization == "int8":
        raise ValueError(
            "int8 quantization of the whole detector is not possible (TensorFlow's calibrator crashes on its NMS "
            "and resize); export the network alone with export_tflite_network(..., 'int8', representative_images)"
        )
    if quantization not in ("float32", "float16"):
        raise ValueError(f"unknown quantization {quantization!r}; choose float32 or float16")
    size = input_size or config.model.image_size
    module = DetectionModule(model, config, min_score_thresh, config.eval.tflite_max_detections)
    function = module.tflite_function(size, min_score_thresh)

    def converter_for(folder: str) -> tf.lite.TFLiteConverter:
        return _configured(tf.lite.TFLiteConverter.from_saved_model(folder), quantization, None)

    _write_tflite(function, converter_for, output_path)
    return output_path
