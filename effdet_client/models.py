"""The API's request and response bodies as the client sees them: typed where the client reads a field, and
keeping every other field the server sends (so `--json` passes the whole answer through)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "converting", "training", "evaluating", "exporting", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
"""Job states that do not change any more."""


class PlotName(StrEnum):
    """The plots GET /v1/jobs/{id}/plots/{name}.png draws."""

    loss = "loss"
    learning_rate = "learning_rate"
    pr_curve = "pr_curve"


ModelFormat = Literal["saved_model", "tflite", "tflite_float16", "tflite_int8"]
DatasetFormat = Literal["auto", "coco", "voc", "yolo", "csv", "ccpd", "tfrecord"]
ImageSplit = Literal["train", "val", "dropped"]


class _Answer(BaseModel):
    """A response body: unknown fields are kept, so a newer server's additions are not lost."""

    model_config = ConfigDict(extra="allow")


class Dataset(_Answer):
    """An uploaded dataset: `validating`, then `ready` (classes, counts, statistics) or `failed`."""

    id: str
    name: str
    status: str
    format: str
    num_images: int | None = None
    num_boxes: int | None = None
    label_map: dict[str, str] | None = None
    class_aliases: dict[str, str] | None = None
    requested_label_map: dict[str, str] | None = None
    problems: list[dict[str, Any]] = Field(default_factory=list)
    progress: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime

    def suggested_aliases(self) -> dict[str, str]:
        """The class_aliases the service suggests (its `similar_class_names` warnings), merged into one mapping."""
        suggested: dict[str, str] = {}
        for problem in self.problems:
            if problem.get("code") == "similar_class_names":
                suggested.update(problem.get("class_aliases") or {})
        return suggested


class JobProgress(_Answer):
    """The latest progress report of a running job."""

    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    learning_rate: float | None = None
    images_per_sec: float | None = None
    eta_seconds: float | None = None


class Job(_Answer):
    """A fine-tuning job: state, progress, metrics or error, and the model it produced."""

    id: str
    dataset_id: str
    model: str
    status: str
    progress: JobProgress | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
    model_id: str | None = None
    warnings: list[str] = []
    finish_requested: bool = False
    created_at: datetime

    @property
    def finished(self) -> bool:
        """Whether the job has reached a final state."""
        return self.status in FINISHED


class JobEvent(_Answer):
    """One entry of a job's event log: a state change, a progress report, a log line or the final metrics."""

    id: int
    kind: str
    data: dict[str, Any]
    created_at: datetime


class Model(_Answer):
    """An exported model version, its metrics and the formats it can be downloaded in."""

    id: str
    job_id: str
    name: str
    version: int
    metrics: dict[str, Any] | None = None
    label_map: dict[str, str] | None = None
    formats: list[str] = Field(default_factory=list)
    created_at: datetime


class Evaluation(_Answer):
    """A model evaluated on a dataset's split: state, progress, and once succeeded its `result` (COCO metrics with
    per-class AP and PR curves, and the per-class counts and confusion matrix at `score_threshold`)."""

    id: str
    model_id: str
    model_name: str
    dataset_id: str
    split: str
    format: str
    score_threshold: float
    status: str
    progress: dict[str, int] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime

    @property
    def finished(self) -> bool:
        """Whether the evaluation has reached a final state."""
        return self.status in FINISHED


class EvaluationList(_Answer):
    """A page of evaluations."""

    items: list[Evaluation]
    count: int


class LabelIssue(_Answer):
    """A likely label error: its kind, confidence, image, the box (none for a missing box), the detection behind it
    and the reason."""

    kind: str
    confidence: float
    image_id: int
    file_name: str
    annotation_id: int | None = None
    label: str | None = None
    box: list[float] | None = None
    detection: dict[str, Any] | None = None
    reason: str

    def suggested_fix(self) -> dict[str, Any]:
        """The fix that follows the model: add the detected box, delete the box, take the detected class, or take
        the detected box (a body entry of POST /v1/datasets/{id}/versions)."""
        found = self.detection or {}
        fix: dict[str, Any] = {"image_id": self.image_id}
        if self.annotation_id is not None:
            fix["annotation_id"] = self.annotation_id
        if self.kind == "missing_box":
            return {**fix, "action": "add_box", "label": found["label"], "box": found["box"]}
        if self.kind == "wrong_class":
            return {**fix, "action": "change_class", "label": found["label"]}
        if self.kind == "loose_box":
            return {**fix, "action": "replace_box", "box": found["box"]}
        return {**fix, "action": "delete_box"}


class LabelIssueList(_Answer):
    """A page of likely label errors, most confident first."""

    items: list[LabelIssue]
    count: int


class EvaluationRequest(BaseModel):
    """What POST /v1/models/{id}/evaluations takes; fields left None are not sent (the server's defaults apply)."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str | None = None
    split: Literal["val", "train", "all"] | None = None
    score_threshold: float | None = None
    format: ModelFormat | None = None


class Detection(_Answer):
    """One detected object: [xmin, ymin, xmax, ymax] in pixels of the original image."""

    box: tuple[float, float, float, float]
    label: str
    class_id: int
    score: float


class ImageBox(_Answer):
    """One box of a dataset image: [xmin, ymin, xmax, ymax] in its pixels, kept or dropped (with the problem)."""

    label: str
    bbox: list[float] | None = None
    dropped: bool
    problem: str | None = None


class DatasetImage(_Answer):
    """One image of a converted dataset (split train, val or dropped) with its boxes and problems."""

    id: str
    path: str
    width: int | None = None
    height: int | None = None
    split: ImageSplit
    boxes: list[ImageBox] = Field(default_factory=list)
    problems: list[dict[str, Any]] = Field(default_factory=list)


class DatasetImageList(_Answer):
    """A page of a dataset's images (those with problems first) and how many match in all."""

    items: list[DatasetImage]
    count: int


class DatasetList(_Answer):
    """A page of datasets."""

    items: list[Dataset]
    count: int


class JobList(_Answer):
    """A page of jobs."""

    items: list[Job]
    count: int


class ModelList(_Answer):
    """A page of model versions."""

    items: list[Model]
    count: int


class JobSubmission(BaseModel):
    """What POST /v1/jobs takes; fields left None are not sent, so the server's defaults apply."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str
    model: str = "efficientdet-d0"
    hparams: dict[str, Any] | None = None
    hparams_yaml: str | None = Field(None, description="automl YAML text or an 'a=b,c=d' override string")
    num_steps: int | None = None
    num_epochs: float | None = None
    max_train_seconds: float | None = None
    batch_size: int | None = None
    pretrained: str | None = None
    var_freeze_expr: str | None = None
    min_score_thresh: float | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None
    seed: int | None = None
    callback_urls: list[str] | None = Field(None, description="URLs that get a signed POST when the job ends")


class Webhook(_Answer):
    """Where the service POSTs a signed event when a job, conversion or evaluation ends."""

    id: str
    url: str
    secret: str
    resource_id: str | None
    created_at: datetime


class WebhookList(_Answer):
    items: list[Webhook]
    count: int


class Delivery(_Answer):
    """One event sent to a webhook: its attempts and the receiver's last answer."""

    id: str
    event: str
    resource_id: str
    status: str
    attempts: int
    response_status: int | None
    error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]


class DeliveryList(_Answer):
    items: list[Delivery]
    count: int
