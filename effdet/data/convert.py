"""Dataset conversion: read any supported format, validate, split, write automl TFRecord shards, the val
ground truth as COCO JSON, and `dataset.json` (label map, counts, statistics, problems, anchor suggestion), under
the names effdet.data.layout gives them.

The readers spool their records to a scratch file (effdet.data.read_result), the split is drawn from their keys,
and validation (image decoding, in a thread pool sized to the cores) hands each kept image with the bytes it read
to its split's shards (effdet.data.split_writer): every file is read once, and memory holds a few hundred bytes
per image (names, box labels and sizes, duplicate hashes), never the images or their parsed annotations.
In a dataset where some record carries masks, each kept image's class map is written beside it
(effdet.data.class_maps) and the report sums them up (`segmentation`).
Everything is written to a temporary folder beside the output and renamed at the end: a failure leaves nothing
half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from effdet.config import MODEL_NAMES, ModelConfig, get_config
from effdet.data.anchors_kmeans import AnchorSuggestion, suggest_anchors
from effdet.data.class_maps import ClassPixels, MaskClasses, SegmentationSummary, mask_label_ids
from effdet.data.image_index import IndexSpool, index_entry
from effdet.data.ingest import DatasetFormat, extract_zip, read_dataset
from effdet.data.labels import LabelMap, build_label_map, is_printable, label_names_of
from effdet.data.layout import GROUND_TRUTH_FILE, IMAGE_INDEX_FILE, REPORT_FILE, TRAIN_SPLIT, VAL_SPLIT
from effdet.data.masks import ClassColours
from effdet.data.read_result import RecordKey, RecordSpool
from effdet.data.records import Problem, Record, Severity, Split, warning
from effdet.data.scratch import FirstSeen
from effdet.data.similar_names import similar_class_problems
from effdet.data.split import draw_split
from effdet.data.split_writer import SplitSummary, SplitWriter
from effdet.data.stats import DatasetStats, StatsAccumulator
from effdet.data.validate import MAX_IMAGE_PIXELS, ItemResult, ValidItem, validate_record

Progress = Callable[[int, int], None]
"""progress(done, total): called as items are validated (and written)."""

WINDOW = 16
"""Validations queued per worker thread: enough to keep each busy, few enough that results never pile up."""


class NoUsableImagesError(ValueError):
    """Every image was left out; carries the problems that say why (a failed dataset still lists them)."""

    def __init__(self, problems: list[Problem]) -> None:
        counts = Counter(problem.code for problem in problems if problem.severity == Severity.ERROR)
        found = ", ".join(f"{count} {code}" for code, count in counts.most_common(5)) or "no image found"
        super().__init__(f"no usable image in the dataset ({found}); fix the files its problems name")
        self.problems = problems


class ConversionReport(BaseModel):
    """Everything `dataset.json` says about a converted dataset."""

    format: str
    label_map: dict[int, str]
    splits: dict[str, SplitSummary]
    max_instances_per_image: int
    problems: list[Problem]
    dropped_images: list[str] = Field(description="images left out, each named by an error in `problems`")
    stats: DatasetStats
    anchors: AnchorSuggestion | None = Field(description="k-means anchor suggestion; None without boxes")
    anchors_by_model: dict[str, AnchorSuggestion] = Field(
        default_factory=dict,
        description="the same suggestion for each variant (its default input size, levels and anchors); empty "
        "without boxes or in reports written before it",
    )
    segmentation: SegmentationSummary | None = Field(
        None, description="what the per-pixel class maps hold; None when no image has one (or in older reports)"
    )


class Inspection(BaseModel):
    """What `effdet stats` prints: the dataset as validation sees it, without writing anything."""

    format: str
    label_map: dict[int, str]
    images: int
    problems: list[Problem]
    dropped_images: list[str]
    stats: DatasetStats
    anchors: AnchorSuggestion | None
    anchors_by_model: dict[str, AnchorSuggestion] = Field(default_factory=dict)


class ItemSink(Protocol):
    """Where validate_records hands each kept item (effdet.data.split_writer.SplitWriter writes it to shards)."""

    def add(self, item: ValidItem, image: bytes | None = None) -> str:
        """Take one item with its file's bytes; return the split it went to."""
        ...


