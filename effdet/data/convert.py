"""Dataset conversion: read any supported format, validate, split, write automl TFRecord shards, the val
ground truth as COCO JSON, and `dataset.json` (label map, counts, statistics, problems, anchor suggestion), under
the names effdet.data.layout gives them.

Validation (image decoding) runs in a thread pool sized to the cores; records stream through it and the items
that pass are spooled to a scratch file (effdet.data.item_spool), so memory holds no image bytes and a few hundred
bytes per image once validated (the readers' parsed annotations are the peak: about 2.4 KB an image).
Everything is written to a temporary folder beside the output and renamed at the end: a failure leaves nothing
half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from pydantic import BaseModel, Field

from effdet.config import MODEL_NAMES, ModelConfig, get_config
from effdet.data.anchors_kmeans import AnchorSuggestion, suggest_anchors
from effdet.data.image_index import IndexSpool, index_entry
from effdet.data.ingest import DatasetFormat, extract_zip, read_dataset
from effdet.data.item_spool import ItemSpool, SpooledItem
from effdet.data.labels import build_label_map, is_printable, label_names_of
from effdet.data.layout import GROUND_TRUTH_FILE, IMAGE_INDEX_FILE, REPORT_FILE, TRAIN_SPLIT, VAL_SPLIT, shard_name
from effdet.data.records import Problem, Record, Severity, warning
from effdet.data.similar_names import similar_class_problems
from effdet.data.split import split_items
from effdet.data.stats import DatasetStats, box_shapes, compute_stats
from effdet.data.validate import MAX_IMAGE_PIXELS, ItemResult, ValidItem, validate_record

Progress = Callable[[int, int], None]
"""progress(done, total): called as items are validated and then written."""

IMAGES_PER_SHARD = 1000
WINDOW = 16
"""Validations queued per worker thread: enough to keep each busy, few enough that results never pile up."""


class NoUsableImagesError(ValueError):
    """Every image was left out; carries the problems that say why (a failed dataset still lists them)."""

    def __init__(self, problems: list[Problem]) -> None:
        counts = Counter(problem.code for problem in problems if problem.severity == Severity.ERROR)
        found = ", ".join(f"{count} {code}" for code, count in counts.most_common(5)) or "no image found"
        super().__init__(f"no usable image in the dataset ({found}); fix the files its problems name")
        self.problems = problems


class SplitSummary(BaseModel):
    """What one split holds."""

    images: int
    boxes: int
    shards: list[str]


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


@dataclass(frozen=True)
class Validated:
    """The images that passed validation (duplicates removed, spooled to a scratch file) and what was found."""

    items: ItemSpool
    problems: list[Problem]
    dropped: list[str]


def _validate_all(
    records: list[Record],
    known: frozenset[str] | None,
    workers: int,
    progress: Progress | None,
    total: int,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Iterator[tuple[Record, ItemResult]]:
    """Validate records in `workers` threads, yielding (record, result) in order with at most WINDOW per worker in
    flight; `records` is emptied as it goes, so that the readers' records are not all held to the end.

    Threads, not processes: reading, hashing and JPEG decoding release the GIL, and a process pool's start-up (a
    spawned child re-imports the parent's main module, TensorFlow included) cost more than raccoon's whole
    conversion."""
    records.reverse()
    count = len(records)
    window = max(1, workers) * WINDOW
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="validate") as pool:
        pending: deque[tuple[Record, Future[ItemResult]]] = deque()
        for done in range(1, count + 1):
            while records and len(pending) < window:
                record = records.pop()
                pending.append((record, pool.submit(validate_record, record, known, max_pixels)))
            record, future = pending.popleft()
            result = future.result()
            if progress:
                progress(done, total)
            yield record, result


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _coco_ground_truth(items: list[tuple[int, ValidItem]], label_map: dict[int, str]) -> dict[str, object]:
    """COCO-format ground truth of a split, ids matching the records' image/source_id and class labels."""
    ids = {name: i for i, name in label_map.items()}
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for source_id, item in items:
        images.append({"id": source_id, "file_name": item.filename, "width": item.width, "height": item.height})
        for box in item.boxes:
            w, h = box.xmax - box.xmin, box.ymax - box.ymin
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": source_id,
                    "category_id": ids[box.label],
                    "bbox": [box.xmin, box.ymin, w, h],
                    "area": w * h,
                    "iscrowd": int(box.is_crowd),
                }
            )
    categories = [{"id": i, "name": name} for i, name in sorted(label_map.items())]
    return {"images": images, "annotations": annotations, "categories": categories}


