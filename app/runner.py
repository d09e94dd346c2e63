"""`effdet-service run` / `make run`: the API (uvicorn) and one Celery worker beside it, for a single machine.

With no EFFDET_DATABASE_URL / EFFDET_BROKER_URL this needs no server: SQLite in the data dir for the database
and kombu's SQLAlchemy transport on another SQLite file for the queue. The runner migrates the database,
starts the worker in its own process group, serves the API in this process and prints the URL. Ctrl-C or
SIGTERM stops the API, then the worker (gracefully when idle, cold after a few seconds when busy: a running
job resumes from its last checkpoint at the next start), and nothing is left running. A worker that dies on
its own is started again, so a killed worker's job is resumed without the operator.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from core.settings import Settings, get_settings

log = logging.getLogger("effdet.runner")

GRACE_S = 5.0
"""Seconds a busy worker gets to finish after SIGTERM before the cold shutdown."""
COLD_S = 15.0
"""Seconds the cold shutdown may take before the worker's process group is killed."""
MAX_QUICK_RESTARTS = 5
"""Worker restarts within RESTART_WINDOW_S after which the runner gives up (the worker cannot start)."""
RESTART_WINDOW_S = 60.0


def worker_command(name: str) -> list[str]:
    """The Celery worker command line.

    The prefork pool with one child, not `--pool=solo`: the task runs in a child process while the parent stays
    responsive, so (1) a child killed mid-task (OOM killer, SIGKILL) is noticed by the parent, which gives the
    message back (acks_late + reject_on_worker_lost) and forks a fresh child that resumes the job from its
    checkpoint at once (the dead child's lease is released because its pid is gone); (2) the parent keeps the
    broker connection and runs the recovery sweep (worker.recovery) while a long training step blocks the child;
    (3) TensorFlow lives only in the child, so its memory goes back to the system when the child is replaced.
    """
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        f"--hostname={name}@%h",
    ]


def _die_with_parent() -> None:
    """In the worker (before exec): cold-shut down if the runner dies without stopping it (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGQUIT)


class WorkerSupervisor:
    """Runs the worker process, restarts it when it dies on its own, and stops it (and its children)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._restarts: list[float] = []
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        self.process = subprocess.Popen(self.command, start_new_session=True, preexec_fn=_die_with_parent)
        log.info("worker started (pid %d)", self.process.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            process = self.process
            if process is None or process.poll() is None:
                continue
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S] + [now]
            if len(self._restarts) > MAX_QUICK_RESTARTS:
                log.error("the worker keeps exiting (code %s); not restarting it", process.returncode)
                return
            log.warning("the worker exited (code %s); starting a new one", process.returncode)
            self._kill_group(process)
            if not self._stopping.is_set():
                self._spawn()

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL what is left of the worker's process group (e.g. a pool child of a dead parent)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM (warm), then SIGQUIT (cold) after GRACE_S, then SIGKILL of the whole group; waits for it."""
        self._stopping.set()
        process = self.process
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGQUIT, COLD_S)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait_s)
        self._kill_group(process)
        process.wait()
        self._thread.join(timeout=5)
        log.info("worker stopped")


def _announce_when_started(server: object, url: str) -> None:
    """Print the URL once uvicorn listens (a thread: `run` blocks the main thread)."""

    def wait() -> None:
        while not getattr(server, "started", False):
            if getattr(server, "should_exit", False):
                return
            time.sleep(0.05)
        print(f"effdet-service: serving on {url}", flush=True)

    threading.Thread(target=wait, name="announce", daemon=True).start()


def _exit_on(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def serve(settings: Settings) -> None:
    """Migrate, start the worker, serve the API until a signal, then stop the worker."""
    import uvicorn

    from core.db import migrate

    migrate()
    supervisor = WorkerSupervisor(worker_command(f"effdet-{os.getpid()}"))
    # uvicorn restores this handler after its graceful shutdown and re-raises the signal: we then exit
    # through `finally`, which stops the worker, instead of dying on SIGTERM's default action.
    signal.signal(signal.SIGTERM, _exit_on)
    config = uvicorn.Config("app.main:create_app", factory=True, host=settings.host, port=settings.port)
    server = uvicorn.Server(config)
    supervisor.start()
    try:
        _announce_when_started(server, f"http://{settings.host}:{settings.port}")
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()


def main() -> None:
    """Entry point of `effdet-service run` and `python -m app.runner`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve(settings)


if __name__ == "__main__":
    main()
