"""Service settings from the environment (EFFDET_*), with embedded defaults: everything under ./var,
SQLite for the database and a SQLite-backed Celery broker, so a fresh machine needs no server."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; `EFFDET_DATABASE_URL` etc. override the defaults."""

    model_config = SettingsConfigDict(env_prefix="EFFDET_", extra="ignore")

    data_dir: Path = Field(Path("var"), description="datasets/, runs/, models/, checkpoints/ live here")
    storage_url: str | None = Field(
        None,
        description="s3://bucket[/prefix]: exported models live there (endpoint and credentials from AWS_*), "
        "each machine keeps a cache in DATA_DIR/cache; default: the data dir",
    )
    database_url: str | None = Field(None, description="default: SQLite file DATA_DIR/effdet.db")
    broker_url: str | None = Field(None, description="default: kombu SQLAlchemy transport on DATA_DIR/broker.db")
    api_keys: list[str] = Field(default_factory=list, description="static API keys; empty + no DB keys = auth off")
    host: str = "127.0.0.1"
    port: int = Field(8000, validation_alias="PORT")
    max_upload_bytes: int = 2 * 2**30
    max_uncompressed_bytes: int = 8 * 2**30
    max_files: int = 200_000
    max_image_pixels: int = 80_000_000
    predict_cache_size: int = Field(4, ge=1, description="SavedModels kept loaded (LRU)")
    tflite_threads: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)),
        ge=1,
        description="threads a TFLite model runs on (LiteRT's XNNPACK), default the cores this process may use",
    )
    predict_max_queued_images: int = Field(
        100, ge=1, description="images waiting for inference beyond which predict answers 503 with Retry-After"
    )
    stale_upload_s: float = Field(
        3600, gt=0, description="a partial upload nothing was written to for this long was left by a killed API"
    )
    max_active_jobs: int | None = Field(
        None, ge=1, description="queued or running jobs an owner may have; more answer 429 (None: no limit)"
    )
    max_stored_bytes: int | None = Field(
        None, ge=0, description="bytes of dataset uploads an owner may store; an upload over it answers 413"
    )
    predict_rps: float | None = Field(
        None, gt=0, description="predict requests per second per key, per API process; more answer 429"
    )
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description='non-public networks callbacks may reach anyway, as CIDRs (e.g. ["127.0.0.1/32"] for tests)',
    )
    webhook_poll_s: float = Field(2.0, gt=0, description="seconds between a worker's webhook delivery rounds")
    webhook_retry_base_s: float = Field(30.0, gt=0, description="first retry wait of a failed delivery (doubling)")
    webhook_timeout_s: float = Field(10.0, gt=0, description="seconds a receiver has to answer")
    progress_interval_s: float = Field(2.0, gt=0, description="seconds between progress rows of a running job")
    job_lease_s: float = Field(60.0, gt=0, description="a running job whose worker is silent this long is resumed")
    checkpoint_base_url: str = Field(
        "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet",
        description="where `effdet-service checkpoints fetch` finds google/automl's published COCO checkpoints",
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'effdet.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    def folder(self, name: str) -> Path:
        """A subfolder of the data dir (datasets, runs, models, checkpoints, uploads), created on demand."""
        path = self.data_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return Settings()
