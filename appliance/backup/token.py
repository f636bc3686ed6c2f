"""The lab token's files (SoftHSM2), copied consistently: `coffre token backup|restore`.

Production tokens are backed up with their vendor's procedure (docs/operations.md).
The token PIN is *not* in the copy: the SoftHSM files are encrypted under keys the
PIN opens, and a backup holding both would be the token itself. Keep the PIN where
it is provisioned from (Ansible Vault, a sealed envelope) and restore it separately.
Copy while `coffre serve` is stopped: SoftHSM writes each object as its own file.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from appliance.config import ConfigError, Settings


def _token_dir(settings: Settings) -> Path:
    if not settings.hsm.softhsm_conf:
        raise ConfigError("`coffre token` handles the lab SoftHSM2 token only; use the HSM vendor's backup")
    for line in Path(settings.hsm.softhsm_conf).read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "directories.tokendir":
            return Path(value.strip())
    raise ConfigError(f"{settings.hsm.softhsm_conf} names no token directory")


def backup_token(settings: Settings, out: Path) -> int:
    tokens = _token_dir(settings)
    tmp = out.with_name(out.name + ".partial")
    count = 0
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(tokens.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(tokens)))
                count += 1
    tmp.chmod(0o600)
    tmp.replace(out)
    return count


def restore_token(settings: Settings, archive: Path) -> int:
    tokens = _token_dir(settings)
    if tokens.exists() and any(tokens.iterdir()):
        raise ConfigError(f"{tokens} is not empty: move it aside first")
    tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
    count = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name.startswith("/") or ".." in Path(member.name).parts:
                raise ConfigError(f"unexpected entry in the token archive: {member.name!r}")
        tar.extractall(tokens, filter="data")
        count = len(tar.getmembers())
    for root, dirs, files in os.walk(tokens):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o700)
        for name in files:
            os.chmod(os.path.join(root, name), 0o600)
    return count
