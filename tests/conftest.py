"""Shared fixtures: one real SoftHSM2 token per test run, a fresh database per test
(SQLite always; PostgreSQL too where one answers), an injectable clock."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance import schema
from appliance.config import CryptoSettings, SecuritySettings, ServerSettings, Settings
from appliance.core import Appliance
from appliance.setup import InitReport, create_lab_token, find_softhsm
from hsm.config import HsmConfig
from hsm.keystore import Keystore
from tests.support import FakeClock, postgres_url_or_reason
from web.app import create_app

TEST_TOKEN_LABEL = "coffre-test"


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("softhsm")


@pytest.fixture(scope="session")
def hsm_config(token_dir: Path) -> HsmConfig:
    """A real SoftHSM2 token created for this test run, with its roots."""
    module = find_softhsm()
    conf, pin_file = create_lab_token(token_dir, module, TEST_TOKEN_LABEL, InitReport(token_dir / "x"))
    os.environ["SOFTHSM2_CONF"] = conf
    config = HsmConfig(module=module, token_label=TEST_TOKEN_LABEL, pin_file=pin_file, softhsm_conf=conf)
    keystore = Keystore(config)
    try:
        keystore.ensure_roots()
    finally:
        keystore.close()
    return config


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each storage/API test runs on SQLite and again on PostgreSQL when one answers."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'coffre.db'}"
        return
    base, reason = postgres_url_or_reason()
    if base is None:
        pytest.skip(reason)
    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{base}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'coffre.db'}"


def make_settings(database_url: str, hsm: HsmConfig, data_dir: Path, **security: int) -> Settings:
    return Settings(
        path=None,
        data_dir=data_dir,
        database_url=database_url,
        hsm=hsm,
        server=ServerSettings(),
        # Fast parameters for tests; production defaults are tested in test_passwords.
        crypto=CryptoSettings(rsa_bits=2048, argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        security=SecuritySettings(**security),
    )


def build_app(database_url: str, hsm: HsmConfig, data_dir: Path, clock: FakeClock, **security: int) -> Appliance:
    settings = make_settings(database_url, hsm, data_dir, **security)
    app = Appliance(settings, clock=clock)
    schema.upgrade(app.db.engine)
    app.audit.ensure_genesis()  # as `coffre init` does
    return app


def dismantle(app: Appliance) -> None:
    """Remove the test deployment's anchor tables and markers from the shared token."""
    try:
        app.integrity.dismantle()
    finally:
        app.close()


@pytest.fixture
def app(database_url: str, hsm_config: HsmConfig, tmp_path: Path, clock: FakeClock) -> Iterator[Appliance]:
    appliance = build_app(database_url, hsm_config, tmp_path, clock)
    try:
        yield appliance
    finally:
        dismantle(appliance)


@pytest.fixture
def sqlite_app(sqlite_url: str, hsm_config: HsmConfig, tmp_path: Path, clock: FakeClock) -> Iterator[Appliance]:
    appliance = build_app(sqlite_url, hsm_config, tmp_path, clock)
    try:
        yield appliance
    finally:
        dismantle(appliance)


@pytest.fixture
def client(app: Appliance) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(app)) as test_client:
        yield test_client


@pytest.fixture
def sqlite_client(sqlite_app: Appliance) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(sqlite_app)) as test_client:
        yield test_client
