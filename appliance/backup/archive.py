"""The backup file: one ZIP archive, authenticated by an HMAC in the token.

Layout::

    manifest.json        what the backup holds and needs (below)
    tables/<name>.jsonl  one JSON object per row; bytes as {"b64": "..."}
    manifest.mac         "label:hex" = HMAC-SHA256(bind-vN, "coffre/backup/v1" ‖ manifest.json)

The manifest names the schema revision, the deployment id, every root label the
rows reference, the audit head, row counts, the SHA-256 of each table file, and the
anchor counters at backup time (so a restore can check every access row as it was,
then re-anchor it under the token's current counters). A changed byte anywhere
fails either a table's digest or the manifest's MAC. Nothing in the archive is a
secret in clear: it holds the same ciphertexts, hashes and MACs as the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ClientError
from hsm.errors import KeyNotFound
from hsm.keystore import Work
from hsm.labels import RootKind

PURPOSE = b"coffre/backup/v1|"


class BackupRefused(ClientError):
    """The backup cannot be restored here (edited, newer schema, missing root keys)."""


def encode_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def table_lines(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for row in rows:
        yield json.dumps({k: encode_value(v) for k, v in row.items()}, separators=(",", ":")).encode() + b"\n"


@dataclass
class Archive:
    manifest: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]]


def write(path: Path, work: Work, manifest: dict[str, Any], tables: dict[str, list[bytes]]) -> dict[str, Any]:
    manifest = dict(manifest)
    manifest["tables"] = {
        name: {"rows": len(lines), "sha256": hashlib.sha256(b"".join(lines)).hexdigest()}
        for name, lines in tables.items()
    }
    body = json.dumps(manifest, sort_keys=True, indent=1).encode()
    label, mac = work.mac(RootKind.BIND, PURPOSE + body)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", body)
        z.writestr("manifest.mac", f"{label}:{mac.hex()}")
        for name, lines in tables.items():
            z.writestr(f"tables/{name}.jsonl", b"".join(lines))
    tmp.chmod(0o600)
    tmp.replace(path)
    return manifest


def read(path: Path, work: Work) -> Archive:
    """The archive's content once its MAC and every table digest verify. Root keys
    the backup needs and the token lacks are named first (the manifest is not yet
    trusted then, but a refusal is all it can cause)."""
    present = {r.label for r in work.list_roots()}
    try:
        with zipfile.ZipFile(path) as z:
            body = z.read("manifest.json")
            missing = [label for label in json.loads(body).get("roots", []) if label not in present]
            if missing:
                raise BackupRefused(f"the token lacks root keys this backup needs: {', '.join(missing)}")
            stored = z.read("manifest.mac").decode("ascii")
            label, _, expected = stored.partition(":")
            try:
                _, mac = work.mac(RootKind.BIND, PURPOSE + body, label)
            except KeyNotFound as exc:
                raise BackupRefused(f"the backup's MAC names {label}, which this token does not have") from exc
            if not hmac.compare_digest(mac.hex(), expected):
                raise BackupRefused("the backup failed its integrity check (it was edited or is corrupt)")
            manifest = json.loads(body)
            tables: dict[str, list[dict[str, Any]]] = {}
            for name, meta in manifest["tables"].items():
                raw = z.read(f"tables/{name}.jsonl")
                if hashlib.sha256(raw).hexdigest() != meta["sha256"]:
                    raise BackupRefused("the backup failed its integrity check (it was edited or is corrupt)")
                rows = [{k: decode_value(v) for k, v in json.loads(line).items()} for line in raw.splitlines()]
                tables[name] = rows
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise BackupRefused("not a Coffre backup, or a corrupt one") from exc
    return Archive(manifest, tables)
