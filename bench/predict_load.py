"""REST predict under load against the raw SavedModel, interleaved in one run, plus the API's memory.

Usage: .venv/bin/python -m bench.predict_load [--clients 1,8,50] [--seconds 60] [--block-seconds 10]
       [--model d0] [--image-size 512] [--leak 1000]
Exports the model (random weights, score threshold 0: full NMS work and 100 detections in every answer),
serves it with uvicorn in a subprocess, then for each client count alternates blocks: `block-seconds` of REST
load from N closed-loop clients, then the same time of the raw SavedModel in this process: the same JPEG bytes
through `serving_default`, the signature the service calls. Alternating keeps the ratio fair on a machine whose
load changes. One JSON line per client count (throughput, p50/p95/p99, statuses, errors, raw latency, ratios,
the API's RSS), then with --leak N one line with the API's RSS after warm-up and after N more predictions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bench.common import (
    QUICK,
    RawModel,
    Server,
    cpu_seconds,
    emit,
    export_model,
    jpeg,
    memory_mb,
    percentiles,
    register_model,
    serve_api,
)
from bench.load import run_load
from core.layout import saved_model_dir


class LoadPlan(BaseModel):
    """What is measured (model, input size) and how: REST seconds in blocks, raw time per block, client timeout."""

    model: str = "efficientdet-d0"
    image_size: int = 512
    seconds: float = 60
    block_seconds: float = 10
    raw_fraction: float = 1.0
    timeout: float = 60


def measure(server: Server, model_id: str, raw: RawModel, image: bytes, clients: int, plan: LoadPlan) -> dict[str, Any]:
    """REST load and raw calls for `plan.seconds` of REST load; one result for this client count.

    One client: each request is followed by one raw call, so every pair meets the same machine load (the wall
    time is about twice `plan.seconds`). More clients:
    blocks of `plan.block_seconds` of REST load alternate with `raw_fraction` as long of raw calls.
    """
    rest_ms: list[float] = []
    raw_ms: list[float] = []
    statuses: Counter[str] = Counter()
    rest_seconds = server_cpu = 0.0
    raw_cpu = raw.cpu_seconds
    while rest_seconds < plan.seconds - 1e-6:
        remaining = plan.seconds - rest_seconds
        cpu_before, raw_before = cpu_seconds(server.pid), len(raw_ms)
        block = 2 * remaining if clients == 1 else min(plan.block_seconds, remaining)
        if clients == 1:
            result = run_load(server, model_id, image, 1, block, plan.timeout, lambda: raw_ms.append(raw.timed()))
        else:
            result = run_load(server, model_id, image, clients, block, plan.timeout)
            raw_ms.extend(raw.run(block * plan.raw_fraction))
        server_cpu += cpu_seconds(server.pid) - cpu_before
        rest_ms.extend(result.latencies_ms)
        rest_seconds += result.seconds - (sum(raw_ms[raw_before:]) / 1000 if clients == 1 else 0)
        statuses.update(result.statuses)
    raw_cpu = raw.cpu_seconds - raw_cpu
    rest, raw_stats = percentiles(rest_ms), percentiles(raw_ms)
    raw_rps = 1000 * len(raw_ms) / sum(raw_ms)
    rest_rps = len(rest_ms) / rest_seconds
    rest_p50, raw_p50 = rest["p50_ms"] or 0.0, raw_stats["p50_ms"] or 1.0
    return emit(
        "predict_load",
        model=plan.model,
        image_size=plan.image_size,
        input_bytes=len(image),
        clients=clients,
        rest_seconds=round(rest_seconds, 1),
        requests=sum(statuses.values()),
        errors=sum(statuses.values()) - statuses["200"] - statuses["503"],
        shed_503=statuses["503"],
        rest=rest,
        rest_throughput_rps=round(rest_rps, 2),
        raw_saved_model=raw_stats,
        raw_calls=len(raw_ms),
        raw_throughput_rps=round(raw_rps, 2),
        p50_ratio=round(rest_p50 / raw_p50, 3),
        p50_overhead_ms=round(rest_p50 - raw_p50, 1),
        throughput_ratio=round(rest_rps / raw_rps, 3),
        server_cpu_ms_per_request=round(1000 * server_cpu / max(1, len(rest_ms)), 1)
        if server.transport is None
        else None,
        raw_cpu_ms_per_call=round(1000 * raw_cpu / max(1, len(raw_ms)), 1) if server.transport is None else None,
        api_memory=memory_mb(server.pid),
    )


def leak_check(
    server: Server, model_id: str, image: bytes, predictions: int, block_seconds: float = 5
) -> dict[str, Any]:
    """The API's RSS after a warm-up block and after `predictions` more answered predictions (4 clients)."""
    run_load(server, model_id, image, clients=4, seconds=block_seconds)
    warm = memory_mb(server.pid)
    done = errors = 0
    start = time.perf_counter()
    while done < predictions:
        result = run_load(server, model_id, image, clients=4, seconds=block_seconds)
        done += result.ok
        errors += result.errors
    after = memory_mb(server.pid)
    return emit(
        "predict_leak",
        predictions=done,
        errors=errors,
        minutes=round((time.perf_counter() - start) / 60, 1),
        rss_after_warmup_mb=warm.get("rss_mb"),
        rss_after_mb=after.get("rss_mb"),
        growth_mb=round(after.get("rss_mb", 0) - warm.get("rss_mb", 0), 1),
        peak_rss_mb=after.get("peak_rss_mb"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", default="2" if QUICK else "1,1,1,8,50", help="client counts, '' for none")
    parser.add_argument("--seconds", type=float, default=6 if QUICK else 60, help="REST load per client count")
    parser.add_argument("--block-seconds", type=float, default=3 if QUICK else 10)
    parser.add_argument("--raw-fraction", type=float, default=1.0, help="raw block length / REST block length")
    parser.add_argument("--model", default="d0")
    parser.add_argument("--image-size", type=int, default=128 if QUICK else 512)
    parser.add_argument("--leak", type=int, default=20 if QUICK else 1000, help="predictions of the leak check")
    parser.add_argument("--timeout", type=float, default=60, help="client timeout per request, seconds")
    parser.add_argument("--exported", type=Path, help="serve this model folder (holding saved_model/) instead")
    parser.add_argument("--log", type=Path, help="the API's output goes here (default: discarded)")
    args = parser.parse_args()
    image = jpeg()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "var"
        folder = args.exported or export_model(data_dir / "models" / "bench", args.model, args.image_size)
        model_id = register_model(data_dir, folder)
        raw = RawModel.load(saved_model_dir(folder), image)
        plan = LoadPlan(
            model=f"efficientdet-{args.model}",
            image_size=args.image_size,
            seconds=args.seconds,
            block_seconds=args.block_seconds,
            raw_fraction=args.raw_fraction,
            timeout=args.timeout,
        )
        with serve_api(data_dir, log=args.log) as server:
            run_load(server, model_id, image, clients=1, seconds=2)
            raw.run(2)
            for clients in (int(n) for n in args.clients.split(",") if n):
                measure(server, model_id, raw, image, clients, plan)
            if args.leak:
                leak_check(server, model_id, image, args.leak)


if __name__ == "__main__":
    main()
