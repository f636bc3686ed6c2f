"""Typed settings, read once from ``coffre.toml``.

Every command finds the file through ``--config`` or ``COFFRE_CONFIG``. A few
fields may be overridden by one documented environment variable each:

- ``COFFRE_DATABASE_URL`` overrides ``[database] url``;
- the token PIN comes from the file ``[hsm] pin_file`` or the variable named by
  ``[hsm] pin_env`` (never from the command line).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsm.config import HsmConfig

CONFIG_ENV = "COFFRE_CONFIG"
DATABASE_URL_ENV = "COFFRE_DATABASE_URL"


class ConfigError(Exception):
    """The configuration is missing or wrong; the message says what to fix."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    # Whose X-Forwarded-For is believed: "unix" (a request that came in over
    # unix_socket) and/or IP addresses of TCP peers. Empty: nobody's.
    trusted_proxies: tuple[str, ...] = ()
    # Serve on this Unix socket (mode 0660) instead of host:port.
    unix_socket: str | None = None
    max_body_bytes: int = 1024 * 1024
    # Requests doing appliance work at once per process (see web/deps.py serialized).
    concurrent_operations: int = 1
    log_file: str | None = None
    # "text" (human) or "json" (one object per line: time, level, logger, message,
    # request id, route, status, duration, user id).
    log_format: str = "text"


@dataclass(frozen=True)
class CryptoSettings:
    rsa_bits: int = 3072
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 1
    # A user's key pair is replaced at the first unlock after it is this old (0: never).
    user_key_max_age_days: int = 365


@dataclass(frozen=True)
class SecuritySettings:
    enrollment_ttl_seconds: int = 72 * 3600
    login_ticket_ttl_seconds: int = 120
    session_idle_seconds: int = 30 * 60
    session_max_seconds: int = 12 * 3600
    max_pin_failures: int = 5
    # Wrong PINs since the last right one after which an admin can no longer unlock
    # (bounds a malicious admin's reset-password + unlock loop to this many guesses).
    max_pin_failures_total: int = 20
    password_min_length: int = 12
    password_min_score: int = 3
    # Failed password attempts allowed per account in the window.
    account_attempts: int = 10
    account_window_seconds: int = 15 * 60
    # Password attempts allowed per client address in the window.
    address_attempts: int = 30
    address_window_seconds: int = 60


@dataclass(frozen=True)
class UiSettings:
    # The web page locks itself (signs out) after this long without a key press or click.
    idle_lock_seconds: int = 300


@dataclass(frozen=True)
class ItemSettings:
    # Earlier versions of an item kept (sealed like the live one) after each update.
    history_versions: int = 20


@dataclass(frozen=True)
class AuditSettings:
    # Where every audit entry is sent as it is appended: "syslog+tcp://host:port",
    # "syslog+udp://host:port" or "syslog+tls://host:port" (None: not forwarded).
    forward: str | None = None
    # CA bundle that signs the syslog+tls receiver's certificate (system CAs if unset).
    ca_file: str | None = None
    # Entries per forwarding batch (the cursor moves after each batch is sent).
    forward_batch: int = 200
    # Seconds between `audit.anchor` entries recording the head in the log (0: none).
    anchor_interval_seconds: int = 3600


@dataclass(frozen=True)
class MetricsSettings:
    # File holding the bearer token that may scrape /metrics from a non-loopback
    # peer (None: loopback only). Never on the command line.
    token_file: str | None = None

    def token(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            value = Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"[metrics] token_file: cannot read {self.token_file}: {exc.strerror}") from None
        if len(value) < 16:
            raise ConfigError("[metrics] token_file must hold a token of at least 16 characters")
        return value


@dataclass(frozen=True)
class MailSettings:
    """``[mail]``: the SMTP server Coffre sends its e-mails through (see appliance/mail)."""

    host: str = ""
    port: int = 587
    # "starttls" (upgrade a plain connection, port 587), "tls" (implicit TLS, port 465)
    # or "none" (a relay on loopback only: nothing crosses a network in clear).
    security: str = "starttls"
    user: str | None = None
    # File holding the SMTP password (never in coffre.toml or on the command line).
    password_file: str | None = None
    from_address: str = ""
    # Public address of the portal, e.g. "https://coffre.example.com": links in e-mails
    # are built from it, never from a request's Host header.
    base_url: str = ""
    # CA bundle for the server's certificate (system CAs if unset).
    ca_file: str | None = None
    timeout_seconds: int = 10
    # A message is retried with a doubling delay from retry_seconds, up to max_attempts.
    retry_seconds: int = 30
    max_attempts: int = 8

    def password(self) -> str | None:
        if self.password_file is None:
            return None
        try:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"[mail] password_file: cannot read {self.password_file}: {exc.strerror}") from None


