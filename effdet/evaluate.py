"""COCO box metrics (pycocotools) of a model, or of an exported SavedModel, on a converted val split (and the
segmentation head's mIoU, effdet.seg_evaluate, for a model that has one).

The val ground truth is the converter's `val_annotations.json`, whose image ids are the TFRecords'
`image/source_id` integers and whose category ids are the label map's (1-based) ids; detections are COCO
results `{"image_id", "category_id", "bbox": [x, y, width, height] in original pixels, "score"}`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from effdet.config import Config
from effdet.data.fixes import annotation_id
from effdet.data.pipeline import build_dataset
from effdet.data.shards import parse_example, record_files
from effdet.export import DetectionModule, run_detection
from effdet.metrics import PR_CURVE_POINTS, ClassMetrics, Metrics
from effdet.predict import CONFIG_ASSET

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _pycocotools_output() -> Iterator[None]:
    """Send what pycocotools prints to the debug log instead of stdout."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        if line.strip():
            logger.debug("pycocotools: %s", line)


def _coco(dataset: dict[str, Any]) -> COCO:
    """A COCO index over an in-memory dataset (COCO() only reads files)."""
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _ground_truth(source: dict[str, Any] | Path) -> dict[str, Any]:
    """The ground truth document with the fields pycocotools needs filled in (area, iscrowd, id)."""
    data = json.loads(Path(source).read_text()) if isinstance(source, str | os.PathLike) else copy.deepcopy(source)
    for index, annotation in enumerate(data.get("annotations", []), start=1):
        _, _, width, height = annotation["bbox"]
        annotation.setdefault("area", width * height)
        annotation.setdefault("iscrowd", 0)
        annotation.setdefault("id", index)
    data.setdefault("categories", [])
    return data


def _results(truth: COCO, detections: list[dict[str, Any]]) -> COCO:
    """A COCO index over detections, as `COCO.loadRes` builds it, but also for an empty list."""
    known = set(truth.getImgIds())
    unknown = sorted({int(d["image_id"]) for d in detections} - known)
    if unknown:
        raise ValueError(f"detections name image ids {unknown[:5]} that the ground truth does not have")
    annotations = []
    for index, detection in enumerate(detections, start=1):
        x, y, width, height = (float(v) for v in detection["bbox"])
        annotations.append(
            {
                "id": index,
                "image_id": int(detection["image_id"]),
                "category_id": int(detection["category_id"]),
                "bbox": [x, y, width, height],
                "score": float(detection["score"]),
                "area": width * height,
                "iscrowd": 0,
            }
        )
    return _coco(
        {"images": truth.dataset["images"], "categories": truth.dataset["categories"], "annotations": annotations}
    )


def _value(number: float) -> float | None:
    """pycocotools' -1 ('no ground truth here') as None."""
    return None if number < 0 else float(number)