@dataclass(frozen=True)
class Validated:
    """What validation kept (counted into `stats`, duplicates removed) and what it found."""

    kept: int
    stats: StatsAccumulator
    problems: list[Problem]
    dropped: list[str]
    class_pixels: ClassPixels


def _validate_all(
    records: Iterable[Record],
    known: frozenset[str] | None,
    workers: int,
    progress: Progress | None,
    total: int,
    max_pixels: int = MAX_IMAGE_PIXELS,
    masks: MaskClasses | None = None,
) -> Iterator[tuple[Record, ItemResult]]:
    """Validate records in `workers` threads, yielding (record, result) in order with at most WINDOW per worker in
    flight, so that neither records nor image bytes pile up.

    Threads, not processes: reading, hashing and JPEG decoding release the GIL, and a process pool's start-up (a
    spawned child re-imports the parent's main module, TensorFlow included) cost more than raccoon's whole
    conversion."""
    window = max(1, workers) * WINDOW
    source = iter(records)
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="validate") as pool:
        pending: deque[tuple[Record, Future[ItemResult]]] = deque()
        while True:
            for record in source:
                pending.append((record, pool.submit(validate_record, record, known, max_pixels, masks)))
                if len(pending) >= window:
                    break
            if not pending:
                return
            record, future = pending.popleft()
            result = future.result()
            done += 1
            if progress:
                progress(done, total)
            yield record, result


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def validate_records(
    records: Iterable[Record],
    label_map: dict[int, str],
    sink: ItemSink | None = None,
    read_problems: list[Problem] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    total: int = 0,
    max_pixels: int = MAX_IMAGE_PIXELS,
    image_index: IndexSpool | None = None,
    masks: MaskClasses | None = None,
) -> Validated:
    """Validate records in parallel, drop byte-identical copies of an image and hand each kept item with its bytes
    to `sink` (nothing is written without one), counting it into the statistics. With `image_index`, spool each
    image's entry (boxes, problems, the split it went to or dropped) to it. With `masks` (the classes of a dataset
    with masks) each image's class map is built and its pixels counted. Class names that look like one class
    (effdet.data.similar_names) are warned about last."""
    problems = list(read_problems or [])
    stats = StatsAccumulator()
    class_pixels = ClassPixels()
    seen = FirstSeen()  # sha1 digest -> the first file with those bytes
    dropped: list[str] = []
    kept = 0
    known = frozenset(label_map.values())
    box_counts: Counter[str] = Counter(dict.fromkeys(label_map.values(), 0))
    read_by_file: dict[str, list[Problem]] = defaultdict(list)
    for problem in read_problems or []:
        read_by_file[problem.file].append(problem)
    validating = _validate_all(records, known, workers or usable_cpus(), progress, total, max_pixels, masks)
    for record, result in validating:
        problems.extend(result.problems)
        item = result.item
        found = [*read_by_file.get(record.filename, []), *result.problems]
        split = TRAIN_SPLIT
        if item is None:
            dropped.append(result.problems[-1].file)
        elif (first := seen.first(bytes.fromhex(item.sha1), item.filename)) is not None:
            duplicate = warning(item.filename, "duplicate_image", f"same bytes as {first}; the copy was left out")
            problems.append(duplicate)
            found.append(duplicate)
            item = None
        else:
            split = sink.add(item, result.image) if sink is not None else split
            kept += 1
            stats.add(item)
            box_counts.update(item.box_labels)
            if result.class_pixels is not None:
                class_pixels.add(result.class_pixels)
        if image_index is not None:
            entry = index_entry(
                record,
                result.size,
                result.annotated,
                item.boxes if item else None,
                found,
                image_index.unique_id(record.filename),
                image_index.in_upload,
                split,
            )
            image_index.add(entry)
    if image_index is not None:
        image_index.add_unannotated(read_by_file)
    problems.extend(similar_class_problems(dict(box_counts)))
    return Validated(kept=kept, stats=stats, problems=problems, dropped=dropped, class_pixels=class_pixels)


