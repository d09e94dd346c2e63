"""What the dashboard tests share: Debian's chromium (installed when missing, never skipped) and an app served by
uvicorn in this process, so a browser reaches the same app (and database) the test drives."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.e2e.conftest import free_port

CHROMIUM = Path("/usr/bin/chromium")


def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing; the test fails (never skips) without it."""
    if not CHROMIUM.exists():
        subprocess.run(["apt-get", "update"], check=False, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=False, timeout=600)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing and `apt-get install -y chromium` did not install it")
    return CHROMIUM


@contextmanager
def served(app: Any) -> Iterator[str]:
    """The URL where uvicorn serves `app` on a free port, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
