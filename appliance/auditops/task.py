"""The background task each web process starts: forwarding and hourly anchors.

A daemon thread (the work is blocking socket, database and token calls) that
wakes every second. Every node runs one; the lease and the anchor row make sure
only one of them sends and anchors at a time. Failures are logged and retried
with a growing back-off; nothing here runs in a request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from appliance.auditops.anchor import maybe_anchor
from appliance.auditops.destination import SendFailed
from appliance.auditops.forward import Forwarder

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("coffre.audit.task")
POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


class AuditTask:
    def __init__(self, app: Appliance, poll: float = POLL_SECONDS) -> None:
        self.app = app
        self.poll = poll
        settings = app.settings.audit
        self.forwarder = (
            Forwarder(app.db, settings.forward, time.time, settings.ca_file, settings.forward_batch)
            if settings.forward
            else None
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = 0.0
        self.started = time.time()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="coffre-audit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.forwarder is not None:
            self.forwarder.close()

    def _run(self) -> None:
        while not self._stop.wait(self.poll + self._backoff):
            self.round()

    def round(self) -> None:
        """One pass: anchor if due, then forward until caught up."""
        interval = self.app.settings.audit.anchor_interval_seconds
        try:
            if interval > 0:
                maybe_anchor(self.app, interval, self.started)
            if self.forwarder is not None:
                self.forwarder.catch_up(lambda: not self._stop.is_set())
            self._backoff = 0.0
        except SendFailed:
            self._backoff = min(max(self._backoff * 2, 1.0), MAX_BACKOFF_SECONDS)
        except Exception:
            log.exception("audit background task failed; retrying")
            self._backoff = min(max(self._backoff * 2, 1.0), MAX_BACKOFF_SECONDS)
