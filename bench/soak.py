"""Soak: N predictions against one served model with the API's RSS sampled; growth after warm-up (issue 20).

Usage: .venv/bin/python -m bench.soak [--requests 10000] [--clients 1] [--sample-every 100] [--model d0]
       [--image-size 256] [--jpeg 320x240] [--target-growth 2] [--exported DIR] [--log FILE]
Exports the model (random weights, score threshold 0: full NMS work and 100 detections in every answer), serves
it with uvicorn in a subprocess (as `predict_load` does), then posts one small JPEG to
POST /v1/models/{id}/predict `--requests` times from `--clients` closed-loop clients (1: one after another).
The API process's RSS (VmRSS from /proc) is read before the first request, every `--sample-every` answers, at
the end of the warm-up (the first 10 % of the requests, the model's loading included) and after the last one.
One JSON line: throughput, p50/p95/p99 of the 200s, answers by status, RSS after warm-up, at the end, the most
sampled and the kernel's peak, growth after warm-up in % (end and most sampled against the warm-up RSS), the
post-warm-up slope in MB per 1000 requests, and whether the growth stays under the target (issue 20: 10,000
predictions, under 2 %). A short table goes to stderr. The input is small (D0 at 256, a 320x240 JPEG) so that
10,000 predictions fit in minutes: what is measured is memory per request, not latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel

from bench.common import QUICK, Server, emit, export_model, jpeg, memory_mb, percentiles, register_model, serve_api


class SoakPlan(BaseModel):
    """How many predictions, from how many clients, how often the RSS is read, what counts as warm-up."""

    requests: int = 10_000
    clients: int = 1
    sample_every: int = 100
    warmup_fraction: float = 0.1
    timeout: float = 60
    target_growth_pct: float = 2.0

    @property
    def warmup_requests(self) -> int:
        """Answers that make the warm-up (at least one: the first loads the model)."""
        return max(1, round(self.requests * self.warmup_fraction))


class RssSample(BaseModel):
    """The API's resident memory after `requests` answers, `seconds` into the run."""

    requests: int
    seconds: float
    rss_mb: float


class SoakRun(BaseModel):
    """What the clients saw: every status, the latency of each 200 in ms, the RSS samples, the wall time."""

    seconds: float
    statuses: dict[str, int]
    latencies_ms: list[float]
    samples: list[RssSample]


def rss_mb(pid: int) -> float:
    """The process's VmRSS in MB; an error once the process is gone (a soak that lost its server is void)."""
    rss = memory_mb(pid).get("rss_mb")
    if rss is None:
        raise RuntimeError(f"the API process {pid} is gone")
    return rss


async def _soak(server: Server, path: str, image: bytes, plan: SoakPlan) -> SoakRun:
    """`plan.requests` posts from `plan.clients` closed-loop clients; RSS read at each mark of answers."""
    marks = {*range(plan.sample_every, plan.requests + 1, plan.sample_every), plan.warmup_requests, plan.requests}
    files = {"file": ("image.jpg", image, "image/jpeg")}
    statuses: Counter[str] = Counter()
    times: list[float] = []
    start = time.perf_counter()
    samples = [RssSample(requests=0, seconds=0.0, rss_mb=rss_mb(server.pid))]
    issued = answered = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal issued, answered
        while issued < plan.requests:
            issued += 1
            sent = time.perf_counter()
            retry_after = 0.0
            try:
                response = await http.post(path, files=files)
            except httpx.HTTPError as err:
                statuses[type(err).__name__] += 1
            else:
                statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    times.append((time.perf_counter() - sent) * 1000)
                elif response.status_code == 503:
                    retry_after = float(response.headers.get("retry-after", "1"))
            answered += 1
            if answered in marks:
                now = time.perf_counter() - start
                samples.append(RssSample(requests=answered, seconds=round(now, 2), rss_mb=rss_mb(server.pid)))
            if retry_after:
                await asyncio.sleep(retry_after)

    limits = httpx.Limits(max_connections=plan.clients, max_keepalive_connections=plan.clients)
    async with httpx.AsyncClient(
        base_url=server.url, timeout=plan.timeout, limits=limits, transport=server.transport
    ) as http:
        await asyncio.gather(*(client(http) for _ in range(plan.clients)))
    return SoakRun(
        seconds=round(time.perf_counter() - start, 2), statuses=dict(statuses), latencies_ms=times, samples=samples
    )


def soak(server: Server, model_id: str, image: bytes, plan: SoakPlan) -> SoakRun:
    """Run the soak against the model's predict route (blocking)."""
    return asyncio.run(_soak(server, f"/v1/models/{model_id}/predict", image, plan))


def _pct(value: float, base: float) -> float:
    return round(100 * (value - base) / base, 2)


