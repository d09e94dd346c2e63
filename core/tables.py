"""Database tables (SQLAlchemy 2): API keys, datasets, jobs with their event log, exported model versions,
evaluations of models on datasets, and the answers kept for idempotent retries.

JSON columns hold documents whose shape is defined by pydantic models (app/schemas.py, effdet's reports), so
the tables stay few and stable. Ids are UUID strings; times are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    """A new row id (a UUID's hex), for a caller that needs it before the row is stored."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table (Alembic's target metadata)."""


class DatasetStatus(StrEnum):
    validating = "validating"
    ready = "ready"
    failed = "failed"


class JobStatus(StrEnum):
    queued = "queued"
    converting = "converting"
    training = "training"
    evaluating = "evaluating"
    exporting = "exporting"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class EvaluationStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})
RUNNING = frozenset({JobStatus.converting, JobStatus.training, JobStatus.evaluating, JobStatus.exporting})


class Scope(StrEnum):
    """What a key may do; each scope includes the ones before it."""

    predict = "predict"  # predict, and read models
    train = "train"  # datasets, jobs, models, evaluations
    admin = "admin"  # keys, and every owner's usage


class ApiKey(Base):
    """A stored API key (its hash only). Rows its requests create carry its owner: the team or person named when
    it was created, or the key's own id when none was."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)  # None: the key is its own owner (its id)
    scope: Mapped[str] = mapped_column(String(10), default=Scope.train)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def owner_id(self) -> str:
        """The owner stored on what this key creates."""
        return self.owner or self.id


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=DatasetStatus.validating, index=True)
    format: Mapped[str] = mapped_column(String(20), default="auto")
    val_fraction: Mapped[float] = mapped_column(Float, default=0.1)
    upload_bytes: Mapped[int] = mapped_column(Integer, default=0)
    num_images: Mapped[int | None] = mapped_column(Integer)
    num_boxes: Mapped[int | None] = mapped_column(Integer)
    label_map: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    class_aliases: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"alias": "name"} merged at conversion
    requested_label_map: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {id: name} the user fixed
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # effdet ConversionReport (stats, problems, anchors)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"done": n, "total": m}
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # being deleted: hidden
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"), index=True)
    model_name: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.queued, index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved automl-flat hyperparameters
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # effdet TrainOptions (steps, batch, pretrained...)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # latest effdet.train.Progress
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # effdet.evaluate.Metrics
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[str] | None] = mapped_column(JSON)  # advice found when the job was resolved
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    finish_requested: Mapped[bool] = mapped_column(Boolean, default=False)  # end training now, keep the model
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))  # who holds the lease
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    model_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # being deleted: hidden
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobEvent(Base):
    """Append-only log of a job: state changes, progress reports, log lines (the SSE stream reads it)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # "state" | "progress" | "log" | "metrics"
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """An exported SavedModel (and TFLite file) made by a job."""

    __tablename__ = "model_versions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(50))  # the variant, e.g. efficientdet-d0
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per (owner, name)
    path: Mapped[str] = mapped_column(String(500))  # folder holding saved_model/ (and model.tflite)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    label_map: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # being deleted: hidden


class Evaluation(Base):
    """A model run over a dataset's split, with COCO metrics and the counts at one score threshold."""

    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"), index=True)
    split: Mapped[str] = mapped_column(String(10))  # "val" | "train" | "all"
    format: Mapped[str] = mapped_column(String(20))  # the exported format run, e.g. "tflite"
    score_threshold: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default=EvaluationStatus.queued, index=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"done": n, "total": m} images
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # worker.evaluate's EvaluationResult
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))  # who holds the lease
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # being deleted: hidden
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


IDEMPOTENCY_WINDOW = timedelta(hours=24)
"""How long an Idempotency-Key's record answers retries; older ones are dropped by the recovery sweep."""


class IdempotentRequest(Base):
    """What a creating POST sent with an `Idempotency-Key` created, kept 24 h so that a retry with the same key and
    body gets that resource again instead of a second one. Written in the transaction that creates the resource,
    so a crash leaves either both or neither."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))  # "" when auth is off
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the path and the body
    resource_type: Mapped[str] = mapped_column(String(20))  # the table of what the first request created
    resource_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Webhook(Base):
    """Where the service POSTs a signed event when one of the owner's jobs, conversions or evaluations ends: every
    such end, or only `resource_id`'s (a callback URL named when that resource was created)."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(64))  # signs each delivery (HMAC-SHA256)
    resource_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeliveryStatus(StrEnum):
    pending = "pending"  # waiting for its next attempt
    delivered = "delivered"  # the receiver answered 2xx
    failed = "failed"  # no 2xx within the retry window


class WebhookDelivery(Base):
    """One event for one webhook: its payload, attempts so far, the last answer, and when the next attempt is due.
    Unique per (webhook, resource, event), so racing workers announce an end once."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "resource_id", "event"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    resource_id: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(40))  # e.g. "job.succeeded"
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.pending, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
