"""It learns to segment: EfficientDet-D0 (one BiFPN cell, one head repeat) at 128 with the segmentation head
alone, from scratch on synthetic plate scenes whose class maps are the plates' quadrilaterals; the plate IoU on
those scenes rises well above an untrained model's in about a minute on 2 CPU cores, and evaluation at the images'
own size (effdet.seg_evaluate) agrees with the score at the logits' size."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from effdet.checkpoints import load_run_model
from effdet.config import Config, get_config
from effdet.data.masks import encode_png
from effdet.data.pipeline import build_dataset
from effdet.data.shards import make_example
from effdet.data.synthetic import PLATE_LABEL, plate_class_map, render_plates
from effdet.data.validate import ValidItem
from effdet.evaluate import evaluate_heads
from effdet.model.efficientdet import build_model, split_outputs
from effdet.seg_evaluate import evaluate_segmentation
from effdet.seg_metrics import ConfusionAccumulator, SegmentationMetrics
from effdet.train import Progress, TrainOptions, train
from tests.cheap import CHEAP

SIZE = 128
RECIPE = {
    **CHEAP,
    "image_size": SIZE,
    "num_classes": 1,
    "heads": ["segmentation"],
    "seg_num_classes": 2,
    "label_map": {1: PLATE_LABEL},
    "optimizer": "adam",
    "learning_rate": 0.016,
    "lr_warmup_init": 0.0016,
}


def _scenes(folder: Path, count: int) -> str:
    """`count` synthetic scenes with their plate class maps, written as records."""
    rng = np.random.default_rng(11)
    path = folder / "train.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            image, plates = render_plates(rng, SIZE, SIZE, max_plates=2, plate_width=(40, 100))
            file = folder / f"{i}.jpg"
            image.save(file, quality=90)
            item = ValidItem(
                image_path=file,
                filename=file.name,
                width=SIZE,
                height=SIZE,
                boxes=[p.box for p in plates],
                sha1=file.name,
                image_format="jpeg",
            )
            mask = encode_png(plate_class_map(plates, SIZE, SIZE))
            writer.write(make_example(item, file.read_bytes(), i, {PLATE_LABEL: 1}, mask).SerializeToString())
    return str(path)


def _metrics(model: keras.Model, config: Config, records: str) -> SegmentationMetrics:
    """mIoU of the model's argmax against the labels at the logits' resolution."""
    scores = ConfusionAccumulator(["background", PLATE_LABEL])
    for batch in build_dataset(records, config, 8, training=False):
        logits = split_outputs(model(batch["images"], training=False), config.model.heads).seg_logits
        assert logits is not None
        predictions = tf.argmax(logits, axis=-1).numpy()
        for labels, predicted in zip(batch["seg_labels"].numpy(), predictions, strict=True):
            scores.add(labels, predicted)
    return scores.metrics()


@pytest.mark.slow
def test_d0_learns_to_segment_synthetic_plates(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    records = _scenes(tmp_path, 32)
    config = get_config("efficientdet-d0", RECIPE)
    untrained = _metrics(build_model(config), config, records)
    seen: list[Progress] = []
    result = train(
        config,
        records,
        None,
        tmp_path / "run",
        TrainOptions(batch_size=8, num_steps=120, checkpoint_every=1000, progress_interval_s=0),
        on_progress=seen.append,
    )
    assert result.status == "completed"
    assert all(p.seg_loss is not None for p in seen)
    assert (seen[0].cls_loss, seen[0].box_loss) == (0.0, 0.0)
    first = sum(p.seg_loss or 0.0 for p in seen[:10]) / 10
    last = sum(p.seg_loss or 0.0 for p in seen[-10:]) / 10
    assert last < 0.5 * first
    _, model = load_run_model(tmp_path / "run")
    trained = _metrics(model, config, records)
    plate_iou = trained.per_class_iou[1]
    assert plate_iou is not None
    assert plate_iou > 0.3, (trained, untrained)
    assert trained.miou > untrained.miou + 0.2
    # Scored at each image's own size against its stored map, as evaluation reports it: about the same.
    full = evaluate_segmentation(model, config, records)
    assert (full.num_images, full.class_names) == (32, ["background", PLATE_LABEL])
    assert abs(full.miou - trained.miou) < 0.1, (full, trained)
    # A job reports it as the metrics of a model without a detection head: no box metrics, its mIoU.
    metrics, detections = evaluate_heads(model, config, records, {})
    assert (detections, metrics.ap, metrics.per_class, metrics.segmentation) == ([], None, {}, full)
