"""Datasets whose boxes are small at the smaller variants' input sizes, for the input-size warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.tables import Dataset, DatasetStatus
from effdet.data.convert import ConversionReport, SplitSummary
from effdet.data.records import Box, Record
from effdet.data.stats import compute_stats

PLATE_WARNING_AT_320 = (
    "100% of the boxes (10 of 10) are under 16 px on their shorter side at image_size 320, too small to detect "
    "well; image_size 768 brings that to 0% (hparams image_size: 768; a larger input costs memory and time), "
    "or train on tiles (hparams tiles: 640)"
)


def plate_photos_report() -> ConversionReport:
    """Ten 3720 x 2472 photos with one 300 x 80 plate each: 6.9 px tall at Lite0's 320, 16.5 px at 768."""
    records = [
        Record(
            image_path=Path(f"/data/p{i}.jpg"),
            filename=f"p{i}.jpg",
            annotation_file=f"p{i}.xml",
            width=3720,
            height=2472,
            boxes=[Box(label="plate", xmin=100, ymin=100, xmax=400, ymax=180)],
        )
        for i in range(10)
    ]
    stats = compute_stats(records)
    return ConversionReport(
        format="voc",
        label_map={1: "plate"},
        splits={"train": SplitSummary(images=len(records), boxes=stats.num_boxes, shards=[])},
        max_instances_per_image=1,
        problems=[],
        dropped_images=[],
        stats=stats,
        anchors=None,
    )


def add_ready_dataset(service: Any, report: ConversionReport) -> str:
    """A ready dataset row holding `report` (the service fixture's `add`); returns its id."""
    row = Dataset(
        name="photos",
        status=DatasetStatus.ready,
        format=report.format,
        val_fraction=0.1,
        upload_bytes=1000,
        num_images=report.stats.num_images,
        num_boxes=report.stats.num_boxes,
        label_map={str(k): v for k, v in report.label_map.items()},
        report=report.model_dump(mode="json"),
    )
    service.add(row)
    return str(row.id)
