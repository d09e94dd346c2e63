"""The FastAPI application factory: settings, database (migrated at start), routers, errors, metrics.

Importing this module does not import TensorFlow; the predict route loads it with the first model.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool

from app.errors import register_error_handlers
from app.metrics import MetricsMiddleware
from app.predictor import ModelCache
from app.routers import (
    checkpoints,
    dataset_images,
    dataset_versions,
    datasets,
    evaluations,
    health,
    home,
    jobs,
    keys,
    models,
    predict,
    webhooks,
)
from core import deletion
from core.db import make_engine, migrate
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """Turn a labelled image dataset into a deployed EfficientDet detector.

1. `POST /v1/datasets` a zip (COCO, VOC, YOLO, CSV, CCPD or automl TFRecords): it is validated and converted.
2. `POST /v1/jobs` to fine-tune a variant on it (google/automl hyperparameter names).
3. Follow `GET /v1/jobs/{id}/events`, then `POST /v1/models/{id}/predict` with images.

With API keys configured, send `Authorization: Bearer KEY`; each key sees only its own resources.
"""


def _lifespan(settings: Settings) -> object:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Drop partial uploads a killed API left, migrate the database (a down database leaves /readyz to retry),
        keep the engine and model cache."""
        for folder in ("uploads", "datasets", "runs", "models", "checkpoints"):
            settings.folder(folder)
        if dropped := deletion.drop_stale_uploads(settings):
            log.warning("removed %d partial upload(s) that a killed API process left", dropped)
        try:
            await run_in_threadpool(migrate, settings.resolved_database_url)
            app.state.migrated = True
        except (OperationalError, InterfaceError) as err:
            log.warning("database unreachable at start, migrations postponed to /readyz: %s", err)
        yield
        app.state.model_cache.clear()
        app.state.engine.dispose()

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new application for these settings (default: from the environment; the queue in core.queue always
    sends to the environment's broker, so pass settings that agree with it)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="effdet-service",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=_lifespan(settings),  # type: ignore[arg-type]
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.resolved_database_url)
    app.state.model_cache = ModelCache(
        settings.predict_cache_size, settings.predict_max_queued_images, settings.tflite_threads
    )
    app.state.migrated = False
    app.add_middleware(MetricsMiddleware)
    register_error_handlers(app)
    for module in (
        home,
        health,
        datasets,
        dataset_images,
        dataset_versions,
        jobs,
        models,
        evaluations,
        predict,
        checkpoints,
        keys,
        webhooks,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=home.STATIC_DIR), name="static")
    return app