def figures(run: SoakRun, plan: SoakPlan) -> dict[str, Any]:
    """The result's figures from a run: requests, statuses, latency, RSS at the marks and the growth after warm-up."""
    requests = sum(run.statuses.values())
    ok = run.statuses.get("200", 0)
    warm = next(s for s in run.samples if s.requests == plan.warmup_requests)
    after = [s for s in run.samples if s.requests >= plan.warmup_requests]
    end, most = run.samples[-1], max(after, key=lambda s: s.rss_mb)
    slope = None
    if len(after) >= 2:
        fit = np.polyfit([s.requests for s in after], [s.rss_mb for s in after], 1)
        slope = round(float(fit[0]) * 1000, 3)
    growth = _pct(end.rss_mb, warm.rss_mb)
    return {
        "clients": plan.clients,
        "requests": requests,
        "ok": ok,
        "non_200": requests - ok,
        "statuses": run.statuses,
        "seconds": run.seconds,
        "throughput_rps": round(requests / run.seconds, 2) if run.seconds else None,
        "latency": percentiles(run.latencies_ms),
        "warmup_requests": plan.warmup_requests,
        "sample_every": plan.sample_every,
        "rss_samples": len(run.samples),
        "rss_start_mb": run.samples[0].rss_mb,
        "rss_after_warmup_mb": warm.rss_mb,
        "rss_end_mb": end.rss_mb,
        "rss_max_mb": most.rss_mb,
        "growth_pct": growth,
        "max_growth_pct": _pct(most.rss_mb, warm.rss_mb),
        "slope_mb_per_1k": slope,
        "target_growth_pct": plan.target_growth_pct,
        "within_target": growth < plan.target_growth_pct,
    }


def table(result: dict[str, Any], run: SoakRun) -> str:
    """A short text table of a result: the summary, then the RSS at about every tenth of the run."""
    latency = result["latency"]
    rows = [
        ("requests (non-200)", f"{result['requests']} ({result['non_200']}: {result['statuses']})"),
        ("wall, throughput", f"{result['seconds']} s, {result['throughput_rps']} req/s"),
        ("latency p50 / p95", f"{latency['p50_ms']} / {latency['p95_ms']} ms"),
        ("RSS start", f"{result['rss_start_mb']} MB"),
        (f"RSS after warm-up ({result['warmup_requests']})", f"{result['rss_after_warmup_mb']} MB"),
        ("RSS end / max / peak", f"{result['rss_end_mb']} / {result['rss_max_mb']} / {result['peak_rss_mb']} MB"),
        ("growth after warm-up", f"{result['growth_pct']} % (max {result['max_growth_pct']} %)"),
        ("slope after warm-up", f"{result['slope_mb_per_1k']} MB per 1000 requests"),
        (f"under {result['target_growth_pct']} %", "yes" if result["within_target"] else "NO"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    step = max(1, len(run.samples) // 10)
    series = run.samples[::step] + ([] if (len(run.samples) - 1) % step == 0 else run.samples[-1:])
    lines += ["", "requests  seconds  rss_mb"]
    lines += [f"{s.requests:>8}  {s.seconds:>7.1f}  {s.rss_mb:>6.1f}" for s in series]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=300 if QUICK else 10_000, help="predictions in all")
    parser.add_argument("--clients", type=int, default=1, help="concurrent closed-loop clients (1: sequential)")
    parser.add_argument("--sample-every", type=int, help="answers between RSS reads (default: requests / 100)")
    parser.add_argument("--warmup-fraction", type=float, default=0.1, help="share of the requests that warm up")
    parser.add_argument("--target-growth", type=float, default=2.0, help="growth after warm-up to stay under, %%")
    parser.add_argument("--model", default="d0")
    parser.add_argument("--image-size", type=int, default=128 if QUICK else 256)
    parser.add_argument("--jpeg", default="320x240", help="the posted JPEG's WIDTHxHEIGHT")
    parser.add_argument("--timeout", type=float, default=60, help="client timeout per request, seconds")
    parser.add_argument("--exported", type=Path, help="serve this model folder (holding saved_model/) instead")
    parser.add_argument("--log", type=Path, help="the API's output goes here (default: discarded)")
    args = parser.parse_args()
    args.sample_every = args.sample_every or max(1, args.requests // 100)
    if args.requests < 1 or args.clients < 1 or args.sample_every < 1:
        parser.error("--requests, --clients and --sample-every must be at least 1")
    if not 0 < args.warmup_fraction < 1:
        parser.error("--warmup-fraction must lie between 0 and 1")
    width, height = (int(n) for n in args.jpeg.lower().split("x"))
    image = jpeg(width, height)
    plan = SoakPlan(
        requests=args.requests,
        clients=args.clients,
        sample_every=args.sample_every,
        warmup_fraction=args.warmup_fraction,
        timeout=args.timeout,
        target_growth_pct=args.target_growth,
    )
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "var"
        folder = args.exported or export_model(data_dir / "models" / "bench", args.model, args.image_size)
        model_id = register_model(data_dir, folder)
        with serve_api(data_dir, log=args.log) as server:
            run = soak(server, model_id, image, plan)
            peak = memory_mb(server.pid).get("peak_rss_mb")
        result = emit(
            "soak",
            model=f"efficientdet-{args.model}" if args.exported is None else str(args.exported),
            image_size=args.image_size if args.exported is None else None,
            input_bytes=len(image),
            **figures(run, plan),
            peak_rss_mb=peak,
        )
    print(table(result, run), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
