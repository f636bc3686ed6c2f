"""Fixtures of the provisioning tests: one converge of this host per session.

The converge runs the lab playbook twice (the second run must change nothing)
and everything it started is stopped at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.provisioning.support import PlaybookRun, run_playbook, snapshot_checkout, stop_everything, unsupported_reason


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


@pytest.fixture(scope="session")
def checkout_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_checkout(tmp_path_factory.mktemp("coffre-checkout"))


@pytest.fixture(scope="session")
def converged(checkout_snapshot: Path) -> Iterator[Converge]:
    try:
        source = {"appliance_source": str(checkout_snapshot)}
        first = run_playbook(extra_vars=source)
        assert first.rc == 0, f"first run failed:\n{first.tail()}"
        second = run_playbook(extra_vars=source)
        assert second.rc == 0, f"second run failed:\n{second.tail()}"
        yield Converge(first, second)
    finally:
        stop_everything()
