"""/metrics: who may scrape it, what it counts (parsed with prometheus_client's
parser), and with --workers 2 the workers' counters summed."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time

import httpx
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from appliance.config import MetricsSettings
from tests.support import COFFRE, Server, free_port, init_data_dir, new_user
from web.app import create_app

TOKEN = "metrics-token-" + "x" * 24


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_client(app, tmp_path):
    token_file = tmp_path / "metrics.token"
    token_file.write_text(TOKEN + "\n")
    app.settings = dataclasses.replace(app.settings, metrics=MetricsSettings(token_file=str(token_file)))
    with TestClient(create_app(app)) as client:
        yield client


def _scrape(client) -> dict:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return _samples(r.text)


def test_refused_without_the_token_from_a_non_loopback_peer(metrics_client):
    assert metrics_client.get("/metrics").status_code == 404
    assert (
        metrics_client.get("/metrics", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 404
    )
    assert metrics_client.get("/metrics", headers={"Authorization": TOKEN}).status_code == 404


def test_counts_requests_logins_hsm_operations_and_audit(metrics_client, app):
    before = _scrape(metrics_client)
    new_user(metrics_client, app, "m@example.com")
    r = metrics_client.post("/api/v1/auth/login", json={"email": "m@example.com", "password": "not-the-password"})
    assert r.status_code == 401
    assert metrics_client.get("/no/such/page").status_code == 404
    after = _scrape(metrics_client)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    login = {"route": "/api/v1/auth/login", "method": "POST"}
    assert delta("coffre_http_requests_total", status="200", **login) == 1
    assert delta("coffre_http_requests_total", status="401", **login) == 1
    assert delta("coffre_http_request_duration_seconds_count", **login) == 2
    assert delta("coffre_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta("coffre_logins_total", result="ok") == 1
    assert delta("coffre_logins_total", result="failed") == 1
    assert delta("coffre_audit_appends_total") >= 5
    assert delta("coffre_hsm_operations_total", operation="mac") > 0
    assert delta("coffre_hsm_operations_total", operation="generate_keypair") == 1
    assert delta("coffre_hsm_operation_duration_seconds_count", operation="open_private_key") >= 1
    assert _value(after, "coffre_sessions_active") == 1
    assert _value(after, "coffre_hsm_pool_sessions_max") >= 1
    assert _value(after, "coffre_hsm_pool_sessions_in_use") >= 0
    assert ("coffre_hsm_resets_total", ()) in after
    assert _value(after, "coffre_audit_forward_lag_entries") == 0  # not forwarding
    assert _value(after, "coffre_audit_head_seq") >= 5


def test_lockout_is_counted(metrics_client, app):
    from tests.support import STRONG_PASSWORD, enroll, invite

    assert enroll(metrics_client, invite(app, "l@example.com")).status_code == 201
    before = _scrape(metrics_client)
    for _ in range(app.settings.security.max_pin_failures):
        r = metrics_client.post("/api/v1/auth/login", json={"email": "l@example.com", "password": STRONG_PASSWORD})
        if r.status_code != 200:
            break
        metrics_client.post("/api/v1/auth/unlock", json={"login_ticket": r.json()["login_ticket"], "pin": "000000"})
    after = _scrape(metrics_client)
    assert _value(after, "coffre_lockouts_total") - _value(before, "coffre_lockouts_total") == 1


def test_loopback_peers_scrape_a_real_server_forwarded_requests_do_not(tmp_path):
    config = init_data_dir(tmp_path / "data")
    server = Server(config, tmp_path / "serve.log").start()
    try:
        r = httpx.get(server.url + "/metrics")
        assert r.status_code == 200
        names = {f.name for f in text_string_to_metric_families(r.text)}
        assert {"coffre_http_requests", "coffre_hsm_operations", "coffre_sessions_active"} <= names
        assert httpx.get(server.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    finally:
        server.stop()


def test_workers_share_their_counters(tmp_path):
    data = tmp_path / "data"
    config = init_data_dir(data)
    port = free_port()
    env = {**os.environ, "COFFRE_CONFIG": str(config)}
    env.pop("SOFTHSM2_CONF", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [COFFRE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"], stdout=log, stderr=log, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.3)
        for _ in range(40):  # new connections: spread over both workers
            assert httpx.get(url + "/healthz").status_code == 200
        assert (data / "metrics.d").is_dir() and any((data / "metrics.d").iterdir())
        totals = set()
        for _ in range(6):
            samples = _samples(httpx.get(url + "/metrics").text)
            totals.add(_value(samples, "coffre_http_requests_total", route="/healthz", method="GET", status="200"))
        # Every scrape (whichever worker answers) sees the sum over both workers.
        assert totals == {41.0} or (len(totals) == 1 and min(totals) >= 41)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
