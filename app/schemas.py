"""Request and response bodies of the HTTP API: one family per resource (`JobCreate` in, `JobPublic` out,
`JobsPublic` for lists), with examples so the OpenAPI page shows real payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from core.layout import saved_model_dir, tflite_file
from core.store import NotInStoreError, TreeListing, model_listing
from core.tables import (
    ApiKey,
    Dataset,
    DeliveryStatus,
    Evaluation,
    EvaluationStatus,
    Job,
    JobEvent,
    ModelVersion,
    Scope,
    Webhook,
    WebhookDelivery,
)
from effdet.data.fixes import BoxFix
from effdet.data.labels import check_class_aliases, check_label_map
from effdet.formats import ExportFormat, FormatScore, read_manifest
from effdet.label_errors import LabelIssue
from effdet.layout import FORMATS_FILE
from effdet.metrics import EvaluationReport
from effdet.predict import MaskRle

ModelFormat = ExportFormat
UploadFormat = Literal["auto", "coco", "voc", "yolo", "csv", "ccpd", "tfrecord"]

_TIME_EXAMPLE = "2026-01-01T12:00:00Z"


def _as_utc(value: datetime) -> datetime:
    """SQLite returns timestamps without their zone; they are UTC (`core.tables.utcnow`), so say it (RFC 3339)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
"""A UTC time as the API shows it: always with its offset, on every database."""


class DatasetPublic(BaseModel):
    """An uploaded dataset: its state, and once converted its classes, counts, statistics and problems."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5b1f0c2e9d8a4f7e8c6b5a4d3e2f1a0b",
                    "name": "raccoons",
                    "status": "ready",
                    "format": "voc",
                    "val_fraction": 0.1,
                    "upload_bytes": 12582912,
                    "num_images": 200,
                    "num_boxes": 217,
                    "label_map": {"1": "raccoon"},
                    "splits": {"train": {"images": 180, "boxes": 195}, "val": {"images": 20, "boxes": 22}},
                    "stats": {"images": 200, "boxes": 217},
                    "problems": [
                        {
                            "file": "raccoon-12.xml",
                            "object_index": 0,
                            "severity": "warning",
                            "code": "box_clipped",
                            "message": "box extends past the image; clipped",
                        }
                    ],
                    "anchors": {"aspect_ratios": [0.8, 1.2, 1.6], "anchor_scale": 4.0},
                    "progress": {"done": 200, "total": 200},
                    "error": None,
                    "created_at": _TIME_EXAMPLE,
                    "updated_at": _TIME_EXAMPLE,
                }
            ]
        }
    )

    id: str
    name: str
    status: str = Field(description="validating | ready | failed")
    format: str
    val_fraction: float
    upload_bytes: int
    num_images: int | None = None
    num_boxes: int | None = None
    label_map: dict[str, str] | None = Field(None, description="class id (1-based) -> name")
    class_aliases: dict[str, str] | None = Field(
        None, description="alias -> class name merged at conversion (given at upload or by the last re-label)"
    )
    requested_label_map: dict[str, str] | None = Field(
        None, description="class id -> name the user fixed (given at upload or by the last re-label)"
    )
    splits: dict[str, Any] | None = Field(None, description="images, boxes and shards per split")
    stats: dict[str, Any] | None = Field(None, description="class counts, image sizes, box sizes, aspect ratios")
    problems: list[dict[str, Any]] = Field(default_factory=list, description="per file / per box problems found")
    anchors: dict[str, Any] | None = Field(None, description="k-means suggestion of aspect_ratios and anchor_scale")
    anchors_by_model: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="the same suggestion for each variant at its own input size and levels"
    )
    segmentation: dict[str, Any] | None = Field(
        None,
        description="masks found (None without any): images with a class map per split, each class's share of "
        "the pixels (background first) and the ignored share; heads: [segmentation] trains on them",
    )
    progress: dict[str, Any] | None = None
    error: str | None = None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_row(cls, row: Dataset) -> DatasetPublic:
        """The public view of a dataset row (report fields lifted to the top)."""
        report = row.report or {}
        return cls(
            id=row.id,
            name=row.name,
            status=row.status,
            format=row.format,
            val_fraction=row.val_fraction,
            upload_bytes=row.upload_bytes,
            num_images=row.num_images,
            num_boxes=row.num_boxes,
            label_map={str(k): str(v) for k, v in (row.label_map or {}).items()} or None,
            class_aliases=row.class_aliases or None,
            requested_label_map=row.requested_label_map or None,
            splits=report.get("splits"),
            stats=report.get("stats"),
            problems=report.get("problems") or [],
            anchors=report.get("anchors"),
            anchors_by_model=report.get("anchors_by_model") or {},
            segmentation=report.get("segmentation"),
            progress=row.progress,
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def _class_aliases(value: object) -> dict[str, str] | None:
    return check_class_aliases(value) if value not in (None, {}) else None


def _label_map(value: object) -> dict[str, str] | None:
    return {str(k): v for k, v in check_label_map(value).items()} if value not in (None, {}) else None


ClassAliases = Annotated[dict[str, str] | None, BeforeValidator(_class_aliases)]
"""`{"alias": "name"}`: boxes labelled alias count as name (merges spellings of one class); checked."""
RequestedLabelMap = Annotated[dict[str, str] | None, BeforeValidator(_label_map)]
"""`{"id": "name"}`: fixes the class ids (from 1) and their order; checked."""


class DatasetRelabel(BaseModel):
    """New class aliases and label map for a dataset; it is converted again from its upload. A field left out
    keeps its value; null or {} clears it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"class_aliases": {"lp": "licence plate"}}]},
    )

    class_aliases: ClassAliases = Field(None, description='alias -> class name, e.g. {"lp": "licence plate"}')
    label_map: RequestedLabelMap = Field(None, description='class id (from 1) -> name, e.g. {"1": "licence plate"}')


