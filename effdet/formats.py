"""The formats a model is exported in, what each scored on the val split, and which one serves by default.

Every export writes a manifest (`formats.json`, effdet.layout.FORMATS_FILE) beside the SavedModel: the score
threshold and pad colour the TFLite files need to be served (effdet.tflite_runtime), and per format its file,
size, COCO ap/ap50/ap75 on the val split and inference milliseconds per image, measured the same way for each
(effdet.format_export). No TensorFlow here: the API reads the manifest to choose and load a runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field

from effdet.config import Config
from effdet.layout import FORMATS_FILE, TFLITE_FILES

ExportFormat = Literal["saved_model", "tflite", "tflite_float16", "tflite_int8"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
DEFAULT_EXPORT_FORMATS: tuple[ExportFormat, ...] = ("saved_model", "tflite")
SAVED_MODEL: ExportFormat = "saved_model"
LEGACY_THRESHOLD_FLOOR: tuple[ExportFormat, ...] = ("tflite", "tflite_float16")
"""Formats whose file held its own NMS in exports made before every TFLite format held the network alone: they
drop detections under the export's min_score, so they cannot serve a lower threshold."""
AP_TOLERANCE = 0.005
"""How much val AP (0.5 AP points) a faster format may lose against the SavedModel and still serve by default."""


class FormatScore(BaseModel):
    """One exported format: its file and how it did on the val split (None where there is no val split)."""

    file: str = Field(description="path relative to the model folder")
    size_bytes: int
    ap: float | None = None
    ap50: float | None = None
    ap75: float | None = None
    ms_per_image: float | None = Field(None, description="mean inference time per val image on the exporting host")


class FormatsManifest(BaseModel):
    """What a model folder holds beyond its SavedModel, and how to serve it."""

    min_score: float = Field(description="the score threshold the exports drop detections under")
    mean_rgb: list[float] = Field(description="the normalisation mean: the pad colour of the TFLite input")
    formats: dict[ExportFormat, FormatScore]
    default_runtime: ExportFormat
    threshold_floor: list[ExportFormat] = Field(
        default_factory=lambda: list(LEGACY_THRESHOLD_FLOOR),
        description="formats whose file suppresses inside and drops detections under min_score (older exports); "
        "the others serve any threshold",
    )

    def floor(self, format: ExportFormat) -> float:
        """The lowest score threshold `format` can serve: min_score for a file with its NMS inside, else 0."""
        return self.min_score if format in self.threshold_floor else 0.0

    def path(self, folder: Path, format: ExportFormat) -> Path:
        """The file or folder of `format` inside the model folder."""
        return folder / self.formats[format].file


def format_file(format: ExportFormat) -> str:
    """Where a format lives in a model folder ('saved_model' is the folder of that name)."""
    return TFLITE_FILES.get(format, SAVED_MODEL)


def saved_model_only(config: Config) -> str | None:
    """Why only the SavedModel can serve the model (a TFLite file holds neither tiling nor a class map), or None."""
    if config.input.tiles is not None:
        return "a tiled model (hparams tiles) is served by its SavedModel only, which tiles each whole image"
    if "segmentation" in config.model.heads:
        return "a segmentation model is served by its SavedModel only: the TFLite formats carry detections alone"
    return None


def default_formats(config: Config) -> tuple[ExportFormat, ...]:
    """What a job exports when it names no formats: saved_model and float32 TFLite where TFLite can serve it."""
    return (SAVED_MODEL,) if saved_model_only(config) else DEFAULT_EXPORT_FORMATS


def choose_default(formats: dict[ExportFormat, FormatScore]) -> ExportFormat:
    """The fastest format whose val AP is within AP_TOLERANCE of the SavedModel's, else the SavedModel (also
    when there is nothing to compare: no val split or no timing)."""
    reference = formats.get(SAVED_MODEL)
    if reference is None or reference.ap is None:
        return SAVED_MODEL
    good = [
        (score.ms_per_image, name)
        for name, score in formats.items()
        if score.ap is not None and score.ms_per_image is not None and score.ap >= reference.ap - AP_TOLERANCE
    ]
    return min(good)[1] if good else SAVED_MODEL


def read_manifest(folder: Path) -> FormatsManifest | None:
    """The folder's manifest, or None for a model exported before there were manifests (SavedModel only)."""
    path = folder / FORMATS_FILE
    return FormatsManifest.model_validate_json(path.read_text()) if path.is_file() else None


def served_min_score(manifest: FormatsManifest | None) -> float:
    """The score threshold a model answers with unless asked otherwise: its export's, or the default of exports
    made before there were manifests."""
    from effdet.predict import DEFAULT_MIN_SCORE_THRESH

    return manifest.min_score if manifest is not None else DEFAULT_MIN_SCORE_THRESH


def write_manifest(folder: Path, manifest: FormatsManifest) -> Path:
    """Write the manifest atomically (a reader sees the old one or the new one)."""
    path = folder / FORMATS_FILE
    scratch = path.with_name(f".{FORMATS_FILE}.tmp")
    scratch.write_text(manifest.model_dump_json(indent=2))
    scratch.replace(path)
    return path
