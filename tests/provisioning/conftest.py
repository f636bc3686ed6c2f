"""Fixtures of the provisioning tests: one sandbox and one converge per session.

Everything runs in a sandbox (tests/provisioning/sandbox.py), never on this
host: the converge runs the lab playbook twice inside it (the second run must
change nothing), and closing the sandbox at the end of the session kills every
process it started and drops every file it wrote. The host's state is
snapshotted before the sandbox exists and compared after it is gone; any
difference fails the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.provisioning import host_state
from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import (
    LAB_SECRETS,
    PlaybookRun,
    run_playbook,
    snapshot_checkout,
    unsupported_reason,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = unsupported_reason()
    if reason is None:
        return
    for item in items:
        if "tests/provisioning" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Converge:
    first: PlaybookRun
    second: PlaybookRun


@dataclass
class HostBaseline:
    before: dict[str, object]


@pytest.fixture(scope="session")
def host_baseline() -> Iterator[HostBaseline]:
    """The host as the tests found it; checked again once the sandbox is gone."""
    baseline = HostBaseline(host_state.snapshot((LAB_SECRETS,)))
    yield baseline
    changed = host_state.differences(baseline.before, host_state.snapshot((LAB_SECRETS,)))
    assert not changed, "the provisioning tests changed the host:\n" + "\n".join(changed)


@pytest.fixture(scope="session")
def sandbox(
    host_baseline: HostBaseline, checkout_snapshot: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandbox]:
    # The checkout snapshot is taken first: the sandbox sees the host's files as
    # they were when it started.
    box = Sandbox(tmp_path_factory.mktemp("sandbox"))
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="session")
def checkout_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_checkout(tmp_path_factory.mktemp("coffre-checkout"))


@pytest.fixture(scope="session")
def converged(sandbox: Sandbox, checkout_snapshot: Path) -> Converge:
    source = {"appliance_source": str(checkout_snapshot)}
    first = run_playbook(sandbox, extra_vars=source)
    assert first.rc == 0, f"first run failed:\n{first.tail()}"
    second = run_playbook(sandbox, extra_vars=source)
    assert second.rc == 0, f"second run failed:\n{second.tail()}"
    return Converge(first, second)
