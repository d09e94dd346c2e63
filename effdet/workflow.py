"""The run workflow: resolve a config, fine-tune, evaluate, export. The CLI, the service's worker and the benches
all take these steps through here, so a run means the same thing whichever of them made it.

    records = Records(folder)                                    # what `effdet convert` wrote
    config = resolve_config("efficientdet-d0", records.report(), "learning_rate=0.04")
    fine_tune(config, records, run_dir, TrainOptions(num_steps=1000))   # resumes when run again
    metrics = evaluate_run(run_dir, records)                     # None without val images; writes metrics.json
    export_run(run_dir, output)                                  # SavedModel (and model.tflite)

A run dir's `config.yaml` is the one config of the run: `fine_tune` writes it and trains from the copy it reads
back, and evaluation and export build the model from it. `load_run` loads a run's model once for a caller that
evaluates and exports it (the worker). This module loads no TensorFlow when imported (the API imports it to
resolve configs); the steps import it when they run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from effdet.config import Config, ConfigError, InputConfig, get_config, parse_overrides
from effdet.data.layout import GROUND_TRUTH_FILE, REPORT_FILE, TRAIN_SHARDS, TRAIN_SPLIT, VAL_SHARDS
from effdet.layout import TFLITE_FILE
from effdet.predict import DEFAULT_MIN_SCORE_THRESH

if TYPE_CHECKING:
    import keras

    from effdet.data.anchors_kmeans import AnchorChoice
    from effdet.data.convert import ConversionReport
    from effdet.metrics import Metrics
    from effdet.train import Progress, TrainOptions, TrainResult

__all__ = [
    "DEFAULT_MIN_SCORE_THRESH",
    "GROUND_TRUTH_FILE",
    "REPORT_FILE",
    "TFLITE_FILE",
    "TRAIN_SHARDS",
    "VAL_SHARDS",
    "LoadedRun",
    "Records",
    "evaluate_run",
    "export_run",
    "fine_tune",
    "load_run",
    "resolve_auto_anchors",
    "resolve_config",
    "size_warnings",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Records:
    """A converted dataset: the folder `effdet convert` wrote (shards, val ground truth, dataset.json).

    The shards are the converter's `train-*.tfrecord` and `val-*.tfrecord` in `folder` unless globs are given
    (the CLI's --train and --val); the val ground truth is `val_annotations.json` beside the val shards unless
    `truth_file` names another. The converter's val split counts only when it holds images; given globs are
    taken as they are, so a wrong one fails where it is read.
    """

    folder: Path
    train_glob: str | None = None
    val_glob: str | None = None
    truth_file: Path | None = None

    @classmethod
    def from_glob(cls, pattern: str, val: str | None = None, ground_truth: Path | None = None) -> Records:
        """The records of the CLI's `--train 'DIR/train-*.tfrecord'` (and `--val`): the folder is DIR."""
        return cls(Path(pattern).parent, train_glob=pattern, val_glob=val, truth_file=ground_truth)

    @property
    def train_files(self) -> str:
        """The training shards' glob."""
        return self.train_glob or str(self.folder / TRAIN_SHARDS)

    @property
    def val_files(self) -> str | None:
        """The val shards' glob, or None when there is no val split (no val shard, or no val image)."""
        split = self._val_split()
        return split[0] if split else None

    @property
    def ground_truth(self) -> Path | None:
        """The val ground truth (COCO JSON), or None when there is no val split."""
        split = self._val_split()
        return split[1] if split else None

    def _val_split(self) -> tuple[str, Path] | None:
        """(val glob, ground truth): a given glob as it is, the converter's only when it holds images."""
        pattern = self.val_glob or str(self.folder / VAL_SHARDS)
        truth = self.truth_file or Path(pattern).parent / GROUND_TRUTH_FILE
        if self.val_glob is not None:
            return pattern, truth
        if not any(self.folder.glob(VAL_SHARDS)) or not truth.is_file():
            return None
        return (pattern, truth) if json.loads(truth.read_text()).get("images") else None

    def report(self) -> ConversionReport | None:
        """What the converter said about the dataset (dataset.json), or None when the folder has none."""
        from effdet.data.convert import ConversionReport

        path = self.folder / REPORT_FILE
        return ConversionReport.model_validate_json(path.read_text()) if path.is_file() else None


def resolve_config(
    model: str, report: ConversionReport | None, overrides: Mapping[str, Any] | str | None = None
) -> Config:
    """The preset of `model`, then what the dataset implies (num_classes, label_map, max_instances_per_image and,
    with masks, seg_num_classes, for the keys the overrides leave out), then the overrides (a dict, 'a=b,c=d', YAML
    text or, as the CLI takes them, a .yaml path; a server parses them itself with allow_path=False). ConfigError
    lists every problem; a segmentation head needs a dataset whose training images have masks."""
    from effdet.data.defaults import dataset_hparams

    given = parse_overrides(overrides)
    implied = dataset_hparams(report, given) if report is not None else {}
    config = get_config(model, {**implied, **given})
    if "segmentation" in config.model.heads and report is not None:
        problem = _segmentation_problem(report, config)
        if problem:
            raise ConfigError([problem])
    return config


def _segmentation_problem(report: ConversionReport, config: Config) -> str | None:
    """Why the dataset cannot train the config's segmentation head (no masks in train, too few seg classes)."""
    summary = report.segmentation
    if summary is None or not summary.images.get(TRAIN_SPLIT):
        return (
            "heads: segmentation trains on per-pixel class masks, and the records hold boxes only: the dataset has "
            "no masks in its train split; upload COCO segmentation (polygons or RLE) or VOC SegmentationClass "
            "PNGs, or train with heads ['object_detection']"
        )
    needed = max(report.label_map, default=0) + 1
    if config.model.seg_num_classes < needed:
        return (
            f"seg_num_classes {config.model.seg_num_classes} is below the dataset's {needed} mask classes "
            f"(background and ids 1..{needed - 1}); use seg_num_classes={needed} or leave it out"
        )
    return None


def size_warnings(report: ConversionReport | None, config: Config) -> list[str]:
    """Advice from the dataset's report for a resolved config: more than a tenth of the boxes under 16 px at its
    image_size, with the input size that avoids it or tiling (effdet.data.input_size); none without box sizes,
    and none for a tiled config, which already applies the remedy (its tiles enlarge the boxes)."""
    from effdet.data.input_size import input_size_warning

    sizes = report.stats.input_sizes if report is not None else None
    if sizes is None or config.input.tiles is not None:
        return []
    found = input_size_warning(sizes, config.model.image_size, config.model.max_level)
    return [found] if found else []


def tiled_image_sizes(images_wh: np.ndarray, settings: InputConfig) -> np.ndarray:
    """The (width, height) a box's image has when the network sees it: the tile, for a tiled config (training
    sees mostly tiles, so anchors are chosen at the tiles' scale), else the image itself."""
    grid = settings.tile_grid
    if settings.tiles is None:
        return images_wh
    if grid is None:
        return np.minimum(images_wh, float(settings.tiles))
    overlap = settings.tile_overlap
    counts = np.array(grid, np.float64)
    return np.ceil(images_wh / (counts - (counts - 1) * overlap))


def resolve_auto_anchors(config: Config, records: Records) -> tuple[Config, AnchorChoice | None]:
    """The config with `aspect_ratios: auto` and `anchor_scale: auto` replaced by what the k-means suggestion
    chooses on the records' training boxes at the config's image_size and levels (effdet.data.anchors_kmeans),
    and that choice with the mean best IoU of the variant's default anchors and of the chosen ones; the config
    unchanged and None when neither is 'auto'. Reads the training shards (TensorFlow); ValueError without boxes."""
    model = config.model
    if not model.has_auto_anchors:
        return config, None
    from effdet.data.anchors_kmeans import choose_anchors
    from effdet.data.shards import read_box_shapes

    boxes_wh, images_wh = read_box_shapes(records.train_files, skip_crowd=config.input.skip_crowd_during_training)
    images_wh = tiled_image_sizes(images_wh, config.input)
    if not len(boxes_wh):
        raise ValueError(
            f"aspect_ratios or anchor_scale is 'auto' but {records.train_files} holds no box to choose them on; "
            "give numbers instead"
        )
    preset = get_config(model.name).model
    choice = choose_anchors(
        boxes_wh,
        images_wh,
        model.image_size,
        (model.min_level, model.max_level, model.num_scales),
        None if isinstance(model.aspect_ratios, str) else model.aspect_ratios,
        None if isinstance(model.anchor_scale, str) else model.anchor_scale,
        default_ratios=preset.ratios,
        default_scale=preset.scale,
    )
    log.info("%s", choice.describe())
    return config.override({"aspect_ratios": choice.aspect_ratios, "anchor_scale": choice.anchor_scale}), choice


def fine_tune(
    config: Config,
    records: Records,
    run_dir: Path,
    options: TrainOptions | None = None,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_finish: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train (or resume) the run in run_dir on the records, from the config as run_dir/config.yaml holds it.

    Anchors given as 'auto' are chosen on the training boxes first (`resolve_auto_anchors`, logged), so the run's
    config.yaml holds numbers. The config is written there (a run dir of another model raises CheckpointError)
    and read back, so training, evaluation and export use the same copy; see effdet.train.train for the rest
    (checkpoints, resume, budgets, `eval_every` on the records' val split)."""
    from effdet.checkpoints import save_run_config
    from effdet.train import train

    config, _ = resolve_auto_anchors(config, records)
    saved = save_run_config(run_dir, config)
    return train(
        saved,
        records.train_files,
        records.val_files,
        run_dir,
        options,
        ground_truth=records.ground_truth,
        on_progress=on_progress,
        should_stop=should_stop,
        should_finish=should_finish,
        on_checkpoint=on_checkpoint,
    )


@dataclass(frozen=True, eq=False)
class LoadedRun:
    """A run's model with the weights chosen and its config.yaml, loaded once to evaluate and export."""

    run_dir: Path
    config: Config
    model: keras.Model

    def evaluate(self, records: Records, batch_size: int = 8) -> Metrics | None:
        """The metrics of each head on the records' val split (COCO for detection, mIoU for segmentation), written
        to run_dir/metrics.json, and the val ground truth with the detections to run_dir/val_detections.json (to
        show them image by image); None without a val split."""
        from effdet.evaluate import evaluate_heads, write_json, write_metrics
        from effdet.layout import METRICS_FILE, VAL_DETECTIONS_FILE

        val_files, truth = records.val_files, records.ground_truth
        if val_files is None or truth is None:
            return None
        metrics, detections = evaluate_heads(self.model, self.config, val_files, truth, batch_size)
        write_metrics(metrics, self.run_dir / METRICS_FILE)
        document = {"ground_truth": json.loads(truth.read_text()), "detections": detections}
        write_json(document, self.run_dir / VAL_DETECTIONS_FILE)
        return metrics

    def export(self, output: Path, min_score_thresh: float = DEFAULT_MIN_SCORE_THRESH) -> Path:
        """The SavedModel (pre- and post-processing inside) in output, a new or empty folder; returns output."""
        from effdet.export import export_saved_model

        return export_saved_model(self.model, self.config, output, min_score_thresh=min_score_thresh)

    def export_tflite(self, path: Path, min_score_thresh: float = DEFAULT_MIN_SCORE_THRESH) -> Path:
        """The float32 TFLite model (uint8 [1, H, W, 3] in, the SavedModel's outputs) at path; returns path."""
        from effdet.export import export_tflite

        return export_tflite(self.model, self.config, path, min_score_thresh=min_score_thresh)


def load_run(run_dir: Path, which: str = "final") -> LoadedRun:
    """The run's model with its averaged weights: 'final' (end of training; the latest checkpoint while none),
    'best' (by val AP, with eval_every) or 'latest' (checkpoint). CheckpointError when there is none."""
    from effdet.checkpoints import load_run_model

    config, model = load_run_model(run_dir, which)
    return LoadedRun(run_dir=run_dir, config=config, model=model)


def evaluate_run(run_dir: Path, records: Records, which: str = "final", batch_size: int = 8) -> Metrics | None:
    """COCO metrics of the run's weights on the records' val split, written to run_dir/metrics.json; None (and no
    model loaded) when the records have no val split."""
    if records.val_files is None:
        return None
    return load_run(run_dir, which).evaluate(records, batch_size)


def export_run(
    run_dir: Path,
    output: Path,
    min_score_thresh: float = DEFAULT_MIN_SCORE_THRESH,
    which: str = "final",
    tflite: bool = False,
) -> Path:
    """Export the run's weights as a SavedModel in output (a new or empty folder) and, with tflite, also
    output/model.tflite, both dropping detections under min_score_thresh by default; returns output."""
    run = load_run(run_dir, which)
    path = run.export(output, min_score_thresh)
    if tflite:
        run.export_tflite(output / TFLITE_FILE, min_score_thresh)
    return path