def describe(
    stats: StatsAccumulator, model: ModelConfig
) -> tuple[DatasetStats, AnchorSuggestion | None, dict[str, AnchorSuggestion]]:
    """Statistics of the validated images, the anchor suggestion at the model's input size and the suggestion for
    each variant at its own."""
    boxes_wh, images_wh = stats.shapes()
    if not len(boxes_wh):
        return stats.stats(), None, {}
    by_model = {name: _suggest_for(boxes_wh, images_wh, get_config(name).model) for name in MODEL_NAMES}
    return stats.stats(), _suggest_for(boxes_wh, images_wh, model), by_model


def _suggest_for(boxes_wh: np.ndarray, images_wh: np.ndarray, model: ModelConfig) -> AnchorSuggestion:
    return suggest_anchors(
        boxes_wh,
        model.image_size,
        images_wh,
        min_level=model.min_level,
        max_level=model.max_level,
        num_scales=model.num_scales,
        anchor_scale=model.scale,
        default_ratios=model.ratios,
    )


@dataclass(frozen=True)
class _Read:
    """A dataset as read: its records spooled (labels as written), the label map, format, reading problems and the
    class colours of its VOC class PNGs (ReadResult.class_colours)."""

    records: RecordSpool
    label_map: LabelMap
    format: str
    problems: list[Problem]
    class_colours: Mapping[Path, ClassColours]

    @property
    def masks(self) -> MaskClasses | None:
        """The classes as the masks name them, for the class maps; None when no record has a mask."""
        if not self.records.with_masks:
            return None
        return MaskClasses(mask_label_ids(self.label_map), self.class_colours)

    def load(self, key: RecordKey, split: str | None = None) -> Record:
        """The record of `key`, box labels in the label map's spelling and, when given, assigned to `split`."""
        record = self.records.load(key)
        for box in record.boxes:
            box.label = self.label_map.canonical(box.label)
        if split is not None:
            record.split = Split(split)
        return record


def _write_dataset(
    read: _Read,
    staging: Path,
    model: ModelConfig,
    val_fraction: float,
    seed: int,
    num_shards: int | None,
    workers: int | None,
    progress: Progress | None,
    max_pixels: int,
    image_index: IndexSpool,
) -> ConversionReport:
    """Draw the split from the records' keys, validate the images in the readers' order straight into their split's
    shards, and write the val ground truth, the image index and dataset.json into staging."""
    plan = draw_split(read.records, val_fraction, seed, read.label_map.canonical)
    drawn = any(plan.drawn)
    planned = {TRAIN_SPLIT: plan.train, VAL_SPLIT: plan.val}
    records = (read.load(key, plan.split_of(key)) for key in read.records.record_keys())
    promote = drawn and planned[TRAIN_SPLIT] >= 2
    with SplitWriter(staging, planned, read.label_map.names, num_shards, promote) as writer:
        validated = validate_records(
            records,
            read.label_map.names,
            writer,
            read.problems,
            workers,
            progress,
            len(read.records),
            max_pixels,
            image_index,
            read.masks,
        )
    if not validated.kept:
        raise NoUsableImagesError(validated.problems)
    stats, anchors, anchors_by_model = describe(validated.stats, model)
    (staging / GROUND_TRUTH_FILE).write_text(json.dumps(writer.ground_truth()))
    image_index.write(staging / IMAGE_INDEX_FILE, {writer.promoted: VAL_SPLIT} if writer.promoted else None)
    report = ConversionReport(
        format=read.format,
        label_map=read.label_map.names,
        splits=writer.summaries(),
        max_instances_per_image=writer.max_boxes,
        problems=validated.problems,
        dropped_images=validated.dropped,
        stats=stats,
        anchors=anchors,
        anchors_by_model=anchors_by_model,
        segmentation=validated.class_pixels.summary(writer.images_with_masks, read.label_map.names),
    )
    (staging / REPORT_FILE).write_text(report.model_dump_json(indent=2))
    return report