def validate_records(
    records: list[Record],
    label_map: dict[int, str],
    spool: IO[bytes],
    read_problems: list[Problem] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    total: int | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    image_index: IndexSpool | None = None,
) -> Validated:
    """Validate every record in parallel and drop byte-identical copies of an image; kept items go to `spool` (a
    scratch file the caller closes) and `records` is emptied as it is validated, so memory holds a few bytes per
    image. With `image_index`, spool each image's entry (boxes, problems, kept or dropped) to it. Class names that
    look like one class (effdet.data.similar_names) are warned about last."""
    problems = list(read_problems or [])
    items = ItemSpool(spool)
    seen: dict[str, str] = {}
    dropped: list[str] = []
    known = frozenset(label_map.values())
    box_counts: Counter[str] = Counter(dict.fromkeys(label_map.values(), 0))
    read_by_file: dict[str, list[Problem]] = defaultdict(list)
    for problem in read_problems or []:
        read_by_file[problem.file].append(problem)
    results = _validate_all(records, known, workers or usable_cpus(), progress, total or len(records), max_pixels)
    for record, result in results:
        problems.extend(result.problems)
        item = result.item
        found = [*read_by_file.get(record.filename, []), *result.problems]
        if item is None:
            dropped.append(result.problems[-1].file)
        elif item.sha1 in seen:
            duplicate = warning(
                item.filename, "duplicate_image", f"same bytes as {seen[item.sha1]}; the copy was left out"
            )
            problems.append(duplicate)
            found.append(duplicate)
            item = None
        else:
            seen[item.sha1] = item.filename
            items.add(item)
            box_counts.update(item.box_labels)
        if image_index is not None:
            entry = index_entry(
                record,
                result.size,
                result.annotated,
                item.boxes if item else None,
                found,
                image_index.unique_id(record.filename),
                image_index.in_upload,
            )
            image_index.add(entry)
    if image_index is not None:
        image_index.add_unannotated(read_by_file)
    problems.extend(similar_class_problems(dict(box_counts)))
    return Validated(items=items, problems=problems, dropped=dropped)


def describe(
    items: Iterable[ValidItem], model: ModelConfig
) -> tuple[DatasetStats, AnchorSuggestion | None, dict[str, AnchorSuggestion]]:
    """Statistics of the validated images, the anchor suggestion at the model's input size and the suggestion for
    each variant at its own."""
    boxes_wh, images_wh = box_shapes(items)
    if not len(boxes_wh):
        return compute_stats(items), None, {}
    by_model = {name: _suggest_for(boxes_wh, images_wh, get_config(name).model) for name in MODEL_NAMES}
    return compute_stats(items), _suggest_for(boxes_wh, images_wh, model), by_model


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


