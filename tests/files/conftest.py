"""Fixtures for files: an appliance per store ("filesystem", "database") on
SQLite and PostgreSQL, 64 KiB chunks so that multi-chunk cases stay small."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance import schema
from appliance.config import FilesSettings
from appliance.core import Appliance
from hsm.config import HsmConfig
from tests.conftest import dismantle, make_settings
from tests.support import FakeClock, new_user
from web.app import create_app

CHUNK = 64 * 1024


def build(database_url: str, hsm: HsmConfig, data_dir: Path, clock: FakeClock, **files: Any) -> Appliance:
    settings = make_settings(database_url, hsm, data_dir)
    settings = dataclasses.replace(settings, files=FilesSettings(chunk_kib=64, gc_interval_seconds=0, **files))
    app = Appliance(settings, clock=clock)
    schema.upgrade(app.db.engine)
    app.audit.ensure_genesis()
    return app


@pytest.fixture(params=["filesystem", "database"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def files_app(
    database_url: str, hsm_config: HsmConfig, tmp_path: Path, clock: FakeClock, store: str
) -> Iterator[Appliance]:
    app = build(database_url, hsm_config, tmp_path, clock, store=store)
    try:
        yield app
    finally:
        dismantle(app)


@pytest.fixture
def fs_app(sqlite_url: str, hsm_config: HsmConfig, tmp_path: Path, clock: FakeClock) -> Iterator[Appliance]:
    """SQLite and the filesystem store: for tests that are not about storage."""
    app = build(sqlite_url, hsm_config, tmp_path, clock)
    try:
        yield app
    finally:
        dismantle(app)


@pytest.fixture
def fclient(files_app: Appliance) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(files_app)) as c:
        yield c


@pytest.fixture
def fs_client(fs_app: Appliance) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(fs_app)) as c:
        yield c


def owner_with_vault(client: Any, app: Appliance, email: str = "owner@example.com") -> tuple[dict[str, str], str]:
    headers = new_user(client, app, email)
    r = client.post("/api/v1/vaults", json={"name": "Contracts"}, headers=headers)
    assert r.status_code == 201, r.text
    return headers, r.json()["id"]


def upload(client: Any, headers: dict[str, str], vault_id: str, name: str, body: bytes) -> Any:
    return client.post(
        f"/api/v1/vaults/{vault_id}/files",
        params={"name": name},
        content=body,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
