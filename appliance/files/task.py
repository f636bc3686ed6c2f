"""The periodic file work of each web process: the transfer sweeper (expiry, crypto-shred)
and ``gc`` of killed uploads. Every node may run it: each step is
idempotent. Failures are logged and retried at the next interval."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("coffre.files.task")


class FilesTask:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.steps: list[Callable[[], object]] = []
        from appliance.files.gc import collect
        from appliance.transfers.shred import sweep

        self.steps.append(lambda: sweep(app))
        self.steps.append(lambda: collect(app))

    def start(self) -> None:
        if self.app.settings.files.gc_interval_seconds and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="coffre-files", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        interval = self.app.settings.files.gc_interval_seconds
        # Nodes started together do not all sweep at the same moment.
        while not self._stop.wait(interval * random.uniform(0.9, 1.1)):
            self.round()

    def round(self) -> None:
        for step in self.steps:
            try:
                step()
            except Exception:
                log.exception("periodic file work failed; retried at the next interval")
