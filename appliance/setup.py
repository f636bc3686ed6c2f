"""``coffre init``: a data dir with config, token (lab mode), schema and HSM roots.

Idempotent: a second run finds everything in place and changes nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from appliance import config as config_mod
from appliance import schema
from appliance.config import ConfigError, Settings
from appliance.db import Database
from hsm.keystore import Keystore

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
DEFAULT_TOKEN_LABEL = "coffre"  # noqa: S105 - a label, not a secret


@dataclass
class InitReport:
    config_path: Path
    created: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.created.append(what)


def find_softhsm() -> str:
    for candidate in SOFTHSM_MODULES:
        if os.path.exists(candidate):
            return candidate
    raise ConfigError("SoftHSM2 is not installed (apt-get install softhsm2), or pass --hsm-module")


def _toml_str(value: str) -> str:
    return json.dumps(value)


def render_config(
    data_dir: Path,
    database_url: str,
    module: str,
    token_label: str,
    pin_file: str | None,
    pin_env: str | None,
    softhsm_conf: str | None,
    rsa_bits: int,
) -> str:
    lines = [
        "# Coffre configuration, written by `coffre init`.",
        f"data_dir = {_toml_str(str(data_dir))}",
        "",
        "[server]",
        'host = "127.0.0.1"',
        "port = 8080",
        "trusted_proxies = []",
        "max_body_bytes = 1048576",
        "",
        "[database]",
        f"url = {_toml_str(database_url)}",
        "",
        "[hsm]",
        f"module = {_toml_str(module)}",
        f"token_label = {_toml_str(token_label)}",
    ]
    if pin_file:
        lines.append(f"pin_file = {_toml_str(pin_file)}")
    if pin_env:
        lines.append(f"pin_env = {_toml_str(pin_env)}")
    if softhsm_conf:
        lines.append(f"softhsm_conf = {_toml_str(softhsm_conf)}")
    lines += ["", "[crypto]", f"rsa_bits = {rsa_bits}", ""]
    return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def create_lab_token(data_dir: Path, module: str, label: str, report: InitReport) -> tuple[str, str]:
    """A SoftHSM2 token under DIR/tokens whose PIN sits in DIR/token.pin (0600).

    softhsm2-util takes PINs on its command line, so it only ever sees throwaway
    values; the real PINs are then set through PKCS#11 (C_SetPIN).
    """
    conf = data_dir / "softhsm2.conf"
    tokens = data_dir / "tokens"
    pin_file = data_dir / "token.pin"
    if not conf.exists():
        tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = false\n",
            encoding="utf-8",
        )
        report.note(str(conf))
    if pin_file.exists():
        return str(conf), str(pin_file)
    util = shutil.which("softhsm2-util")
    if util is None:
        raise ConfigError("softhsm2-util is not installed (apt-get install softhsm2)")
    temp_user, temp_so = secrets.token_hex(8), secrets.token_hex(8)
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    result = subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", temp_user, "--so-pin", temp_so],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ConfigError(f"softhsm2-util could not create the token: {result.stderr.strip()}")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    from hsm import module as module_loader

    loaded = module_loader.ensure_loaded(module)
    token = loaded.lib.get_token(token_label=label)
    real_pin = secrets.token_urlsafe(24)
    session = token.open(rw=True, user_pin=temp_user)
    session.set_pin(temp_user, real_pin)
    session.close()
    session = token.open(rw=True, so_pin=temp_so)
    session.set_pin(temp_so, secrets.token_urlsafe(24))  # SO PIN: set and forgotten
    session.close()
    module_loader.unload(module)
    _write_private(pin_file, real_pin + "\n")
    report.note(f"SoftHSM2 token {label!r} in {tokens}")
    return str(conf), str(pin_file)


def init(
    data_dir: Path | None,
    config_path: Path | None = None,
    database_url: str | None = None,
    hsm_module: str | None = None,
    token_label: str | None = None,
    pin_file: str | None = None,
    pin_env: str | None = None,
    rsa_bits: int = 3072,
) -> tuple[Settings, InitReport]:
    if config_path is None:
        if data_dir is None:
            raise ConfigError("pass --data-dir DIR (or --config FILE for an existing configuration)")
        data_dir = data_dir.expanduser().resolve()
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config_path = data_dir / "coffre.toml"
    report = InitReport(config_path=config_path)
    if not config_path.exists():
        assert data_dir is not None
        if rsa_bits < 2048:
            raise ConfigError("--rsa-bits must be at least 2048")
        label = token_label or DEFAULT_TOKEN_LABEL
        softhsm_conf = None
        if hsm_module is None:
            module = find_softhsm()
            softhsm_conf, pin_file = create_lab_token(data_dir, module, label, report)
        else:
            module = hsm_module
            if not os.path.exists(module):
                raise ConfigError(f"PKCS#11 module not found: {module}")
            if not pin_file and not pin_env:
                raise ConfigError("with --hsm-module, give the token PIN with --pin-file or --pin-env")
        url = database_url or f"sqlite:///{data_dir / 'coffre.db'}"
        text = render_config(data_dir, url, module, label, pin_file, pin_env, softhsm_conf, rsa_bits)
        _write_private(config_path, text)
        report.note(str(config_path))
    settings = config_mod.load(config_path)
    if settings.hsm.softhsm_conf:
        os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf
    database = Database(settings.database_url)
    try:
        before = schema.current_revision(database.engine)
        schema.upgrade(database.engine)
        if before != schema.head_revision():
            report.note(f"database schema at {schema.head_revision()}")
    finally:
        database.dispose()
    keystore = Keystore(settings.hsm)
    try:
        for label in keystore.ensure_roots():
            report.note(f"HSM root key {label}")
    finally:
        keystore.close()
    from appliance.core import Appliance
    from appliance.integrity.adoption import adopt_once

    app = Appliance(settings)
    try:
        if app.audit.ensure_genesis():
            report.note("audit log genesis entry")
        adoption = adopt_once(app)
        if adoption.public_keys or adoption.wrapped_keys or adoption.rows:
            report.note(
                f"adopted rows written before their MACs existed: {adoption.public_keys} public keys, "
                f"{adoption.wrapped_keys} wrapped vault keys, {adoption.rows} anchored rows (once; never again)"
            )
        elif adoption.done_now:
            report.note("recorded in the token that this deployment's rows are bound")
    finally:
        app.close()
    return settings, report