class _Opened:
    """A dataset folder, unpacked first when the input is a zip, and a scratch folder (for the unpacked copy and
    the images taken out of TFRecords) under scratch_parent; the scratch folder is removed on exit."""

    def __init__(self, source: Path, scratch_parent: Path) -> None:
        self.source = source
        self.scratch_parent = scratch_parent
        self.scratch = Path()

    def __enter__(self) -> tuple[Path, Path]:
        is_zip = self.source.is_file() and self.source.suffix.lower() == ".zip"
        if not is_zip and not self.source.is_dir():
            raise FileNotFoundError(f"{self.source} is neither a dataset folder nor a .zip of one")
        self.scratch_parent.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(tempfile.mkdtemp(prefix=".unpack.", dir=self.scratch_parent))
        try:
            root = extract_zip(self.source, self.scratch / "unpacked") if is_zip else self.source
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        return root, self.scratch / "images"

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def _read(
    root: Path, scratch: Path, format: str, user_map: dict[int, str] | None, aliases: dict[str, str] | None
) -> _Read:
    """Read the dataset and number its classes (a format's own ids are kept unless the user gives a map)."""
    result = read_dataset(root, format, scratch, user_map)
    names = [name for name in label_names_of(result) if is_printable(name)]  # the others' boxes are reported
    label_map = build_label_map(names, user_map or result.label_ids or None, aliases)
    return _Read(result.records, label_map, result.format, result.problems, result.class_colours)


def convert_dataset(
    source: Path,
    output_dir: Path,
    format: str = "auto",
    val_fraction: float = 0.1,
    seed: int = 0,
    num_shards: int | None = None,
    label_map: dict[int, str] | None = None,
    aliases: dict[str, str] | None = None,
    model: ModelConfig | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> ConversionReport:
    """Convert a dataset folder or zip to TFRecords in output_dir (new or empty); see the module docstring.

    Images over max_pixels pixels are left out (the service passes EFFDET_MAX_IMAGE_PIXELS)."""
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"output folder {output_dir} is not empty; choose a new folder or empty it")
    with (
        _Opened(source, output_dir.parent) as (root, scratch),
        tempfile.TemporaryFile(dir=output_dir.parent) as index_file,
    ):
        read = _read(root, scratch, format, label_map, aliases)
        image_index = IndexSpool(index_file, in_upload=read.format != DatasetFormat.TFRECORD)
        staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
        try:
            report = _write_dataset(
                read,
                staging,
                model or ModelConfig(),
                val_fraction,
                seed,
                num_shards,
                workers,
                progress,
                max_pixels,
                image_index,
            )
            if output_dir.exists():
                output_dir.rmdir()
            staging.rename(output_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return report


def inspect_dataset(
    source: Path,
    format: str = "auto",
    model: ModelConfig | None = None,
    label_map: dict[int, str] | None = None,
    aliases: dict[str, str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Inspection:
    """Validate a dataset and describe it (statistics, problems, anchors) without writing anything."""
    with _Opened(source, Path(tempfile.gettempdir())) as (root, scratch):
        read = _read(root, scratch, format, label_map, aliases)
        records = (read.load(key) for key in read.records.record_keys())
        names = read.label_map.names
        validated = validate_records(
            records, names, None, read.problems, workers, progress, len(read.records), masks=read.masks
        )
        stats, anchors, anchors_by_model = describe(validated.stats, model or ModelConfig())
    return Inspection(
        format=read.format,
        label_map=names,
        images=validated.kept,
        problems=validated.problems,
        dropped_images=validated.dropped,
        stats=stats,
        anchors=anchors,
        anchors_by_model=anchors_by_model,
    )