def write_tfrecords(
    validated: Validated,
    output_dir: Path,
    label_map: dict[int, str],
    source_format: str,
    model: ModelConfig,
    val_fraction: float = 0.1,
    seed: int = 0,
    num_shards: int | None = None,
    progress: Progress | None = None,
    done: int = 0,
    total: int = 0,
    image_index: IndexSpool | None = None,
) -> ConversionReport:
    """Split validated items and write shards, val ground truth, dataset.json and (with the `image_index` spooled by
    validate_records) the image index atomically to output_dir."""
    from effdet.data.shards import write_shard

    items = validated.items
    if not len(items):
        raise NoUsableImagesError(validated.problems)
    train, val = split_items(items.keys, val_fraction, seed)
    stats, anchors, anchors_by_model = describe(items, model)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    label_ids = {name: i for i, name in label_map.items()}
    try:
        splits: dict[str, SplitSummary] = {}
        numbered: dict[str, list[tuple[int, SpooledItem]]] = {}
        next_id = 1
        for split, members in ((TRAIN_SPLIT, train), (VAL_SPLIT, val)):
            numbered[split] = [(next_id + i, item) for i, item in enumerate(members)]
            next_id += len(members)
            count = max(1, min(num_shards or -(-len(members) // IMAGES_PER_SHARD), len(members) or 1))
            names = [shard_name(split, i, count) for i in range(count)]
            for index, name in enumerate(names):
                shard = numbered[split][index::count]
                write_shard(staging / name, ((source_id, items.load(key)) for source_id, key in shard), label_ids)
                done += len(shard)
                if progress:
                    progress(done, total)
            boxes = sum(len(key.box_labels) for key in members)
            splits[split] = SplitSummary(images=len(members), boxes=boxes, shards=names)
        val_items = [(source_id, items.load(key)) for source_id, key in numbered[VAL_SPLIT]]
        (staging / GROUND_TRUTH_FILE).write_text(json.dumps(_coco_ground_truth(val_items, label_map)))
        del val_items
        if image_index is not None:
            split_of = {item.filename: split for split, members in numbered.items() for _, item in members}
            image_index.write(staging / IMAGE_INDEX_FILE, split_of)
        report = ConversionReport(
            format=source_format,
            label_map=label_map,
            splits=splits,
            max_instances_per_image=max((len(key.box_labels) for key in items.keys), default=0),
            problems=validated.problems,
            dropped_images=validated.dropped,
            stats=stats,
            anchors=anchors,
            anchors_by_model=anchors_by_model,
        )
        (staging / REPORT_FILE).write_text(report.model_dump_json(indent=2))
        if output_dir.exists():
            output_dir.rmdir()
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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
) -> tuple[list[Record], dict[int, str], str, list[Problem]]:
    """Read the dataset and number its classes (a format's own ids are kept unless the user gives a map);
    box labels are rewritten to the map's spelling."""
    result = read_dataset(root, format, scratch, user_map)
    names = [name for name in label_names_of(result) if is_printable(name)]  # the others' boxes are reported
    label_map = build_label_map(names, user_map or result.label_ids or None, aliases)
    for record in result.records:  # in place: a copy of every record would double the peak of a large dataset
        for box in record.boxes:
            box.label = label_map.canonical(box.label)
    return result.records, label_map.names, result.format, result.problems


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
        tempfile.TemporaryFile(dir=output_dir.parent) as items_file,
    ):
        records, names, found_format, problems = _read(root, scratch, format, label_map, aliases)
        count = len(records)
        image_index = IndexSpool(index_file, in_upload=found_format != DatasetFormat.TFRECORD)
        validated = validate_records(
            records, names, items_file, problems, workers, progress, 2 * count, max_pixels, image_index
        )
        return write_tfrecords(
            validated,
            output_dir,
            names,
            found_format,
            model or ModelConfig(),
            val_fraction,
            seed,
            num_shards,
            progress,
            done=count,
            total=count + len(validated.items),
            image_index=image_index,
        )


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
    with _Opened(source, Path(tempfile.gettempdir())) as (root, scratch), tempfile.TemporaryFile() as items_file:
        records, names, found_format, problems = _read(root, scratch, format, label_map, aliases)
        validated = validate_records(records, names, items_file, problems, workers, progress)
        stats, anchors, anchors_by_model = describe(validated.items, model or ModelConfig())
    return Inspection(
        format=found_format,
        label_map=names,
        images=len(validated.items),
        problems=validated.problems,
        dropped_images=validated.dropped,
        stats=stats,
        anchors=anchors,
        anchors_by_model=anchors_by_model,
    )
