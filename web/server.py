"""Run the app under uvicorn. Each worker process builds its own Appliance (and so
its own PKCS#11 module state and sessions) after it starts."""

from __future__ import annotations

import logging
import os

import uvicorn
from litestar import Litestar
from sqlalchemy.exc import InterfaceError, OperationalError

from appliance import config as config_mod
from appliance import schema
from appliance.config import ConfigError, Settings
from appliance.core import Appliance
from appliance.errors import DatabaseUnavailable
from web.app import create_app


def _configure_logging(settings: Settings) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.server.log_file:
        handlers.append(logging.FileHandler(settings.server.log_file))
    logging.basicConfig(
        level=logging.INFO, handlers=handlers, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def app_factory() -> Litestar:
    """Entry point for uvicorn workers (reads COFFRE_CONFIG)."""
    settings = config_mod.load(None)
    if settings.hsm.softhsm_conf:
        os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf
    _configure_logging(settings)
    return create_app(Appliance(settings))


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    invite_admin: str | None = None,
) -> int:
    if settings.path is None:
        raise ConfigError("serve needs a configuration file")
    probe = Appliance(settings)
    try:
        current = schema.current_revision(probe.db.engine)
    except (OperationalError, InterfaceError) as exc:
        raise DatabaseUnavailable(
            f"the database does not answer ({type(exc.orig).__name__}); check [database] url"
        ) from None
    finally:
        probe.db.dispose()
    if current != schema.head_revision():
        raise ConfigError(
            f"the database schema is at {current or 'nothing'}, not {schema.head_revision()}: "
            "run `coffre init --config FILE` first"
        )
    os.environ[config_mod.CONFIG_ENV] = str(settings.path)
    if settings.hsm.softhsm_conf:
        os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf
    host = host or settings.server.host
    port = port or settings.server.port
    if invite_admin:
        from web.banner import announce_when_ready

        announce_when_ready(settings, host, port, invite_admin)
    uvicorn.run(
        "web.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=max(1, workers),
        log_level="info",
        access_log=True,
        proxy_headers=False,
        server_header=False,
        date_header=True,
        timeout_graceful_shutdown=5,
    )
    return 0
