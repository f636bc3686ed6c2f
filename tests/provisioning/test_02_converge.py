"""The lab playbook converges (in the sandbox), a second run changes nothing,
and what it set up has the properties a security review asks for."""

from __future__ import annotations

import re
import stat

import pytest

from tests.provisioning.conftest import Converge
from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import (
    APP_PORT,
    APP_SOCKET,
    HTTP_PORT,
    HTTPS_PORT,
    LAB_SECRETS,
    RULESET_PATH,
    SERVER_CERT,
    UNIT_PATH,
    group_members,
    sandbox_ls,
    sandbox_user,
)


def test_first_run_converges(converged: Converge) -> None:
    assert converged.first.recap.get("failed") == 0, converged.first.tail()


def test_second_run_changes_nothing(converged: Converge) -> None:
    recap = converged.second.recap
    assert recap.get("failed") == 0, converged.second.tail()
    assert recap.get("changed") == 0, f"not idempotent, changed: {converged.second.changed_tasks()}"


def test_no_secret_in_playbook_output(sandbox: Sandbox, converged: Converge) -> None:
    for name in ("hsm_token_pin", "hsm_so_pin"):
        secret = sandbox.path(LAB_SECRETS / name).read_text().strip()
        assert len(secret) >= 16
        for run in (converged.first, converged.second):
            assert secret not in run.output, f"{name} leaked into the playbook output"