@dataclass(frozen=True)
class SendSettings:
    """``[sends]``: the administrators' policy for sent passwords."""

    default_expires_in_hours: int = 24
    # At most 720 (30 days); an administrator may lower it.
    max_expires_in_hours: int = 720
    max_views: int = 10
    # Wrong one-time codes after which a send is destroyed.
    max_code_failures: int = 5
    # Reveals allowed per client address per minute (public endpoint).
    reveals_per_minute: int = 30
    # Sends a user may create per 10 minutes (429 beyond).
    creates_per_10_minutes: int = 30


@dataclass(frozen=True)
class FilesSettings:
    # Where file content lives: "filesystem" (under ``dir``) or "database" (chunks as rows).
    store: str = "filesystem"
    # Directory of the filesystem store (default: <data_dir>/files).
    dir: str | None = None
    # Where bulk AES-GCM runs: "process" (`cryptography`; the file's payload key is in
    # process memory for the one transfer) or "hsm" (in the token; much slower).
    bulk_crypto: str = "process"
    # Plaintext bytes per sealed chunk, in KiB (64 to 1024).
    chunk_kib: int = 1024
    max_file_bytes: int = 10 * 1024**3
    # Bytes of file content (all kept versions) per uploader / per vault (0: no quota).
    user_quota_bytes: int = 0
    vault_quota_bytes: int = 0
    # Versions kept per file, the current one included.
    keep_versions: int = 20
    # An upload unfinished for this long is an orphan for `coffre files gc`.
    gc_grace_seconds: int = 3600
    # Seconds between the server's own gc runs (0: only `coffre files gc`).
    gc_interval_seconds: int = 3600
    # Transfers: the longest expiry a sender may choose, in hours (at most 720, 30 days).
    transfer_max_expires_hours: int = 720