class DatasetsPublic(BaseModel):
    """A page of datasets."""

    items: list[DatasetPublic]
    count: int


ImageSplit = Literal["train", "val", "dropped"]


class ImageBoxPublic(BaseModel):
    """One box of a dataset image: kept as stored, or dropped with the problem that dropped it."""

    label: str
    bbox: list[float] | None = Field(description="[xmin, ymin, xmax, ymax] in image pixels; None if not numbers")
    dropped: bool = Field(description="left out of the training records (its own problem, or its image's)")
    problem: str | None = Field(None, description="code of the problem found with this box, if any")


class ImageProblemPublic(BaseModel):
    """One problem found with a dataset image (object_index names the box, when it is about one)."""

    object_index: int | None = None
    severity: Literal["error", "warning"]
    code: str
    message: str


class ImagePublic(BaseModel):
    """One image of a converted dataset, kept or dropped, with its boxes and problems."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "c670a3513d806222",
                    "path": "images/raccoon-1.jpg",
                    "width": 650,
                    "height": 417,
                    "split": "train",
                    "boxes": [
                        {"label": "raccoon", "bbox": [81.0, 88.0, 522.0, 408.0], "dropped": False, "problem": None},
                        {
                            "label": "raccoon",
                            "bbox": [5000.0, 10.0, 5100.0, 90.0],
                            "dropped": True,
                            "problem": "box_outside_image",
                        },
                    ],
                    "problems": [
                        {
                            "object_index": 1,
                            "severity": "error",
                            "code": "box_outside_image",
                            "message": "box (5000.0, 10.0, 5100.0, 90.0) lies far outside the 650x417 image; ...",
                        }
                    ],
                    "has_file": True,
                }
            ]
        }
    )

    id: str
    path: str = Field(description="path under the dataset's top folder, as problems name it")
    width: int | None = Field(description="pixels of the image turned upright; None when it could not be opened")
    height: int | None
    split: ImageSplit
    boxes: list[ImageBoxPublic]
    problems: list[ImageProblemPublic]
    has_file: bool = Field(description="False for images taken out of uploaded TFRecords (no thumbnail)")


class ImagesPublic(BaseModel):
    """A page of a dataset's images: those with problems first, then by path."""

    items: list[ImagePublic]
    count: int


CALLBACK_URLS_DOC = (
    "http(s) URLs that get a signed POST when this ends (at most 5; public addresses only, unless the server allows "
    "a network); each becomes a webhook of this resource, listed with its secret by GET /v1/webhooks?resource_id=ID"
)