def _class_metrics(precision: np.ndarray, recall_points: np.ndarray, k: int) -> ClassMetrics:
    """Metrics of category index k from COCOeval's precision array [iou, recall, class, area, max_dets]."""
    all_ious = precision[:, :, k, 0, -1]
    at_50 = precision[0, :, k, 0, -1]
    if not (all_ious > -1).any():
        return ClassMetrics(ap=None, ap50=None, pr_curve=[])
    step = max(1, -(-len(recall_points) // PR_CURVE_POINTS))
    curve = [(float(r), float(max(p, 0.0))) for r, p in zip(recall_points[::step], at_50[::step], strict=True)]
    return ClassMetrics(ap=float(np.mean(all_ious[all_ious > -1])), ap50=float(np.mean(at_50)), pr_curve=curve)


def coco_metrics(ground_truth: dict[str, Any] | Path, detections: list[dict[str, Any]]) -> Metrics:
    """COCO box metrics of detections (COCO result dicts) against ground truth (a COCO dict or JSON file)."""
    with _pycocotools_output():
        truth = _coco(_ground_truth(ground_truth))
        evaluation = COCOeval(truth, _results(truth, detections), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    precision = evaluation.eval["precision"]
    names = {c["id"]: str(c.get("name", c["id"])) for c in truth.dataset["categories"]}
    per_class = {
        names[category]: _class_metrics(precision, evaluation.params.recThrs, k)
        for k, category in enumerate(evaluation.params.catIds)
    }
    return Metrics(
        ap=_value(stats[0]),
        ap50=_value(stats[1]),
        ap75=_value(stats[2]),
        ap_small=_value(stats[3]),
        ap_medium=_value(stats[4]),
        ap_large=_value(stats[5]),
        ar100=_value(stats[8]),
        num_images=len(truth.getImgIds()),
        per_class=per_class,
    )


def records_ground_truth(files: str | Sequence[str], names: Mapping[int, str]) -> dict[str, Any]:
    """COCO ground truth of any converted records (train, val or both), in original-image pixels, with the
    records' source ids as image ids, stable annotation ids (`annotation_id`) and `names` ({class id: name}) as the
    categories; images are not decoded."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for serialized in tf.data.TFRecordDataset(record_files(files)).as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature
        width, height = (int(feature[f"image/{k}"].int64_list.value[0]) for k in ("width", "height"))
        image_id = int(feature["image/source_id"].bytes_list.value[0])
        name = feature["image/filename"].bytes_list.value
        images.append({"id": image_id, "width": width, "height": height, "file_name": name[0].decode() if name else ""})
        sides = [list(feature[f"image/object/bbox/{k}"].float_list.value) for k in ("xmin", "ymin", "xmax", "ymax")]
        labels = list(feature["image/object/class/label"].int64_list.value)
        crowd = list(feature["image/object/is_crowd"].int64_list.value) if "image/object/is_crowd" in feature else []
        for i, (x0, y0, x1, y1) in enumerate(zip(*sides, strict=True)):
            box = [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height]
            annotations.append(
                {
                    "id": annotation_id(image_id, i),
                    "image_id": image_id,
                    "category_id": int(labels[i]),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(crowd[i]) if i < len(crowd) else 0,
                }
            )
    categories = [{"id": int(k), "name": v} for k, v in sorted(names.items())]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_coco_detections(
    source_ids: Sequence[int], boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, counts: np.ndarray
) -> list[dict[str, Any]]:
    """COCO results from a batch of padded detections.

    boxes: float [batch, max, 4] as [xmin, ymin, xmax, ymax] in original pixels; scores float [batch, max];
    classes int [batch, max] (1-based); counts int [batch], how many of each row are real.
    """
    results = []
    for row, source_id in enumerate(source_ids):
        for i in range(int(counts[row])):
            xmin, ymin, xmax, ymax = (float(v) for v in boxes[row, i])
            results.append(
                {
                    "image_id": int(source_id),
                    "category_id": int(classes[row, i]),
                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                    "score": float(scores[row, i]),
                }
            )
    return results


def model_detections(
    model: keras.Model, config: Config, val_files: str | Sequence[str], batch_size: int = 8
) -> list[dict[str, Any]]:
    """COCO results of a Keras model on TFRecords, through the evaluation input pipeline."""
    height, width = config.model.image_size

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, height, width, 3], tf.float32),
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([None, 2], tf.float32),
        ]
    )
    def run(images: tf.Tensor, image_scales: tf.Tensor, image_sizes: tf.Tensor) -> tuple[tf.Tensor, ...]:
        found = run_detection(model, config, images, image_scales, image_sizes)
        return tf.gather(found.boxes, [1, 0, 3, 2], axis=-1), found.scores, found.classes, found.num_detections

    if config.input.tiles is not None:
        return _tiled_detections(model, config, val_files, batch_size)
    results: list[dict[str, Any]] = []
    for batch in build_dataset(val_files, config, batch_size, training=False):
        boxes, scores, classes, counts = (
            t.numpy() for t in run(batch["images"], batch["image_scales"], batch["image_sizes"])
        )
        source_ids = [int(s) for s in batch["source_ids"].numpy()]
        results += to_coco_detections(source_ids, boxes, scores, classes, counts)
    return results


def _tiled_detections(
    model: keras.Model, config: Config, val_files: str | Sequence[str], batch_size: int
) -> list[dict[str, Any]]:
    """COCO results of a tiled model: each original image through the tiled detection an export runs."""
    module = DetectionModule(model, config, min_score_thresh=config.eval.nms_configs.score_thresh)
    return _encoded_detections(module.detect_encoded, val_files, batch_size, config.eval.nms_configs.score_thresh)


def _encoded_detections(
    detect: Any, val_files: str | Sequence[str], batch_size: int, score_threshold: float
) -> list[dict[str, Any]]:
    """COCO results of detect(images=encoded [N], score_threshold=[]) over the records' original images."""
    threshold = tf.constant(score_threshold, tf.float32)
    dataset = tf.data.TFRecordDataset(record_files(val_files)).map(parse_example)
    dataset = dataset.map(lambda e: (e["image"], e["source_id"])).batch(batch_size)
    results: list[dict[str, Any]] = []
    for images, ids in dataset:
        out = detect(images=images, score_threshold=threshold)
        arrays = (out[k].numpy() for k in ("boxes", "scores", "classes", "num_detections"))
        results += to_coco_detections([int(s) for s in ids.numpy()], *arrays)
    return results


def evaluate_model(
    model: keras.Model,
    config: Config,
    val_files: str | Sequence[str],
    ground_truth: dict[str, Any] | Path,
    batch_size: int = 8,
) -> Metrics:
    """COCO metrics of a Keras model (with the weights to evaluate, e.g. EMA applied) on the val records."""
    return coco_metrics(ground_truth, model_detections(model, config, val_files, batch_size))


def evaluate_heads(
    model: keras.Model,
    config: Config,
    val_files: str | Sequence[str],
    ground_truth: dict[str, Any] | Path,
    batch_size: int = 8,
) -> tuple[Metrics, list[dict[str, Any]]]:
    """The metrics of every head the model has on the val records, and its COCO detections (none without a
    detection head): box metrics for object_detection, mIoU for segmentation."""
    from effdet.seg_evaluate import evaluate_segmentation

    heads = config.model.heads
    segmentation = evaluate_segmentation(model, config, val_files) if "segmentation" in heads else None
    if segmentation is not None and "object_detection" not in heads:
        return Metrics.segmentation_only(segmentation), []
    detections = model_detections(model, config, val_files, batch_size)
    metrics = coco_metrics(ground_truth, detections)
    return metrics.model_copy(update={"segmentation": segmentation}), detections


def saved_model_detections(
    saved_model_dir: Path,
    val_files: str | Sequence[str],
    batch_size: int = 8,
    score_threshold: float | None = None,
) -> list[dict[str, Any]]:
    """COCO results of an exported SavedModel fed the records' original encoded images.

    score_threshold defaults to the exported config's nms_configs.score_thresh, the threshold
    `evaluate_model` uses, so both evaluate the same detections.
    """
    if score_threshold is None:
        score_threshold = Config.from_yaml(
            Path(saved_model_dir) / "assets" / CONFIG_ASSET
        ).eval.nms_configs.score_thresh
    loaded = tf.saved_model.load(str(saved_model_dir))
    return _encoded_detections(loaded.signatures["serving_with_threshold"], val_files, batch_size, score_threshold)


def evaluate_saved_model(
    saved_model_dir: Path,
    val_files: str | Sequence[str],
    ground_truth: dict[str, Any] | Path,
    batch_size: int = 8,
    score_threshold: float | None = None,
) -> Metrics:
    """COCO metrics of an exported SavedModel, run on the val records' original image bytes."""
    return coco_metrics(ground_truth, saved_model_detections(saved_model_dir, val_files, batch_size, score_threshold))


def write_metrics(metrics: Metrics, path: Path) -> Path:
    """Write metrics as JSON atomically, so readers never see half a file."""
    return write_json(metrics.model_dump(mode="json"), path)


def write_json(document: Any, path: Path) -> Path:
    """Write a JSON document atomically (temp file beside it, then rename), so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        json.dump(document, f, indent=2)
    try:
        Path(f.name).replace(path)
    except BaseException:
        Path(f.name).unlink(missing_ok=True)
        raise
    return path
