"""TLS probes with sslyze against the converged Apache (in the sandbox), trusting the lab CA."""

from __future__ import annotations

import json
import ssl
import subprocess
from typing import Any

import pytest

from tests.provisioning.conftest import Converge
from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import HTTPS_PORT, LAB_CA, SERVER_NAME, TOOLS, ansible_env

AEAD_FS_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
AEAD_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


class Scan:
    def __init__(self, proc: subprocess.CompletedProcess[str], report: dict[str, Any]) -> None:
        self.proc = proc
        self.report = report
        self.server = report["server_scan_results"][0]
        assert self.server["scan_status"] == "COMPLETED", self.server
        self.results = self.server["scan_result"]

    def accepted(self, scan: str) -> list[str]:
        attempt = self.results[scan]
        assert attempt["status"] == "COMPLETED", f"{scan}: {attempt}"
        return [s["cipher_suite"]["name"] for s in attempt["result"]["accepted_cipher_suites"]]


@pytest.fixture(scope="module")
def scan(sandbox: Sandbox, converged: Converge) -> Scan:
    out = "/tmp/coffre-sslyze-scan.json"  # inside the sandbox
    proc = sandbox.run(
        [
            str(TOOLS / "sslyze"),
            "--mozilla_config=intermediate",
            f"--certinfo_ca_file={LAB_CA}",  # a path inside the sandbox, where sslyze runs
            f"--json_out={out}",
            f"{SERVER_NAME}:{HTTPS_PORT}{{127.0.0.1}}",
        ],
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sandbox.path(out).exists(), proc.stdout + proc.stderr
    return Scan(proc, json.loads(sandbox.path(out).read_text()))


LEGACY = ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"]


@pytest.mark.parametrize("scan_name", LEGACY)
def test_legacy_protocols_refused(scan: Scan, scan_name: str) -> None:
    assert scan.accepted(scan_name) == []


def test_tls12_accepts_only_aead_forward_secret_suites(scan: Scan) -> None:
    accepted = set(scan.accepted("tls_1_2_cipher_suites"))
    assert accepted, "TLS 1.2 refused"
    assert accepted <= AEAD_FS_TLS12, accepted - AEAD_FS_TLS12


def test_tls13_accepted_with_aead_suites(scan: Scan) -> None:
    accepted = set(scan.accepted("tls_1_3_cipher_suites"))
    assert accepted, "TLS 1.3 refused"
    assert accepted <= AEAD_TLS13


def test_mozilla_intermediate_compliance(scan: Scan) -> None:
    text = scan.proc.stdout
    assert scan.proc.returncode == 0, text[-3000:]
    assert f"{SERVER_NAME}:{HTTPS_PORT}: OK - Compliant" in text, text[-3000:]


def test_certificate_chain_trusted_by_lab_ca(scan: Scan) -> None:
    deployments = scan.results["certificate_info"]["result"]["certificate_deployments"]
    assert deployments
    deployment = deployments[0]
    assert deployment["received_chain_has_valid_order"] is True
    assert deployment["received_chain_contains_anchor_certificate"] is False
    custom = [r for r in deployment["path_validation_results"] if r["trust_store"]["path"] == str(LAB_CA)]
    assert custom, deployment["path_validation_results"]
    assert custom[0]["was_validation_successful"] is True, custom[0]


def test_no_compression(scan: Scan) -> None:
    assert scan.results["tls_compression"]["result"]["supports_compression"] is False


def test_no_session_tickets(sandbox: Sandbox, converged: Converge) -> None:
    ctx = ssl.create_default_context(cafile=str(sandbox.path(LAB_CA)))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        sandbox.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        assert tls.version() == "TLSv1.2"
        session = tls.session
        assert session is not None
        assert not session.has_ticket, "TLS session tickets are on"


def test_secure_renegotiation_and_no_known_flaws(scan: Scan) -> None:
    assert scan.results["heartbleed"]["result"]["is_vulnerable_to_heartbleed"] is False
    assert scan.results["openssl_ccs_injection"]["result"]["is_vulnerable_to_ccs_injection"] is False
    reneg = scan.results["session_renegotiation"]["result"]
    assert reneg["is_vulnerable_to_client_renegotiation_dos"] is False
    assert scan.results["tls_fallback_scsv"]["result"]["supports_fallback_scsv"] is True
