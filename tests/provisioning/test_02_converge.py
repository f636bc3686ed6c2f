"""The lab playbook converges, a second run changes nothing, and what it set up
has the properties a security review asks for."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.provisioning.conftest import Converge
from tests.provisioning.support import (
    APP_PORT,
    HTTP_PORT,
    HTTPS_PORT,
    LAB_SECRETS,
    RULESET_PATH,
    SERVER_CERT,
    UNIT_PATH,
)


def test_first_run_converges(converged: Converge) -> None:
    assert converged.first.recap.get("failed") == 0, converged.first.tail()


def test_second_run_changes_nothing(converged: Converge) -> None:
    recap = converged.second.recap
    assert recap.get("failed") == 0, converged.second.tail()
    assert recap.get("changed") == 0, f"not idempotent, changed: {converged.second.changed_tasks()}"


def test_no_secret_in_playbook_output(converged: Converge) -> None:
    for name in ("hsm_token_pin", "hsm_so_pin"):
        secret = (LAB_SECRETS / name).read_text().strip()
        assert len(secret) >= 16
        for run in (converged.first, converged.second):
            assert secret not in run.output, f"{name} leaked into the playbook output"


def _listeners() -> list[tuple[str, int]]:
    out = subprocess.run(["ss", "-Hltn"], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        found.append((host.strip("[]"), int(port)))
    return found


def test_everything_listens_on_loopback_only(converged: Converge) -> None:
    listeners = _listeners()
    for port in (HTTPS_PORT, HTTP_PORT, APP_PORT):
        hosts = {h for h, p in listeners if p == port}
        assert hosts, f"nothing listens on {port}"
        assert hosts <= {"127.0.0.1", "::1"}, f"port {port} bound beyond loopback: {hosts}"


def _mode(path: Path) -> tuple[int, str, str]:
    st = path.stat()
    import grp

    return stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc/ssl/coffre/server.key", (0o600, "root", "root")),
        ("/etc/coffre/pki/ca.key", (0o600, "root", "root")),
        ("/etc/coffre/hsm.pin", (0o400, "coffre", "coffre")),
        ("/etc/coffre/coffre.toml", (0o640, "root", "coffre")),
        ("/etc/coffre", (0o750, "root", "coffre")),
        ("/var/lib/coffre", (0o700, "coffre", "coffre")),
        ("/var/lib/coffre/tokens", (0o700, "coffre", "coffre")),
    ],
)
def test_file_ownership_and_modes(converged: Converge, path: str, expected: tuple[int, str, str]) -> None:
    mode, owner, group = _mode(Path(path))
    assert (mode, owner, group) == expected, f"{path}: {oct(mode)} {owner}:{group}"


def test_config_points_at_the_token_and_pin_file(converged: Converge) -> None:
    text = Path("/etc/coffre/coffre.toml").read_text()
    assert 'pin_file = "/etc/coffre/hsm.pin"' in text
    assert 'module = "/usr/lib/softhsm/libsofthsm2.so"' in text
    assert f"port = {APP_PORT}" in text
    assert 'host = "127.0.0.1"' in text
    pin = (LAB_SECRETS / "hsm_token_pin").read_text().strip()
    assert pin not in text


def test_unit_is_hardened(converged: Converge) -> None:
    unit = UNIT_PATH.read_text()
    for directive in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/coffre",
        "User=coffre",
    ):
        assert directive in unit, directive
    assert re.search(r"^CapabilityBoundingSet=$", unit, re.MULTILINE), "capability bounding set not empty"
    rw = re.findall(r"^ReadWritePaths=(.*)$", unit, re.MULTILINE)
    assert rw == ["/var/lib/coffre"], rw


def test_unit_passes_systemd_analyze_verify(converged: Converge) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed on this host")
    proc = subprocess.run([tool, "verify", str(UNIT_PATH)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruleset_passes_nft_check(converged: Converge) -> None:
    nft = shutil.which("nft")
    assert nft, "nftables is not installed (provisioning/ci-deps.sh installs it)"
    proc = subprocess.run([nft, "-c", "-f", str(RULESET_PATH)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    text = RULESET_PATH.read_text()
    assert "policy drop;" in text
    assert f"tcp dport {{ {HTTP_PORT}, {HTTPS_PORT} }}" in text
    assert "tcp dport 22 " in text


def test_ruleset_not_applied_unless_asked(converged: Converge) -> None:
    proc = subprocess.run(["nft", "list", "table", "inet", "coffre"], capture_output=True, text=True, check=False)
    assert proc.returncode != 0, "firewall_apply is false, yet the coffre table is loaded on the host"


def test_ruleset_loads_in_a_scratch_network_namespace(converged: Converge) -> None:
    """Load the rendered ruleset for real, but in a namespace of the test's own
    (never on the host), and read back what the kernel accepted."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed")
    ns = f"coffre-fw-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        load = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", str(RULESET_PATH)], capture_output=True, text=True, check=False
        )
        assert load.returncode == 0, load.stderr
        listing = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "coffre"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "policy drop" in listing
        assert f"{HTTPS_PORT}" in listing and f"{HTTP_PORT}" in listing
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def test_service_runs_without_privileges(converged: Converge) -> None:
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd host: the unit's sandbox applies")
    pid = int(Path("/run/coffre/supervise.pid").read_text().strip())
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uid = int(fields["Uid"].split()[0])
    assert pwd.getpwuid(uid).pw_name == "coffre"
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapBnd"].strip(), 16) == 0
    assert int(fields["CapEff"].strip(), 16) == 0


def test_lab_certificate_profile(converged: Converge) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert = x509.load_pem_x509_certificate(SERVER_CERT.read_bytes())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days <= 366
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert key.curve.name == "secp256r1"
    else:
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 3072
    assert os.access(SERVER_CERT, os.R_OK)
