"""What `coffre status` prints: module, token, root keys, what each KEK protects."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from appliance import schema
from appliance.core import Appliance
from appliance.models import AuditEntry, Item, Session, User, Vault, VaultMember
from hsm.errors import HsmError
from hsm.labels import RootKind


def kek_usage(app: Appliance) -> Counter[str]:
    """How many sealed blobs each KEK version protects."""
    usage: Counter[str] = Counter()
    with app.db.read() as db:
        for label, count in db.execute(
            select(User.kek_label, func.count()).where(User.kek_label.is_not(None)).group_by(User.kek_label)
        ):
            usage[label] += count
        for label, count in db.execute(select(Session.kek_label, func.count()).group_by(Session.kek_label)):
            usage[label] += count
    return usage


def collect(app: Appliance) -> list[str]:
    s = app.settings
    lines = [f"config:        {s.path}", f"HSM module:    {s.hsm.module}", f"token label:   {s.hsm.token_label}"]
    try:
        roots = app.keystore.list_roots()
        token = app.keystore.pool.token
        lines.append(f"token:         {token.label} (manufacturer {token.manufacturer_id}, model {token.model})")
        usage = kek_usage(app)
        for kind in RootKind:
            versions = [r for r in roots if r.kind is kind]
            if not versions:
                lines.append(f"root {kind.value:<7}  MISSING: run `coffre init`")
                continue
            for r in versions:
                current = " (current)" if r is versions[-1] else ""
                extra = f", protects {usage.get(r.label, 0)} sealed blobs" if kind is RootKind.KEK else ""
                lines.append(f"root {kind.value:<7}  {r.label}{current}{extra}")
    except HsmError as exc:
        lines.append(f"HSM:           UNAVAILABLE ({exc})")
    url = s.database_url.split("@")[-1] if "@" in s.database_url else s.database_url
    lines.append(f"database:      {url}")
    lines.append(f"schema:        {schema.current_revision(app.db.engine)} (head {schema.head_revision()})")
    with app.db.read() as db:

        def count(model: type) -> int:
            return int(db.execute(select(func.count()).select_from(model)).scalar_one())

        lines.append(
            f"counts:        users {count(User)}, vaults {count(Vault)}, memberships {count(VaultMember)}, "
            f"items {count(Item)}, sessions {count(Session)}, audit entries {count(AuditEntry)}"
        )
    return lines
