"""What the benchmarks share: the machine and versions of a result, the test image, an exported model registered
in a data dir, a uvicorn server or the whole service in a subprocess, process memory from /proc, and the JSON line
printer."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RACCOON = REPO.parent / "shared" / "data" / "raccoon"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
"""BENCH_QUICK=1: every benchmark's defaults shrink to a smoke run of seconds (figures are then not results)."""


def machine() -> dict[str, Any]:
    """Machine, versions and the current load, for every result line (figures on a shared machine are noisy)."""
    import tensorflow as tf

    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def emit(bench: str, **figures: Any) -> dict[str, Any]:
    """Print one result as a JSON line (bench name, machine, versions, load, then the figures) and return it."""
    record = {"bench": bench, **machine(), **figures}
    print(json.dumps(record), flush=True)
    return record


def jpeg(width: int = 650, height: int = 417) -> bytes:
    """A noise JPEG of the benchmarks' reference size (~650x417, as the latency targets are stated)."""
    pixels = np.random.default_rng(0).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def percentiles(times_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds (None for an empty sample)."""
    if not times_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    return {f"p{q}_ms": round(float(np.percentile(times_ms, q)), 1) for q in (50, 95, 99)}


def export_model(folder: Path, variant: str, image_size: int | None = None) -> Path:
    """An exported SavedModel of `efficientdet-<variant>` (random weights: latency does not depend on them) with
    score threshold 0, so NMS and the answer always carry the full max_detections; returns the model folder."""
    from core.layout import saved_model_dir
    from effdet.config import get_config
    from effdet.export import export_saved_model
    from effdet.model import build_model

    overrides: dict[str, Any] = {"num_classes": 1, "label_map": {1: "raccoon"}}
    if image_size:
        overrides["image_size"] = image_size
    config = get_config(f"efficientdet-{variant}", overrides)
    export_saved_model(build_model(config), config, saved_model_dir(folder), min_score_thresh=0.0)
    return folder


def register_model(data_dir: Path, folder: Path) -> str:
    """Add the rows a served model has (dataset, succeeded job, model version) to data_dir's SQLite database."""
    from core.db import migrate, reset_caches, session_scope
    from core.tables import Dataset, Job, ModelVersion

    os.environ["EFFDET_DATA_DIR"] = str(data_dir)
    for name in ("EFFDET_DATABASE_URL", "EFFDET_BROKER_URL", "EFFDET_API_KEYS"):
        os.environ.pop(name, None)
    reset_caches()
    migrate()
    with session_scope() as session:
        dataset = Dataset(name="bench", status="ready")
        session.add(dataset)
        session.flush()
        job = Job(dataset_id=dataset.id, model_name="efficientdet", status="succeeded", config={}, options={})
        session.add(job)
        session.flush()
        model = ModelVersion(job_id=job.id, name="efficientdet", version=1, path=str(folder))
        session.add(model)
        session.flush()
        return str(model.id)


class RawModel:
    """The served SavedModel called directly: the same bytes, the same signature, outputs read to numpy."""

    def __init__(self, serve: Any, image: bytes) -> None:
        import tensorflow as tf

        self._serve = serve
        self._batch = tf.constant([image])
        self.cpu_seconds = 0.0

    @classmethod
    def load(cls, saved_model: Path, image: bytes) -> RawModel:
        """The `serving_default` signature of a SavedModel folder, as the service calls it."""
        import tensorflow as tf

        return cls(tf.saved_model.load(str(saved_model)).signatures["serving_default"], image)

    def call(self) -> None:
        """One batch-1 prediction, waiting for every output."""
        for tensor in self._serve(images=self._batch).values():
            tensor.numpy()

    def timed(self) -> float:
        """Milliseconds of one call (its CPU time, all threads of this process, is added to `cpu_seconds`)."""
        cpu, start = time.process_time(), time.perf_counter()
        self.call()
        elapsed = time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu
        return elapsed * 1000

    def run(self, seconds: float) -> list[float]:
        """Milliseconds of each call made within `seconds` (at least one)."""
        times = [self.timed()]
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            times.append(self.timed())
        return times


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running API: its base URL, the pid whose memory is the API's, and the transport to reach an in-process
    app (None: over TCP)."""

    url: str
    pid: int
    transport: Any = None


@contextlib.contextmanager
def serve_api(data_dir: Path, extra_env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[Server]:
    """uvicorn app.main:create_app in a subprocess on data_dir's SQLite database; stopped on exit."""
    import httpx

    port = free_port()
    env = {**os.environ, "EFFDET_DATA_DIR": str(data_dir), **(extra_env or {})}
    with open(log or os.devnull, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start (exit code {process.poll()}); see {log}")
            time.sleep(0.3)
        yield Server(url=url, pid=process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


FINISHED = ("succeeded", "failed", "cancelled")
"""The job states after which nothing changes."""


def raccoon_zip(*folders: str) -> bytes:
    """The shared raccoon dataset's images plus the named annotation folders (annotations: VOC, csv: its split)
    as one upload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(RACCOON.rglob("*")):
            if path.is_file() and path.parent.name in ("images", *folders):
                archive.write(path, f"raccoon/{path.relative_to(RACCOON)}")
    return buffer.getvalue()


def wait_for(
    client: Any,
    path: str,
    done: tuple[str, ...],
    timeout: float,
    every: float,
    on_poll: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """GET path every `every` seconds until its status is in done, handing each body to on_poll."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(path).raise_for_status().json()
        on_poll(body)
        if body["status"] in done:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} still {body['status']} after {timeout:.0f} s")
        time.sleep(every)


SERVING = re.compile(r"serving on (http://\S+)")


def process_tree(pid: int) -> list[int]:
    """Every process below pid (from /proc/<pid>/task/*/children), deepest last."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            direct = [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in direct:
            found += [child, *process_tree(child)]
    return found


@contextlib.contextmanager
def serve_service(data_dir: Path, log: Path) -> Iterator[Server]:
    """`python -m app.runner` (the API and one Celery worker, embedded SQLite and queue) on data_dir, as a new
    user starts it from the README; interrupted like Ctrl-C on exit, killed if it does not stop in a minute."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFFDET_")}
    env |= {"EFFDET_DATA_DIR": str(data_dir), "PORT": str(free_port())}
    with log.open("wb") as output:
        runner = subprocess.Popen(
            [sys.executable, "-m", "app.runner"], cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while not (found := SERVING.search(log.read_text(errors="replace"))):
            if runner.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the runner did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield Server(url=found.group(1), pid=runner.pid)
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in process_tree(runner.pid):
                os.kill(pid, signal.SIGKILL)
            runner.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a live process, in MB (empty once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    fields = {line.split(":")[0]: line.split()[1] for line in lines if line.startswith(("VmRSS", "VmHWM"))}
    return {("rss_mb" if k == "VmRSS" else "peak_rss_mb"): round(int(v) / 1024, 1) for k, v in fields.items()}
