"""Which rows are anchored, which of their columns a row MAC covers, and how the
MAC input is laid out.

A row MAC is ``HMAC-SHA256(bind-vN, input)`` stored as ``"label:hex"``, where the
input is the canonical JSON array::

    ["coffre/row/v1", deployment id, table, bucket, counter, *identity, *fields]

- *identity* is the row's primary key: a MAC moved to another row fails;
- *fields* are the columns that grant or limit access (roles, admin flag, status,
  lock, PIN failure counts, password hash, key bindings, session expiry...);
- *bucket* and *counter* tie the MAC to one counter of the token's anchor table
  for the row's domain (see ``anchors.py``): when that counter moves, every MAC
  made with the old value stops verifying, so a row restored from an older copy
  is refused.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.models import Folder, FolderAccess, FolderKey, Session, User, Vault, VaultMember

BUCKETS = 1024


class Domain(enum.Enum):
    USERS = "users"
    SESSIONS = "sessions"
    VAULTS = "vaults"


def bucket_of(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big") % BUCKETS


def _num(value: float | None) -> str | None:
    return None if value is None else repr(float(value))


def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


@dataclass(frozen=True)
class RowSpec:
    table: str
    model: Any  # the mapped class (its row_mac / anchor_bucket columns are queried)
    domain: Domain
    bucket_key: Callable[[Any], str]
    identity: Callable[[Any], tuple[Any, ...]]
    fields: Callable[[Any], tuple[Any, ...]]

    def bucket(self, row: Any) -> int:
        return bucket_of(self.bucket_key(row))

    def mac_input(self, deployment: str, row: Any, bucket: int, counter: int) -> bytes:
        parts = ["coffre/row/v1", deployment, self.table, bucket, counter, *self.identity(row), *self.fields(row)]
        return json.dumps(parts, separators=(",", ":"), ensure_ascii=True).encode("ascii")


USER = RowSpec(
    table="users",
    model=User,
    domain=Domain.USERS,
    bucket_key=lambda r: r.id,
    identity=lambda r: (r.id,),
    fields=lambda r: (
        r.email,
        bool(r.is_admin),
        r.status,
        bool(r.locked),
        int(r.failed_pin_count or 0),
        int(r.pin_failures_since_success or 0),
        r.password_hash,
        r.password_pepper,
        r.public_key_mac,
        _hex(r.pin_salt),
        r.pin_pepper,
        r.pin_kdf,
        int(r.key_generation or 0),
        bool(r.key_rotation_due),
        r.private_key_blob is not None,  # enrolled with a key pair: `enable` reads it
    ),
)

SESSION = RowSpec(
    table="sessions",
    model=Session,
    domain=Domain.SESSIONS,
    bucket_key=lambda r: r.user_id,
    identity=lambda r: (r.id,),
    fields=lambda r: (r.user_id, _hex(r.verifier), _num(r.created_at), _num(r.expires_at)),
)

VAULT = RowSpec(
    table="vaults",
    model=Vault,
    domain=Domain.VAULTS,
    bucket_key=lambda r: r.id,
    identity=lambda r: (r.id,),
    fields=lambda r: (int(r.key_version),),
)

MEMBER = RowSpec(
    table="vault_members",
    model=VaultMember,
    domain=Domain.VAULTS,
    bucket_key=lambda r: r.vault_id,
    identity=lambda r: (r.vault_id, r.user_id),
    fields=lambda r: (r.role, int(r.key_version), r.wrapped_key_mac),
)

# Folders (appliance/folders): where a folder hangs (inheritance), whether it has
# its own key and which version; each member's setting; each wrapped folder key.
FOLDER = RowSpec(
    table="folders",
    model=Folder,
    domain=Domain.VAULTS,
    bucket_key=lambda r: r.vault_id,
    identity=lambda r: (r.id,),
    fields=lambda r: (r.vault_id, r.parent_id, bool(r.keyed), int(r.key_version), r.settings_digest or ""),
)

FOLDER_ACCESS = RowSpec(
    table="folder_access",
    model=FolderAccess,
    domain=Domain.VAULTS,
    bucket_key=lambda r: r.vault_id,
    identity=lambda r: (r.folder_id, r.user_id),
    fields=lambda r: (r.vault_id, r.access),
)

FOLDER_KEY = RowSpec(
    table="folder_keys",
    model=FolderKey,
    domain=Domain.VAULTS,
    bucket_key=lambda r: r.vault_id,
    identity=lambda r: (r.folder_id, r.user_id),
    fields=lambda r: (r.vault_id, int(r.key_version), r.wrapped_key_mac),
)

SPECS: dict[Domain, tuple[RowSpec, ...]] = {
    Domain.USERS: (USER,),
    Domain.SESSIONS: (SESSION,),
    Domain.VAULTS: (VAULT, MEMBER, FOLDER, FOLDER_ACCESS, FOLDER_KEY),
}
