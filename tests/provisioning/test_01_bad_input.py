"""Bad input fails in the preflight play, before anything is changed.

These run first (file order), in the session's sandbox before the converge, so
they also prove that a failed run leaves the (sandboxed) machine as it was.
"""

from __future__ import annotations

import socket

import pytest

from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import run_playbook


def _closed_port(sandbox: Sandbox) -> int:
    with sandbox.network(), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CASES = {
    "missing certificate file": (
        {
            "certificates_mode": "provided",
            "certificates_provided_cert": "/nonexistent/coffre/server.crt",
            "certificates_provided_key": "/nonexistent/coffre/server.key",
        },
        "provided certificate material is missing",
    ),
    "nonexistent PKCS#11 module": (
        {"hsm_mode": "pkcs11", "hsm_pkcs11_module": "/usr/lib/nonexistent/libvendor-pkcs11.so"},
        "PKCS#11 module '/usr/lib/nonexistent/libvendor-pkcs11.so' does not exist",
    ),
    "unreachable PostgreSQL": (
        {
            "postgresql_enabled": True,
            "postgresql_manage_server": False,
            "postgresql_host": "127.0.0.1",
            "postgresql_port": "__closed__",
            "postgresql_password": "a-long-enough-password",
            "postgresql_connect_timeout": 2,
        },
        "is unreachable",
    ),
    "empty token PIN": ({"hsm_token_pin": ""}, "hsm_token_pin is empty or invalid"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_before_any_change(sandbox: Sandbox, case: str) -> None:
    extra, message = CASES[case]
    extra = {k: (_closed_port(sandbox) if v == "__closed__" else v) for k, v in extra.items()}
    run = run_playbook(sandbox, extra_vars=extra)
    assert run.rc != 0, f"{case}: the playbook should have failed\n{run.tail()}"
    assert message in run.output, f"{case}: expected {message!r} in the output\n{run.tail()}"
    recap = run.recap
    assert recap.get("failed") == 1, recap
    assert recap.get("changed") == 0, f"{case}: something changed before the failure: {run.changed_tasks()}"
    assert "PLAY [Provision the Coffre appliance]" not in run.output, "failure came after provisioning started"