@dataclass(frozen=True)
class Settings:
    path: Path | None
    data_dir: Path
    database_url: str
    hsm: HsmConfig
    server: ServerSettings = field(default_factory=ServerSettings)
    crypto: CryptoSettings = field(default_factory=CryptoSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    ui: UiSettings = field(default_factory=UiSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    # None: no [mail] section, nothing is e-mailed (links are handed to the sender).
    mail: MailSettings | None = None
    sends: SendSettings = field(default_factory=SendSettings)
    items: ItemSettings = field(default_factory=ItemSettings)
    files: FilesSettings = field(default_factory=FilesSettings)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


# Numeric settings that may be 0 (every other one must be at least 1).
_MAY_BE_ZERO = {
    "cache_entries",
    "password_min_score",
    "user_key_max_age_days",
    "anchor_interval_seconds",
    "user_quota_bytes",
    "vault_quota_bytes",
    "gc_grace_seconds",
    "gc_interval_seconds",
}


def _check_number(section: str, name: str, default: Any, value: Any) -> None:
    """A numeric setting has its default's type and is positive (a pool of 0
    sessions or a gate of 0 permits would refuse every request)."""
    kinds: tuple[type, ...] = (int, float) if isinstance(default, float) else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(f"[{section}] {name} must be a number, not {value!r}")
    if isinstance(default, float):
        if value <= 0:
            raise ConfigError(f"[{section}] {name} must be greater than 0")
        return
    minimum = 0 if name in _MAY_BE_ZERO else 1
    if value < minimum:
        raise ConfigError(f"[{section}] {name} must be at least {minimum}")


def _build(cls: type[Any], values: dict[str, Any], section: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{section}]: {', '.join(sorted(unknown))}")
    for name, value in values.items():
        default = fields[name].default
        if isinstance(default, int | float) and not isinstance(default, bool):
            _check_number(section, name, default, value)
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**converted)
    except TypeError as exc:
        raise ConfigError(f"[{section}]: {exc}") from exc


def _check_server(server: ServerSettings) -> ServerSettings:
    proxies = server.trusted_proxies
    if not isinstance(proxies, tuple) or not all(isinstance(p, str) for p in proxies):
        raise ConfigError('[server] trusted_proxies must be a list of strings, e.g. ["unix"]')
    for entry in proxies:
        if entry == "unix":
            continue
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            raise ConfigError(f'[server] trusted_proxies: {entry!r} is neither "unix" nor an IP address') from None
    if server.log_format not in ("text", "json"):
        raise ConfigError('[server] log_format must be "text" or "json"')
    if server.unix_socket is not None and (not isinstance(server.unix_socket, str) or not server.unix_socket):
        raise ConfigError("[server] unix_socket must be a path")
    return server


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the settings from ``path`` (or ``$COFFRE_CONFIG``)."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if not chosen:
        raise ConfigError(
            f"no configuration: pass --config FILE or set {CONFIG_ENV} (create one with `coffre init --data-dir DIR`)"
        )
    file = Path(chosen).expanduser().resolve()
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {file}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from exc
    return from_mapping(raw, file)


def from_mapping(raw: dict[str, Any], path: Path | None = None) -> Settings:
    hsm_raw = dict(_section(raw, "hsm"))
    for key in ("module", "token_label"):
        if not hsm_raw.get(key):
            raise ConfigError(f"[hsm] {key} is required")
    hsm = _build(HsmConfig, hsm_raw, "hsm")
    database = _section(raw, "database")
    url = os.environ.get(DATABASE_URL_ENV) or database.get("url")
    if not url or not isinstance(url, str):
        raise ConfigError("[database] url is required")
    data_dir = raw.get("data_dir") or (str(path.parent) if path else ".")
    crypto = _build(CryptoSettings, _section(raw, "crypto"), "crypto")
    if crypto.rsa_bits < 2048:
        raise ConfigError("[crypto] rsa_bits must be at least 2048")
    return Settings(
        path=path,
        data_dir=Path(data_dir),
        database_url=url,
        hsm=hsm,
        server=_check_server(_build(ServerSettings, _section(raw, "server"), "server")),
        crypto=crypto,
        security=_build(SecuritySettings, _section(raw, "security"), "security"),
        ui=_build(UiSettings, _section(raw, "ui"), "ui"),
        audit=_check_audit(_build(AuditSettings, _section(raw, "audit"), "audit")),
        metrics=_build(MetricsSettings, _section(raw, "metrics"), "metrics"),
        mail=_check_mail(_build(MailSettings, _section(raw, "mail"), "mail")) if "mail" in raw else None,
        sends=_check_sends(_build(SendSettings, _section(raw, "sends"), "sends")),
        items=_check_items(_build(ItemSettings, _section(raw, "items"), "items")),
        files=_check_files(_build(FilesSettings, _section(raw, "files"), "files")),
    )


def _check_mail(mail: MailSettings) -> MailSettings:
    for name in ("host", "from_address", "base_url"):
        if not isinstance(getattr(mail, name), str) or not getattr(mail, name):
            raise ConfigError(f"[mail] {name} is required")
    if mail.security not in ("starttls", "tls", "none"):
        raise ConfigError('[mail] security must be "starttls", "tls" or "none"')
    if mail.security == "none":
        try:
            loopback = mail.host == "localhost" or ipaddress.ip_address(mail.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError('[mail] security = "none" is allowed only for a relay on loopback')
    if "@" not in mail.from_address:
        raise ConfigError("[mail] from_address must be an e-mail address")
    if not mail.base_url.startswith(("https://", "http://")) or mail.base_url.endswith("/"):
        raise ConfigError('[mail] base_url must look like "https://coffre.example.com" (no trailing slash)')
    if mail.password_file is not None and mail.user is None:
        raise ConfigError("[mail] password_file needs user")
    return mail


def _check_sends(sends: SendSettings) -> SendSettings:
    if sends.max_expires_in_hours > 720:
        raise ConfigError("[sends] max_expires_in_hours must be at most 720 (30 days)")
    if sends.creates_per_10_minutes < 1:
        raise ConfigError("[sends] creates_per_10_minutes must be at least 1")
    if sends.default_expires_in_hours > sends.max_expires_in_hours:
        raise ConfigError("[sends] default_expires_in_hours must not exceed max_expires_in_hours")
    return sends


def _check_items(items: ItemSettings) -> ItemSettings:
    if not 0 <= items.history_versions <= 1000:
        raise ConfigError("[items] history_versions must be between 0 and 1000")
    return items


def _check_files(files: FilesSettings) -> FilesSettings:
    if files.store not in ("filesystem", "database"):
        raise ConfigError('[files] store must be "filesystem" or "database"')
    if files.bulk_crypto not in ("process", "hsm"):
        raise ConfigError('[files] bulk_crypto must be "process" or "hsm"')
    if not 64 <= files.chunk_kib <= 1024:
        raise ConfigError("[files] chunk_kib must be between 64 and 1024")
    if files.dir is not None and (not isinstance(files.dir, str) or not files.dir):
        raise ConfigError("[files] dir must be a path")
    if files.transfer_max_expires_hours > 720:
        raise ConfigError("[files] transfer_max_expires_hours must be at most 720 (30 days)")
    return files


def _check_audit(audit: AuditSettings) -> AuditSettings:
    if audit.forward is not None:
        from appliance.auditops.destination import DestinationError, parse_destination

        try:
            parse_destination(audit.forward)
        except DestinationError as exc:
            raise ConfigError(f"[audit] forward: {exc}") from None
    if audit.ca_file is not None and not isinstance(audit.ca_file, str):
        raise ConfigError("[audit] ca_file must be a path")
    return audit
