"""A daemon thread that runs one round of background work now and then every few seconds (recovery sweeps,
webhook deliveries), in the worker's main process; a failed round is logged and the next one tries again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs `round` now and every `interval` seconds until stopped."""

    def __init__(self, name: str, interval: float, round: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self.round = round
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"effdet-{name}", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.round()
            except Exception:  # e.g. the database is not migrated yet or briefly unreachable
                log.warning("%s round failed; retrying in %.0f s", self.name, self.interval, exc_info=True)
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float = 5) -> None:
        """Ask the thread to stop and wait for its round to end (up to `interval` + `grace` seconds)."""
        self._stop.set()
        self._thread.join(timeout=self.interval + grace)
