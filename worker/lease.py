"""The heartbeat thread that keeps a lease fresh while a task runs (the lease itself: `core.states`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class Heartbeat:
    """A daemon thread calling `renew` every `interval` seconds while a task runs (training, evaluation and
    export alike), so a long first step or a slow export never looks like a dead worker; `renew` answering
    False means the lease was lost, and `lost` is set."""

    def __init__(self, name: str, renew: Callable[[], bool], interval: float) -> None:
        self.name, self.renew, self.interval = name, renew, interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.renew():
                    log.warning("%s: lease lost to another worker; stopping", self.name)
                    self.lost.set()
                    return
            except Exception:  # a database hiccup: try again next beat, the lease is long enough
                log.warning("%s: heartbeat failed", self.name, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