class JobCreate(BaseModel):
    """A fine-tuning job: dataset, model variant, automl hyperparameter overrides and run settings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "dataset_id": "5b1f0c2e9d8a4f7e8c6b5a4d3e2f1a0b",
                    "model": "efficientdet-d0",
                    "hparams": {"image_size": 512, "learning_rate": 0.008, "autoaugment_policy": "v0"},
                    "num_steps": 2000,
                    "batch_size": 8,
                    "pretrained": "efficientdet-d0",
                    "var_freeze_expr": "(efficientnet|fpn_cells|resample_p6)",
                },
                {
                    "dataset_id": "5b1f0c2e9d8a4f7e8c6b5a4d3e2f1a0b",
                    "model": "efficientdet-d0",
                    "hparams_yaml": "image_size: 640x384\nnms_configs:\n  method: hard\n",
                    "num_epochs": 20,
                    "max_train_seconds": 3600,
                },
            ]
        },
    )

    dataset_id: str = Field(description="a dataset whose status is ready")
    model: str = Field("efficientdet-d0", description="efficientdet-d0 ... efficientdet-d7x")
    hparams: dict[str, Any] | None = Field(None, description="google/automl hyperparameter overrides")
    hparams_yaml: str | None = Field(None, description="the same overrides as an automl YAML document")
    num_steps: int | None = Field(None, ge=1, description="training steps (or give num_epochs)")
    num_epochs: float | None = Field(None, gt=0, description="epochs over the train split (or give num_steps)")
    max_train_seconds: float | None = Field(None, gt=0, description="wall-clock budget; training stops there")
    batch_size: int = Field(8, ge=1, le=4096)
    pretrained: str | None = Field(None, description="a name listed by GET /v1/checkpoints")
    var_freeze_expr: str | None = Field(None, description="regex (re.match) of variable paths not to train")
    min_score_thresh: float | None = Field(None, ge=0, le=1, description="default score threshold of the export")
    callback_urls: list[str] = Field(default_factory=list, max_length=5, description=CALLBACK_URLS_DOC)
    export_formats: list[ModelFormat] | None = Field(
        None,
        description="what the job exports, each scored on the val split: saved_model (always), tflite (float32), "
        "tflite_float16, tflite_int8 (full-integer, calibrated on the job's training images); default saved_model "
        "and tflite (saved_model only for a tiled model)",
    )
    eval_every: int | None = Field(
        None,
        ge=1,
        description="steps between val evaluations; the best weights by val AP are kept and the model is exported "
        "from them (needs a dataset with a val split)",
    )
    checkpoint_every: int | None = Field(None, ge=1, description="steps between checkpoints (default 500)")
    seed: int | None = Field(None, ge=0, description="seed of the data order and augmentation (default 0)")


class JobProgress(BaseModel):
    """The latest progress report of a running job."""

    model_config = ConfigDict(extra="allow")

    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    learning_rate: float | None = None
    images_per_sec: float | None = None
    eta_seconds: float | None = None


class JobPublic(BaseModel):
    """A job: state, progress, final metrics or error, and the model it produced."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0c9a3b7f5e2d4c1b8a6f7e9d0c1b2a3f",
                    "dataset_id": "5b1f0c2e9d8a4f7e8c6b5a4d3e2f1a0b",
                    "model": "efficientdet-d0",
                    "status": "training",
                    "progress": {
                        "step": 420,
                        "total_steps": 2000,
                        "loss": 0.84,
                        "learning_rate": 0.0079,
                        "images_per_sec": 4.6,
                        "eta_seconds": 2740,
                    },
                    "metrics": None,
                    "error": None,
                    "cancel_requested": False,
                    "finish_requested": False,
                    "attempts": 1,
                    "model_id": None,
                    "config": {"name": "efficientdet-d0", "image_size": 512, "num_classes": 1},
                    "options": {"batch_size": 8, "num_steps": 2000},
                    "warnings": [],
                    "created_at": _TIME_EXAMPLE,
                    "started_at": _TIME_EXAMPLE,
                    "finished_at": None,
                }
            ]
        }
    )

    id: str
    dataset_id: str
    model: str
    status: str = Field(description="queued | converting | training | evaluating | exporting | succeeded | ...")
    progress: JobProgress | None = None
    metrics: dict[str, Any] | None = Field(
        None, description="COCO metrics: ap, ap50, ap75, ..., per_class; segmentation (miou, per_class_iou, ...) too"
    )
    error: str | None = None
    cancel_requested: bool
    finish_requested: bool = Field(False, description="asked to finish training now and keep the model")
    attempts: int
    model_id: str | None = None
    config: dict[str, Any] = Field(description="the resolved automl hyperparameters the job trains with")
    options: dict[str, Any] = Field(description="run settings (effdet TrainOptions) and export settings")
    warnings: list[str] = Field(
        default_factory=list, description="advice found when the job was resolved, e.g. objects too small for its size"
    )
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None

    @classmethod
    def from_row(cls, row: Job) -> JobPublic:
        """The public view of a job row."""
        return cls(
            id=row.id,
            dataset_id=row.dataset_id,
            model=row.model_name,
            status=row.status,
            progress=JobProgress.model_validate(row.progress) if row.progress else None,
            metrics=row.metrics,
            error=row.error,
            cancel_requested=bool(row.cancel_requested),
            finish_requested=bool(row.finish_requested),
            attempts=row.attempts or 0,
            model_id=row.model_id,
            config=row.config,
            options=row.options,
            warnings=list(row.warnings or []),
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


class JobsPublic(BaseModel):
    """A page of jobs."""

    items: list[JobPublic]
    count: int


class JobEventPublic(BaseModel):
    """One entry of a job's log: a state change, a progress report, a log line or the final metrics."""

    id: int
    kind: str = Field(description="state | progress | log | metrics")
    data: dict[str, Any]
    created_at: Timestamp

    @classmethod
    def from_row(cls, row: JobEvent) -> JobEventPublic:
        """The public view of an event row."""
        return cls(id=row.id, kind=row.kind, data=row.data, created_at=row.created_at)


class ModelPublic(BaseModel):
    """An exported model version with its evaluation metrics and the formats it can be downloaded in."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a",
                    "job_id": "0c9a3b7f5e2d4c1b8a6f7e9d0c1b2a3f",
                    "name": "efficientdet-d0",
                    "version": 3,
                    "metrics": {"ap": 0.512, "ap50": 0.874, "ap75": 0.55},
                    "label_map": {"1": "raccoon"},
                    "formats": ["saved_model", "tflite"],
                    "created_at": _TIME_EXAMPLE,
                }
            ]
        }
    )

    id: str
    job_id: str
    name: str = Field(description="the model variant")
    version: int = Field(description="1, 2, ... per owner and variant")
    metrics: dict[str, Any] | None = None
    label_map: dict[str, str] | None = None
    formats: list[ModelFormat] = Field(description="what GET /v1/models/{id}/download?format= can serve")
    format_scores: dict[ModelFormat, FormatScore] = Field(
        default_factory=dict,
        description="per exported format: file size and, with a val split, COCO ap/ap50/ap75 and milliseconds per "
        "image, each format run through its own runtime at the export's score threshold",
    )
    default_runtime: ModelFormat = Field(
        "saved_model",
        description="what predict runs when no runtime is asked for: the fastest format within 0.5 AP points of "
        "the SavedModel",
    )
    created_at: Timestamp

    @classmethod
    def from_row(cls, row: ModelVersion) -> ModelPublic:
        """The public view of a model version, with the formats present on disk (its manifest's, when it has one)."""
        try:
            listing = model_listing(row, (FORMATS_FILE,))
        except NotInStoreError:
            listing = TreeListing(folder=Path(row.path))  # not (or no longer) in the store: it offers no format
        folder = listing.folder
        manifest = read_manifest(folder)
        formats: list[ModelFormat] = []
        if manifest is not None:
            formats = [name for name in manifest.formats if listing.has(manifest.path(folder, name))]
        else:
            if listing.has(saved_model_dir(folder)):
                formats.append("saved_model")
            if listing.has(tflite_file(folder)):
                formats.append("tflite")
        return cls(
            id=row.id,
            job_id=row.job_id,
            name=row.name,
            version=row.version,
            metrics=row.metrics,
            label_map={str(k): str(v) for k, v in (row.label_map or {}).items()} or None,
            formats=formats,
            format_scores={name: manifest.formats[name] for name in formats} if manifest else {},
            default_runtime=manifest.default_runtime if manifest else "saved_model",
            created_at=row.created_at,
        )


class ModelsPublic(BaseModel):
    """A page of model versions."""

    items: list[ModelPublic]
    count: int


class DetectionPublic(BaseModel):
    """One detected object, in pixels of the original image."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"box": [34.5, 20.0, 310.2, 260.7], "label": "raccoon", "class_id": 1, "score": 0.91}]
        }
    )

    box: tuple[float, float, float, float] = Field(description="[xmin, ymin, xmax, ymax] in pixels")
    label: str
    class_id: int
    score: float


class SegmentedPrediction(BaseModel):
    """What a segmentation model found in one image: its detections (none without a detection head) and the
    pixels of each class its class map holds, as COCO compressed RLE at the image's size."""

    detections: list[DetectionPublic]
    size: tuple[int, int] = Field(description="(height, width) of the image and of every mask")
    segmentation: list[MaskRle] = Field(
        description="one entry per class present but background: class_id, label, counts (COCO compressed RLE, "
        "pycocotools.mask.decode reads it), size, area in pixels"
    )


class CheckpointPublic(BaseModel):
    """A pretrained checkpoint in the server's checkpoint folder, usable as a job's `pretrained`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "efficientdet-d0",
                    "format": "tf1-checkpoint",
                    "layout": "checkpoint-dir",
                    "size_bytes": 31457280,
                    "usable": True,
                    "variants": ["efficientdet-d0"],
                }
            ]
        }
    )

    name: str
    format: str = Field(
        description="tf1-checkpoint (name->tensor, automl's releases and our exported weights) | "
        "automl-tf2-checkpoint (automl's TF2 save_weights or training ckpt-N) | effdet-training-checkpoint | "
        "saved_model | archive | unreadable | unknown"
    )
    layout: str | None = Field(None, description="prefix | checkpoint-dir | run-dir, for checkpoints")
    size_bytes: int
    usable: bool = Field(description="whether a job can name it as `pretrained` (it fits a variant)")
    variants: list[str] = Field(
        default_factory=list, description="the variants it fits (a job's model must be one of them)"
    )
    note: str | None = None


class CheckpointsPublic(BaseModel):
    """The checkpoints in DATA_DIR/checkpoints."""

    items: list[CheckpointPublic]
    count: int


class Health(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Readiness: whether the database, the broker and the artefact store answer ("ok" or what failed)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "unavailable", "database": "ok", "broker": "Connection refused"}]}
    )

    status: Literal["ready", "unavailable"]
    database: str
    broker: str
    store: str = Field("ok", description='"ok", "data dir" (no bucket configured) or what failed')


class ErrorDetail(BaseModel):
    """What every 4xx/5xx answers: `detail` says what to fix (a string, or a list of problems for a 422)."""

    detail: str | list[Any]


MAX_OFFSET = 2**31 - 1
"""The largest `offset` a list accepts (larger ones overflow the databases' integers)."""

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorDetail,
        "description": "API keys are on and the request has no valid `Authorization: Bearer KEY` (or it was revoked)",
    },
    403: {"model": ErrorDetail, "description": "the key's scope does not allow this (predict < train < admin)"},
}
"""The answer every route behind API keys may give (routers declare it, so the OpenAPI page lists it)."""


EvaluationSplit = Literal["val", "train", "all"]


class EvaluationCreate(BaseModel):
    """An evaluation of a model on a dataset: its split, the format to run and the threshold to count at."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"dataset_id": "5b1f0c2e9d8a4f7e8c6b5a4d3e2f1a0b", "split": "val"},
                {
                    "dataset_id": "5b1f0c2e9d8a4f7e8c6b5a4d3e2f1a0b",
                    "split": "all",
                    "format": "tflite_int8",
                    "score_threshold": 0.5,
                },
            ]
        },
    )

    dataset_id: str | None = Field(
        None,
        description="a ready dataset whose class names the model knows (default: the dataset the model was trained "
        'on, where split "train" finds the label errors of its own training set)',
    )
    split: EvaluationSplit = Field("val", description="val, train or all of the dataset's images")
    callback_urls: list[str] = Field(default_factory=list, max_length=5, description=CALLBACK_URLS_DOC)
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="where detections are counted as found or false (default: the model's)"
    )
    format: ModelFormat | None = Field(None, description="an exported format of the model (default: what predict runs)")


class EvaluationProgress(BaseModel):
    """Images evaluated so far."""

    done: int
    total: int


class EvaluationPublic(BaseModel):
    """An evaluation: state, progress, and when it succeeded its COCO metrics, per-class results and confusion."""

    id: str
    model_id: str
    model_name: str = Field(description="the model's variant and version, e.g. efficientdet-d0 v3")
    dataset_id: str
    split: EvaluationSplit
    format: ModelFormat
    score_threshold: float
    status: EvaluationStatus
    progress: EvaluationProgress | None = None
    result: EvaluationReport | None = None
    error: str | None = None
    cancel_requested: bool
    attempts: int
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None

    @classmethod
    def from_row(cls, row: Evaluation, model: ModelVersion | None) -> EvaluationPublic:
        """The public view of an evaluation (`model`: its model version, for the name)."""
        return cls(
            id=row.id,
            model_id=row.model_id,
            model_name=f"{model.name} v{model.version}" if model is not None else row.model_id,
            dataset_id=row.dataset_id,
            split=row.split,
            format=row.format,
            score_threshold=row.score_threshold,
            status=EvaluationStatus(row.status),
            progress=EvaluationProgress.model_validate(row.progress) if row.progress else None,
            result=EvaluationReport.model_validate(row.result) if row.result else None,
            error=row.error,
            cancel_requested=row.cancel_requested,
            attempts=row.attempts,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


class EvaluationsPublic(BaseModel):
    """A page of evaluations, newest first: filtered by dataset, the comparison of every model evaluated on it."""

    items: list[EvaluationPublic]
    count: int


class LabelIssuePublic(LabelIssue):
    """A likely label error, with the id of its image in the dataset's gallery (to draw it)."""

    gallery_id: str | None = Field(None, description="GET /v1/datasets/{id}/images/{gallery_id}/thumbnail draws it")
    width: int | None = Field(None, description="the image's width in pixels")
    height: int | None = None


class LabelIssuesPublic(BaseModel):
    """A page of likely label errors, most confident first."""

    items: list[LabelIssuePublic]
    count: int


class DrawnBox(BaseModel):
    """A box to draw: [x, y, width, height] in original pixels, its class and (for a detection) its score."""

    label: str
    box: list[float]
    score: float | None = None


class EvaluationImagePublic(BaseModel):
    """One evaluated image: its boxes and the detections at the evaluation's threshold, and how many errors."""

    image_id: int = Field(description="the record's source id (fixes name images by it)")
    file_name: str
    gallery_id: str | None = None
    width: int
    height: int
    errors: int = Field(description="false detections plus missed boxes at the threshold")
    boxes: list[DrawnBox]
    detections: list[DrawnBox]


class EvaluationImagesPublic(BaseModel):
    """A page of an evaluation's images, most errors first."""

    items: list[EvaluationImagePublic]
    count: int


class DatasetVersionCreate(BaseModel):
    """A new version of a ready dataset with fixes applied; the old one stays as it is."""

    model_config = ConfigDict(extra="forbid")

    fixes: list[BoxFix] = Field(min_length=1, max_length=100_000)
    name: str | None = Field(None, max_length=200, description="default: the old name with ' (fixed)'")


KEY_NAME = r"^[^\x00-\x1f\x7f/]{0,99}[^\s/][^\x00-\x1f\x7f/]{0,99}$"
"""A key's name: 1-100 printable characters, no slash (it names the key in URLs)."""
OWNER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
"""An owner: 1-64 letters, digits and . _ @ - (it is stored on every row the owner's keys create)."""


class KeyCreate(BaseModel):
    """A new API key: its name (unique among keys not revoked), the owner whose resources it shares (a team or a
    person; left out, the key is its own owner) and what it may do."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "camera-7", "owner": "plates", "scope": "predict"}]}
    )

    name: str = Field(max_length=100, pattern=KEY_NAME, description="who or what the key is for")
    owner: str | None = Field(None, pattern=OWNER_NAME, description="the team or person whose resources it shares")
    scope: Scope = Field(
        Scope.train,
        description="predict (predict, read models) < train (datasets, jobs, models, "
        "evaluations) < admin (keys, every owner's usage)",
    )


class KeyPublic(BaseModel):
    """A stored key as admins see it (never the key itself)."""

    id: str
    name: str
    owner: str = Field(description="the owner stored on what the key creates")
    scope: Scope
    created_at: Annotated[datetime, AfterValidator(_as_utc)]
    revoked_at: Annotated[datetime | None, AfterValidator(lambda v: v and _as_utc(v))] = None

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyPublic:
        return cls(
            id=row.id,
            name=row.name,
            owner=row.owner_id,
            scope=Scope(row.scope),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class KeyCreated(KeyPublic):
    """A new key, with the key itself: shown this once, only its hash is kept."""

    key: str


class KeysPublic(BaseModel):
    """Every stored key, revoked ones included, oldest first."""

    items: list[KeyPublic]
    count: int


class Limits(BaseModel):
    """The limits the server's settings put on every owner and key (None: no limit)."""

    active_jobs: int | None = Field(description="queued or running jobs per owner (EFFDET_MAX_ACTIVE_JOBS)")
    stored_bytes: int | None = Field(description="bytes of dataset uploads per owner (EFFDET_MAX_STORED_BYTES)")
    predict_rps: float | None = Field(description="predict requests per second per key (EFFDET_PREDICT_RPS)")


class Usage(BaseModel):
    """What one owner holds and runs, and the limits it runs under."""

    owner: str | None = Field(description="None when API keys are off")
    datasets: int
    upload_bytes: int = Field(description="bytes of the datasets' uploads")
    jobs: int
    active_jobs: int = Field(description="queued or running")
    models: int
    evaluations: int
    limits: Limits


class UsagePage(BaseModel):
    """Every owner's usage (admin keys only)."""

    items: list[Usage]


class WebhookCreate(BaseModel):
    """A webhook for every end of the owner's jobs, conversions and evaluations."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"url": "https://ci.example.com/hook"}]})

    url: str = Field(min_length=1, max_length=2048, description="an http(s) URL at a public address")


class WebhookPublic(BaseModel):
    """A webhook: where events go, the secret that signs them, and the one resource it follows (None: all)."""

    id: str
    url: str
    secret: str = Field(description="verify each POST: HMAC-SHA256 of '<t>.<body>' under it, in Effdet-Signature")
    resource_id: str | None = Field(description="the job, dataset or evaluation it follows; None: every one")
    created_at: datetime

    @classmethod
    def from_row(cls, row: Webhook) -> WebhookPublic:
        return cls(id=row.id, url=row.url, secret=row.secret, resource_id=row.resource_id, created_at=row.created_at)


class WebhooksPage(BaseModel):
    """The owner's webhooks, oldest first."""

    items: list[WebhookPublic]
    count: int


class DeliveryPublic(BaseModel):
    """One event sent (or still being sent) to a webhook, with its attempts and the receiver's last answer."""

    id: str
    event: str = Field(description="e.g. job.succeeded, dataset.ready, evaluation.failed")
    resource_id: str
    status: DeliveryStatus
    attempts: int
    response_status: int | None = Field(description="the receiver's last HTTP status; None when it was not reached")
    error: str | None
    next_attempt_at: datetime | None = Field(description="when it is tried again; None once delivered or failed")
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any] = Field(description="the JSON body POSTed")

    @classmethod
    def from_row(cls, row: WebhookDelivery) -> DeliveryPublic:
        pending = row.status == DeliveryStatus.pending
        return cls(
            id=row.id,
            event=row.event,
            resource_id=row.resource_id,
            status=DeliveryStatus(row.status),
            attempts=row.attempts,
            response_status=row.response_status,
            error=row.error,
            next_attempt_at=row.next_attempt_at if pending else None,
            created_at=row.created_at,
            finished_at=row.finished_at,
            payload=row.payload,
        )


class DeliveriesPage(BaseModel):
    """A webhook's deliveries, newest first."""

    items: list[DeliveryPublic]
    count: int
