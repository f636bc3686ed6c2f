"""HTTP behaviour of the converged Apache (in the sandbox): redirect, headers,
methods, limits."""

from __future__ import annotations

import http.client
import ssl

import pytest

from tests.provisioning.conftest import Converge
from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import HTTP_PORT, HTTPS_PORT, LAB_CA, SERVER_NAME

HSTS = "max-age=63072000; includeSubDomains"


@pytest.fixture(scope="module")
def box(sandbox: Sandbox, converged: Converge) -> Sandbox:
    return sandbox


def _tls(box: Sandbox) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(box.path(LAB_CA)))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _https(box: Sandbox, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    conn = http.client.HTTPSConnection("127.0.0.1", HTTPS_PORT, context=_tls(box), timeout=30)
    conn._create_connection = box.create_connection  # type: ignore[attr-defined]
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp, data
    finally:
        conn.close()


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_http_redirects_permanently_to_https(box: Sandbox, method: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=30)
    conn._create_connection = box.create_connection  # type: ignore[attr-defined]
    try:
        conn.request(method, "/api/v1/items/x?q=1", headers={"Host": SERVER_NAME})
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status in (301, 308)
    assert resp.getheader("Location") == f"https://{SERVER_NAME}:{HTTPS_PORT}/api/v1/items/x?q=1"


@pytest.mark.parametrize("path", ["/healthz", "/no/such/page", "/api/v1/vaults"])
def test_security_headers_on_every_response(box: Sandbox, path: str) -> None:
    resp, _ = _https(box, "GET", path)
    headers = resp.msg
    assert headers.get_all("Strict-Transport-Security") == [HSTS]
    csp = headers.get_all("Content-Security-Policy")
    assert csp and len(csp) == 1, csp
    from web.app import CSP, PERMISSIONS_POLICY

    assert csp[0] == CSP  # exactly what the app sends: Apache must not weaken the UI's policy
    assert headers.get_all("Permissions-Policy") == [PERMISSIONS_POLICY]
    assert headers.get_all("X-Content-Type-Options") == ["nosniff"]
    assert headers.get_all("Referrer-Policy") == ["no-referrer"]
    assert headers.get_all("Cross-Origin-Opener-Policy") == ["same-origin"]
    assert headers.get_all("X-Frame-Options") == ["DENY"]


def test_health_through_apache(box: Sandbox) -> None:
    resp, body = _https(box, "GET", "/healthz")
    assert resp.status == 200, body


def test_api_responses_are_not_cached(box: Sandbox) -> None:
    resp, _ = _https(box, "GET", "/api/v1/vaults")
    assert resp.status in (401, 403), resp.status
    assert resp.msg.get_all("Cache-Control") == ["no-store"]


def test_server_header_has_no_version(box: Sandbox) -> None:
    resp, body = _https(box, "GET", "/no/such/page")
    assert resp.getheader("Server") == "Apache"
    assert b"Apache/" not in body


def test_trace_is_refused(box: Sandbox) -> None:
    resp, _ = _https(box, "TRACE", "/")
    assert resp.status == 405


def test_oversized_header_is_refused(box: Sandbox) -> None:
    resp, _ = _https(box, "GET", "/healthz", headers={"X-Padding": "a" * 10000})
    assert 400 <= resp.status < 500, resp.status


def test_too_many_headers_are_refused(box: Sandbox) -> None:
    resp, _ = _https(box, "GET", "/healthz", headers={f"X-H{i}": "x" for i in range(120)})
    assert 400 <= resp.status < 500, resp.status


def test_large_body_refused_outside_upload_paths(box: Sandbox) -> None:
    body = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    resp, _ = _https(box, "POST", "/api/v1/auth/login", headers={"Content-Type": "application/json"}, body=body)
    assert resp.status == 413, resp.status


def test_plain_http_on_https_port_is_not_served(box: Sandbox) -> None:
    with box.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = s.recv(4096)
    assert b'{"status"' not in data
