"""Fixtures for the browser tests: one appliance served for the whole UI suite, one Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.ui.support import CHROMIUM, Lab, chromium_or_reason, start_lab

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
# Assertions wait up to 15 s (not 5): CI runs the browser beside the rest of the suite on 2 cores.
expect.set_options(timeout=15000)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    started = start_lab(Path(tmp_path_factory.mktemp("ui-lab")))
    try:
        yield started
    finally:
        started.server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = chromium_or_reason()
    if reason:
        pytest.fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
