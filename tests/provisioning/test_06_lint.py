"""Static checks of provisioning/: ansible-lint (production profile) and syntax.

They run in the sandbox too: ansible-lint writes caches under the home directory.
"""

from __future__ import annotations

from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import PROVISIONING, SITE, TOOLS, ansible_env


def test_ansible_lint_production_profile(sandbox: Sandbox) -> None:
    proc = sandbox.run(
        [str(TOOLS / "ansible-lint"), "--profile", "production", "--offline", "--nocolor"],
        cwd=PROVISIONING,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]


def test_production_example_inventory_parses_and_syntax_checks(sandbox: Sandbox) -> None:
    inventory = PROVISIONING / "inventories" / "production.example" / "hosts.yml"
    proc = sandbox.run(
        [str(TOOLS / "ansible-playbook"), "-i", str(inventory), "--syntax-check", str(SITE)],
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = sandbox.run(
        [str(TOOLS / "ansible-inventory"), "-i", str(inventory), "--list"],
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "coffre-a.example.internal" in hosts
