"""Run the app under uvicorn. Each worker process builds its own Appliance (and so
its own PKCS#11 module state and sessions) after it starts."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import stat
from pathlib import Path

import uvicorn
from litestar import Litestar
from sqlalchemy.exc import InterfaceError, OperationalError

from appliance import config as config_mod
from appliance import schema
from appliance.config import ConfigError, Settings
from appliance.core import Appliance
from appliance.errors import DatabaseUnavailable
from web.app import create_app
from web.observability import prepare_multiprocess


def _configure_logging(settings: Settings) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.server.log_file:
        handlers.append(logging.FileHandler(settings.server.log_file))
    if settings.server.log_format == "json":
        from web.observability import jsonlog

        jsonlog.configure(handlers)
        return
    # Text logs keep uvicorn's access line; coffre.access is the JSON one. The raw
    # path of a send's page or reveal carries its token: it is blanked there.
    logging.getLogger("coffre.access").disabled = True
    logging.getLogger("uvicorn.access").addFilter(redact_send_tokens)
    from web.observability.redact import install

    install()  # and the tokens of transfer and deposit links
    logging.basicConfig(
        level=logging.INFO, handlers=handlers, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


_SEND_TOKEN = re.compile(r"cfx_[A-Za-z0-9_-]+")


def redact_send_tokens(record: logging.LogRecord) -> bool:
    """A logging filter: no send token (``cfx_…``) in a log line's arguments."""
    if isinstance(record.args, tuple):
        record.args = tuple(_SEND_TOKEN.sub("cfx_[redacted]", a) if isinstance(a, str) else a for a in record.args)
    if isinstance(record.msg, str):
        record.msg = _SEND_TOKEN.sub("cfx_[redacted]", record.msg)
    return True


def app_factory() -> Litestar:
    """Entry point for uvicorn workers (reads COFFRE_CONFIG)."""
    settings = config_mod.load(None)
    if settings.hsm.softhsm_conf:
        os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf
    _configure_logging(settings)
    return create_app(Appliance(settings))


SOCKET_MODE = 0o660


def bind_unix_socket(path: str) -> socket.socket:
    """Listen on the Unix socket PATH, created with mode 0660.

    The socket gets the group of its directory when that directory is setgid (the
    provisioned /run/coffre is coffre:www-data 2750), so only Coffre's user and
    Apache's group can open it. A stale socket left by a crash is replaced; one
    another server still answers on is an error.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise ConfigError(f"cannot serve on {path}: directory {target.parent} does not exist")
    if target.is_symlink() or target.exists():
        if not stat.S_ISSOCK(target.lstat().st_mode):
            raise ConfigError(f"cannot serve on {path}: it exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                target.unlink(missing_ok=True)
            else:
                raise ConfigError(f"cannot serve on {path}: another server is listening on it")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600, widened to exactly 0660 below
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot serve on {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, SOCKET_MODE)
    sock.listen(2048)
    return sock


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    unix_socket: str | None = None,
    invite_admin: str | None = None,
) -> int:
    """Serve on host:port, or only on a Unix socket: ``unix_socket`` (the command
    line's --unix-socket) or ``[server] unix_socket`` unless --host/--port is given.
    With ``invite_admin``, print the first administrator's enrollment banner once the
    server answers on TCP (what `make run` does)."""
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
    prepare_multiprocess(settings.data_dir, workers)
    if settings.hsm.softhsm_conf:
        os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf
    path = unix_socket or (None if host or port else settings.server.unix_socket)
    if path is None:
        host = host or settings.server.host
        port = port or settings.server.port
        if invite_admin:
            from web.banner import announce_when_ready

            announce_when_ready(settings, host, port, invite_admin)
        _run(workers, host=host, port=port)
        return 0
    sock = bind_unix_socket(path)
    inode = os.stat(path).st_ino
    # uvicorn re-raises the signal that stopped it once it is done; catch it
    # here so the socket file is removed on the way out.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _run(workers, fd=sock.fileno())
    except _Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
    return 0


class _Stopped(Exception):
    pass


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _run(workers: int, host: str = "127.0.0.1", port: int = 8080, fd: int | None = None) -> None:
    """uvicorn on host:port, or on the already bound socket ``fd`` (which wins)."""
    uvicorn.run(
        "web.server:app_factory",
        factory=True,
        host=host,
        port=port,
        fd=fd,
        workers=max(1, workers),
        log_level="info",
        access_log=True,
        proxy_headers=False,
        server_header=False,
        date_header=True,
        timeout_graceful_shutdown=5,
    )
