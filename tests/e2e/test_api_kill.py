"""The API process SIGKILLed mid-upload and mid-job-submission, on SQLite and on PostgreSQL: after a restart no
half-written row or file is left (the partial upload is dropped at start), and a client that retries with the
same Idempotency-Key gets one dataset and one job.

The API runs alone, as `uvicorn app.main:create_app --factory`. The upload is cut by killing the API once half
the body has arrived; the submission is held between its commit and its queueing by a broker that accepts the
connection and never answers, and the API is killed there."""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from core.tables import Dataset, DatasetStatus, IdempotentRequest, Job, JobStatus
from tests.e2e.conftest import REPO, free_port
from tests.helpers.reports import one_class_report

BACKENDS = ("sqlite", "postgresql")


class Api:
    """The API alone in its own process group, output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(self.port)]
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while not self._ready():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


class SilentBroker:
    """A TCP port that accepts connections and never answers: a queue that hangs while the API sends to it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}/0"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The API's environment: SQLite and the embedded broker, or PostgreSQL and Redis; partial uploads count as
    stale after 1 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFFDET_")}
    if request.param == "postgresql":
        env |= request.getfixturevalue("production_env")
    env |= {"EFFDET_DATA_DIR": str(tmp_path / "var"), "EFFDET_STALE_UPLOAD_S": "1"}
    return env


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Start APIs with extra environment; every one is killed after the test."""
    started: list[Api] = []

    def start(env: dict[str, str]) -> Api:
        started.append(Api(env, tmp_path / f"api-{len(started)}.log"))
        return started[-1]

    yield start
    for api in started:
        api.kill()


def _archive() -> bytes:
    """A 2 MB zip (stored, incompressible) that passes the upload checks."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.xml", "<annotation/>")
        archive.writestr("a.jpg", random.Random(0).randbytes(2 * 2**20))
    return buffer.getvalue()


def _multipart(data: bytes, boundary: str = "cut-here") -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _half_upload(api: Api, body: bytes, part_dir: Path) -> None:
    """Send the headers and half the body of an upload with an Idempotency-Key, then kill the API once the
    partial file holds part of it."""
    connection = socket.create_connection(("127.0.0.1", api.port))
    head = (
        f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: upload-1\r\n"
        f"Content-Type: multipart/form-data; boundary=cut-here\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    connection.sendall(head.encode() + body[: len(body) // 2])
    deadline = time.monotonic() + 30
    while not any(part.stat().st_size > 0 for part in part_dir.glob("*.part")):
        assert time.monotonic() < deadline, "the upload never reached the disk"
        time.sleep(0.05)
    api.kill()
    connection.close()


def _count(url: str, table: type[Any]) -> int:
    engine = create_engine(url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(table)) or 0
    engine.dispose()
    return count


def _ready_dataset(url: str) -> str:
    """A converted dataset row, as a worker leaves it (no worker runs here)."""
    engine = create_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        row = Dataset(
            name="ready",
            status=DatasetStatus.ready,
            format="voc",
            label_map={"1": "raccoon"},
            num_images=10,
            num_boxes=11,
            report=one_class_report(0).model_dump(mode="json"),
        )
        session.add(row)
        session.commit()
    engine.dispose()
    return row.id


def test_an_api_killed_mid_upload_and_mid_submission_leaves_nothing_half_done(
    backend: dict[str, str], start_api: Callable[..., Api]
) -> None:
    data_dir = Path(backend["EFFDET_DATA_DIR"])
    database = backend.get("EFFDET_DATABASE_URL") or f"sqlite:///{data_dir.resolve() / 'effdet.db'}"
    body = _multipart(_archive())

    _half_upload(start_api(backend), body, data_dir / "uploads")
    assert len(list((data_dir / "uploads").glob("*.part"))) == 1, "killed mid-upload, as the test means"
    assert _count(database, Dataset) == 0
    assert list((data_dir / "datasets").iterdir()) == []

    time.sleep(1.5)  # the partial upload is now stale
    broker = SilentBroker()
    hanging = start_api({**backend, "EFFDET_BROKER_URL": broker.url})
    assert list((data_dir / "uploads").iterdir()) == [], "the restarted API dropped the partial upload"
    dataset = _ready_dataset(database)
    submission = {"dataset_id": dataset, "num_steps": 1}

    answers: list[httpx.Response] = []

    def submit() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the API dies under it
            url = f"{hanging.url}/v1/jobs"
            answers.append(httpx.post(url, json=submission, headers={"Idempotency-Key": "job-1"}, timeout=60))

    threading.Thread(target=submit, daemon=True).start()
    deadline = time.monotonic() + 30
    while _count(database, Job) == 0:
        assert time.monotonic() < deadline, f"the submission never committed: {[a.text for a in answers]}"
        time.sleep(0.05)
    time.sleep(0.5)  # the API now waits on the silent broker
    hanging.kill()
    broker.close()

    api = start_api(backend)
    retried = httpx.post(f"{api.url}/v1/jobs", json=submission, headers={"Idempotency-Key": "job-1"}, timeout=60)
    assert retried.status_code == 202, retried.text
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json()["status"] == JobStatus.queued
    assert _count(database, Job) == 1, "the retry gets the job the killed API made, not a second one"

    uploads = [
        httpx.post(
            f"{api.url}/v1/datasets",
            content=body,
            headers={"Idempotency-Key": "upload-1", "Content-Type": "multipart/form-data; boundary=cut-here"},
            timeout=60,
        )
        for _ in range(2)
    ]
    assert [answer.status_code for answer in uploads] == [202, 202], uploads[0].text
    assert uploads[0].json()["id"] == uploads[1].json()["id"]
    assert "idempotent-replayed" not in uploads[0].headers, "the killed upload had created nothing to replay"
    assert _count(database, Dataset) == 2
    assert _count(database, IdempotentRequest) == 2
    assert sorted(p.name for p in (data_dir / "datasets").iterdir()) == [uploads[0].json()["id"]]
    assert list((data_dir / "uploads").iterdir()) == []
