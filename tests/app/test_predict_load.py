"""The load benchmark's code against the real service in this process (the session's exported D0 at 128 pixels,
one load of the SavedModel shared by the app and the raw baseline), and load shedding: a request that finds
the inference queue full is answered 503 with Retry-After while the others are answered."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.predictor import ModelSource
from bench.common import RawModel, Server, jpeg
from bench.load import run_load
from bench.predict_load import LoadPlan, leak_check, measure
from bench.report import render
from core.tables import JobStatus

pytestmark = pytest.mark.slow


async def _burst(server: Server, path: str, image: bytes, requests: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=server.url, transport=server.transport, timeout=60) as client:
        return await asyncio.gather(
            *(client.post(path, files={"file": ("a.jpg", image, "image/jpeg")}) for _ in range(requests))
        )


def test_load_generator_measures_rest_against_raw_and_a_full_queue_sheds_with_503(
    sqlite_service: Any, exported: Path
) -> None:
    service = sqlite_service
    model_id = service.model(service.job(service.dataset(), JobStatus.succeeded), exported)
    app = service.client.app
    server = Server(url="http://service", pid=os.getpid(), transport=httpx.ASGITransport(app=app))
    image = jpeg(320, 240)
    warm_up = run_load(server, model_id, image, clients=1, seconds=0.1, timeout=300)
    assert warm_up.statuses == {"200": warm_up.requests}, warm_up.statuses
    raw = RawModel(
        app.state.model_cache.get(ModelSource(model_id, "saved_model", Path(), None)).module.signatures[
            "serving_default"
        ],
        image,
    )
    app.state.model_cache.queue.max_queued_images = 2

    result = measure(server, model_id, raw, image, clients=2, plan=LoadPlan(image_size=128, seconds=2, block_seconds=1))
    leak = leak_check(server, model_id, image, predictions=4, block_seconds=0.5)
    burst = asyncio.run(_burst(server, f"/v1/models/{model_id}/predict", image, requests=12))

    assert result["errors"] == 0
    assert result["shed_503"] == 0, "2 clients never find more than 2 images waiting"
    assert result["requests"] >= 2
    assert result["rest"]["p50_ms"] > 0
    assert result["raw_saved_model"]["p50_ms"] > 0
    assert result["p50_ratio"] > 0
    assert result["api_memory"]["peak_rss_mb"] >= result["api_memory"]["rss_mb"] > 0
    assert leak["predictions"] >= 4
    assert leak["errors"] == 0
    assert leak["rss_after_mb"] > 0
    statuses = sorted(response.status_code for response in burst)
    assert set(statuses) == {200, 503}, statuses
    for response in burst:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
            assert "retry after" in response.json()["detail"]
    report = render([result, leak])
    assert "## predict_load" in report
    assert "| clients |" in report
    assert "rest.p50_ms" in report
