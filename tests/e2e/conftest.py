"""Fixtures of the end-to-end tests: the embedded runner (`effdet-service run` = uvicorn + a real Celery worker)
as a subprocess in its own process group, the process helpers that check nothing is left running, and the
production environment (a fresh schema on the local PostgreSQL, an unused database on the local Redis)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RACCOON = REPO.parent / "shared" / "data" / "raccoon"
EMBEDDED_UNSET = ("EFFDET_DATABASE_URL", "EFFDET_BROKER_URL")
"""Variables the runner does not inherit from the test's environment unless a test sets them."""
SERVING = re.compile(r"effdet-service: serving on (http://\S+)")
REDIS_PORT = 6379
POSTGRES = "postgres@127.0.0.1:5432/test"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every live process below pid (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Runner:
    """`python -m app.runner` in its own process group, as `make run` starts it; output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.runner"],
                cwd=REPO,
                env={k: v for k, v in {**os.environ, **env}.items() if k not in EMBEDDED_UNSET or k in env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def url(self, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = SERVING.search(self.log.read_text(errors="replace"))
            if found:
                return found.group(1)
            assert self.process.poll() is None, f"the runner exited:\n{self.tail()}"
            time.sleep(0.2)
        raise AssertionError(f"the runner printed no URL within {timeout} s:\n{self.tail()}")

    def interrupt(self, timeout: float = 60) -> None:
        """Ctrl-C as a terminal sends it (to the runner's process group); waits for the runner to exit."""
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            for pid in descendants(self.process.pid):
                os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Runner]]:
    """Start runners with extra environment; every one started is killed (with its children) after the test."""
    runners: list[Runner] = []

    def start(env: dict[str, str]) -> Runner:
        runner = Runner(env, tmp_path / f"runner-{len(runners)}.log")
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.kill()


@pytest.fixture
def production_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL schema and an unused Redis database on this machine (started if down; never skipped)."""
    import psycopg
    import redis

    client = redis.Redis(port=REDIS_PORT)
    try:
        client.ping()
    except redis.ConnectionError:
        subprocess.run(["redis-server", "--daemonize", "yes", "--port", str(REDIS_PORT), "--save", ""], check=False)
        time.sleep(1)
        client.ping()  # fails loudly: this test needs the real Redis
    database = next(
        (
            index
            for index in range(15, 0, -1)
            if redis.Redis(port=REDIS_PORT, db=index).dbsize() == 0
            and redis.Redis(port=REDIS_PORT, db=index).set("effdet-test-owner", uuid.uuid4().hex, nx=True, ex=900)
        ),
        None,
    )
    assert database is not None, "no unused Redis database (1-15) on 127.0.0.1:6379"
    try:
        connection = psycopg.connect(f"postgresql://{POSTGRES}", autocommit=True)
    except psycopg.OperationalError:
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
        time.sleep(2)
        connection = psycopg.connect(f"postgresql://{POSTGRES}", autocommit=True)  # fails loudly
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    with connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield {
            "EFFDET_DATABASE_URL": f"postgresql+psycopg://{POSTGRES}?options=-csearch_path%3D{schema}",
            "EFFDET_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/{database}",
            "EFFDET_DATA_DIR": str(tmp_path / "var"),
            "EFFDET_PROGRESS_INTERVAL_S": "0.5",
            "EFFDET_JOB_LEASE_S": "10",
            "PORT": str(free_port()),
        }
    finally:
        redis.Redis(port=REDIS_PORT, db=database).flushdb()
        with psycopg.connect(f"postgresql://{POSTGRES}", autocommit=True) as cleanup:
            cleanup.execute(f"DROP SCHEMA {schema} CASCADE")
