"""Prometheus metrics: what is counted, the hooks that count it, and the scrape.

Counters and histograms live in this process (or, with ``--workers N``, in
prometheus_client's multiprocess files, summed over the workers at each scrape:
a scrape reaches one worker, and per-worker counters would jump back and forth).
Deployment-wide values (active sessions, forwarding lag) are read from the
database at scrape time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from hsm import observe

if TYPE_CHECKING:
    from appliance.core import Appliance

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter(
    "coffre_http_requests", "HTTP requests by route template, method and status", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "coffre_http_request_duration_seconds",
    "HTTP request latency by route template and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HSM_OPERATIONS = Counter("coffre_hsm_operations", "HSM operations by kind", ["operation"])
HSM_ERRORS = Counter("coffre_hsm_operation_errors", "HSM operations that failed, by kind", ["operation"])
HSM_SECONDS = Histogram(
    "coffre_hsm_operation_duration_seconds",
    "HSM operation latency by kind",
    ["operation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0),
)
POOL_IN_USE = Gauge("coffre_hsm_pool_sessions_in_use", "HSM work sessions lent right now", multiprocess_mode="livesum")
POOL_MAX = Gauge("coffre_hsm_pool_sessions_max", "HSM work sessions allowed", multiprocess_mode="livesum")
HSM_RESETS = Counter("coffre_hsm_resets", "HSM session pool resets after a device failure")
LOGINS = Counter("coffre_logins", "Login steps by result (ok: password and PIN; failed: any refusal)", ["result"])
LOCKOUTS = Counter("coffre_lockouts", "Accounts locked after too many wrong PINs")
AUDIT_APPENDS = Counter("coffre_audit_appends", "Audit log entries appended")

FAILED_LOGINS = {"login.failed", "login.pin_failed", "login.refused"}


def _hsm_observer(operation: str, seconds: float, failed: bool) -> None:
    HSM_OPERATIONS.labels(operation).inc()
    HSM_SECONDS.labels(operation).observe(seconds)
    if failed:
        HSM_ERRORS.labels(operation).inc()


def _audit_observer(event: str) -> None:
    AUDIT_APPENDS.inc()
    if event == "login.ok":
        LOGINS.labels("ok").inc()
    elif event in FAILED_LOGINS:
        LOGINS.labels("failed").inc()
    elif event == "user.locked":
        LOCKOUTS.inc()


class PoolWatch:
    """Samples this process's HSM pool (after each request and at each scrape)."""

    def __init__(self, app: Appliance) -> None:
        self.pool = app.keystore.pool
        self._generation = self.pool.generation

    def sample(self) -> None:
        POOL_IN_USE.set(self.pool.sessions_in_use())
        POOL_MAX.set(self.pool.config.pool_size)
        generation = self.pool.generation
        if generation > self._generation:
            HSM_RESETS.inc(generation - self._generation)
            self._generation = generation


def install(app: Appliance) -> PoolWatch:
    """Hook the token operations and the audit log; return the pool sampler."""
    observe.set_observer(_hsm_observer)
    if _audit_observer not in app.audit.observers:
        app.audit.observers.append(_audit_observer)
    return PoolWatch(app)


class DeploymentCollector(Collector):
    """Values shared by every node, read from the database at scrape time."""

    def __init__(self, app: Appliance) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from appliance.auditops.forward import state
        from appliance.models import Session

        now = time.time()
        with self.app.db.read() as db:
            active = db.execute(
                select(func.count()).select_from(Session).where(Session.expires_at > self.app.clock())
            ).scalar_one()
        yield GaugeMetricFamily("coffre_sessions_active", "Unexpired sessions (all nodes)", value=active)
        fwd = state(self.app.db, self.app.settings.audit.forward, now)
        yield GaugeMetricFamily("coffre_audit_head_seq", "Sequence number of the last audit entry", value=fwd.head)
        yield GaugeMetricFamily(
            "coffre_audit_forward_lag_entries", "Audit entries not yet forwarded to the SIEM", value=fwd.lag
        )
        yield GaugeMetricFamily(
            "coffre_audit_forward_lag_seconds",
            "Age of the oldest audit entry not yet forwarded (0 when caught up)",
            value=fwd.oldest_unsent_age or 0.0,
        )
        from appliance.mail import outbox_state

        mail = outbox_state(self.app)
        yield GaugeMetricFamily("coffre_mail_queued", "E-mails waiting in the outbox", value=mail.pending)
        yield GaugeMetricFamily(
            "coffre_mail_failed", "E-mails given up on after every retry (all time)", value=mail.failed
        )
        yield GaugeMetricFamily(
            "coffre_mail_oldest_queued_seconds",
            "Age of the oldest e-mail waiting in the outbox (0 when empty)",
            value=mail.oldest_pending_age or 0.0,
        )
        yield GaugeMetricFamily(
            "coffre_audit_forward_failing", "1 when the last forwarding attempt failed", value=int(bool(fwd.last_error))
        )


def scrape(app: Appliance, watch: PoolWatch) -> bytes:
    """The text exposition: this process's (or every worker's) metrics, then the deployment's."""
    watch.sample()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        local = _generate(registry)
    else:
        local = _generate(REGISTRY)
    deployment = CollectorRegistry(auto_describe=False)
    deployment.register(DeploymentCollector(app))
    return local + _generate(deployment)


def prepare_multiprocess(data_dir: Any, workers: int) -> None:
    """Before workers start: with more than one, give them an empty shared directory."""
    if workers <= 1:
        return
    import shutil
    from pathlib import Path

    directory = Path(data_dir) / "metrics.d"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