def _listeners(sandbox: Sandbox) -> list[tuple[str, int, str]]:
    """(address, port, process names) of every TCP listener in the sandbox."""
    out = sandbox.run(["ss", "-Hltnp"], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        host, _, port = fields[3].rpartition(":")
        found.append((host.strip("[]"), int(port), " ".join(fields[5:])))
    return found


def test_everything_listens_on_loopback_only(sandbox: Sandbox, converged: Converge) -> None:
    listeners = _listeners(sandbox)
    for port in (HTTPS_PORT, HTTP_PORT):
        hosts = {h for h, p, _ in listeners if p == port}
        assert hosts, f"nothing listens on {port}"
        assert hosts <= {"127.0.0.1", "::1"}, f"port {port} bound beyond loopback: {hosts}"


def test_coffre_listens_on_no_tcp_port(sandbox: Sandbox, converged: Converge) -> None:
    listeners = _listeners(sandbox)
    assert listeners, "ss saw no listener at all"
    assert all(p not in (APP_PORT, 8080) for _, p, _ in listeners), listeners
    # Only Apache listens on TCP: nothing else the playbook started (the lab uses SQLite).
    others = [entry for entry in listeners if '"apache2"' not in entry[2]]
    assert not others, others


def test_coffre_listens_on_its_unix_socket(sandbox: Sandbox, converged: Converge) -> None:
    out = sandbox.run(["ss", "-Hlxp"], check=True, capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if str(APP_SOCKET) in line]
    assert lines, out
    assert all("coffre" in line for line in lines), lines
    st = sandbox.path(APP_SOCKET).stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert sandbox_ls(sandbox, APP_SOCKET) == (0o660, "coffre", "www-data")
    assert sandbox_ls(sandbox, APP_SOCKET.parent) == (0o2750, "coffre", "www-data")
    # www-data is Apache's user; coffre is not in Apache's group (it owns the socket instead).
    assert "coffre" not in group_members(sandbox, "www-data")


def test_only_coffre_and_apache_can_open_the_socket(sandbox: Sandbox, converged: Converge) -> None:
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n print('refused')\nelse:\n print('connected')\n"
    )
    outcome = {}
    for user in ("nobody", "www-data", "coffre"):
        run = sandbox.run(
            ["runuser", "-u", user, "--", "/usr/bin/python3", "-c", probe, str(APP_SOCKET)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        outcome[user] = run.stdout.strip()
    assert outcome == {"nobody": "refused", "www-data": "connected", "coffre": "connected"}


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
def test_file_ownership_and_modes(
    sandbox: Sandbox, converged: Converge, path: str, expected: tuple[int, str, str]
) -> None:
    mode, owner, group = sandbox_ls(sandbox, path)
    assert (mode, owner, group) == expected, f"{path}: {oct(mode)} {owner}:{group}"


def test_config_points_at_the_token_and_pin_file(sandbox: Sandbox, converged: Converge) -> None:
    text = sandbox.path("/etc/coffre/coffre.toml").read_text()
    assert 'pin_file = "/etc/coffre/hsm.pin"' in text
    assert 'module = "/usr/lib/softhsm/libsofthsm2.so"' in text
    assert f'unix_socket = "{APP_SOCKET}"' in text
    assert 'trusted_proxies = ["unix"]' in text
    assert not re.search(r"^(host|port) =", text, re.MULTILINE), text
    pin = sandbox.path(LAB_SECRETS / "hsm_token_pin").read_text().strip()
    assert pin not in text


def test_unit_is_hardened(sandbox: Sandbox, converged: Converge) -> None:
    unit = sandbox.path(UNIT_PATH).read_text()
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
    assert f"--unix-socket {APP_SOCKET}" in unit
    assert "--port" not in unit and "--host" not in unit
    assert "RuntimeDirectory=coffre" in unit and "RuntimeDirectoryMode=2750" in unit
    assert "ExecStartPre=+/usr/bin/chgrp www-data /run/coffre" in unit


def test_unit_passes_systemd_analyze_verify(sandbox: Sandbox, converged: Converge) -> None:
    if not sandbox.path("/usr/bin/systemd-analyze").exists():
        pytest.skip("systemd-analyze is not installed on this host")
    proc = sandbox.run(["systemd-analyze", "verify", str(UNIT_PATH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruleset_passes_nft_check(sandbox: Sandbox, converged: Converge) -> None:
    assert sandbox.path("/usr/sbin/nft").exists(), "nftables is not installed (provisioning/ci-deps.sh installs it)"
    proc = sandbox.run(["nft", "-c", "-f", str(RULESET_PATH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = sandbox.path(RULESET_PATH).read_text()
    assert "policy drop;" in text
    assert f"tcp dport {{ {HTTP_PORT}, {HTTPS_PORT} }}" in text
    assert "tcp dport 22 " in text


def test_ruleset_not_applied_unless_asked(sandbox: Sandbox, converged: Converge) -> None:
    proc = sandbox.run(["nft", "list", "table", "inet", "coffre"], capture_output=True, text=True)
    assert proc.returncode != 0, "firewall_apply is false, yet the coffre table is loaded"


def test_ruleset_loads_in_a_scratch_network_namespace(sandbox: Sandbox, converged: Converge) -> None:
    """Load the rendered ruleset for real, but in a namespace of the test's own
    (inside the sandbox, never on the host), and read back what the kernel accepted."""
    ns = "coffre-fw"
    made = sandbox.run(["ip", "netns", "add", ns], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        load = sandbox.run(["ip", "netns", "exec", ns, "nft", "-f", str(RULESET_PATH)], capture_output=True, text=True)
        assert load.returncode == 0, load.stderr
        listing = sandbox.run(
            ["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "coffre"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "policy drop" in listing
        assert f"{HTTPS_PORT}" in listing and f"{HTTP_PORT}" in listing
    finally:
        sandbox.run(["ip", "netns", "delete", ns], capture_output=True)


def test_service_runs_without_privileges(sandbox: Sandbox, converged: Converge) -> None:
    if sandbox.path("/run/systemd/system").is_dir():
        pytest.skip("systemd in the sandbox: the unit's sandbox applies")
    pid = int(sandbox.path("/run/coffre/supervise.pid").read_text().strip())
    status = sandbox.path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uid = int(fields["Uid"].split()[0])
    assert sandbox_user(sandbox, uid) == "coffre"
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapBnd"].strip(), 16) == 0
    assert int(fields["CapEff"].strip(), 16) == 0


def test_lab_certificate_profile(sandbox: Sandbox, converged: Converge) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert = x509.load_pem_x509_certificate(sandbox.path(SERVER_CERT).read_bytes())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days <= 366
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert key.curve.name == "secp256r1"
    else:
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 3072
    assert sandbox.path(SERVER_CERT).stat().st_mode & 0o444
