"""Adopting rows written before their MACs existed: once per token, never again.

Schema 0002 added the bindings of public keys and wrapped vault keys, schema 0003
the anchored row MACs. Rows present when a deployment upgrades have no MAC, and
the only moment they can be trusted is that upgrade. Earlier versions bound every
unbound row at *every* `coffre init`, so a database writer could plant their own
public key with a NULL MAC and have the next init bless it.

Now `coffre init` adopts unbound rows only while the token has no record that
adoption happened (``hsm/state.py`` markers, which a database writer cannot
touch), and records it in the same run. A fresh deployment records it at its
first init, with nothing to adopt. After that, a NULL or wrong MAC is an integrity
failure everywhere and no command binds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from appliance.bindings import bind_member_key, bind_public_key
from appliance.integrity.rows import SPECS, Domain
from appliance.models import User, VaultMember
from hsm import state

if TYPE_CHECKING:
    from appliance.core import Appliance

MARKER = "adopted-v1"


@dataclass(frozen=True)
class Adoption:
    done_now: bool
    public_keys: int = 0
    wrapped_keys: int = 0
    rows: int = 0


def adopt_once(app: Appliance) -> Adoption:
    """Bind and MAC every row that has no MAC yet, if and only if this token has
    never done so; then record that it has."""
    with app.keystore.work() as work:
        if state.has_marker(work, MARKER):
            return Adoption(done_now=False)
        public_keys = wrapped = rows = 0
        with app.db.write() as db:
            for user in db.execute(
                select(User).where(User.public_key.is_not(None), User.public_key_mac.is_(None))
            ).scalars():
                assert user.public_key is not None
                user.public_key_mac = bind_public_key(work, user.id, user.public_key)
                public_keys += 1
            for member in db.execute(select(VaultMember).where(VaultMember.wrapped_key_mac.is_(None))).scalars():
                member.wrapped_key_mac = bind_member_key(
                    work, member.vault_id, member.user_id, member.key_version, member.wrapped_key
                )
                wrapped += 1
            db.flush()
            for domain in Domain:
                app.integrity.lock(db, domain)
                counters = app.integrity.counters(work, domain)
                for spec in SPECS[domain]:
                    for row in db.execute(select(spec.model).where(spec.model.row_mac.is_(None))).scalars():
                        app.integrity.seal(work, spec, row, counters[spec.bucket(row)])
                        rows += 1
            if public_keys or wrapped or rows:
                app.audit.append(
                    db,
                    work,
                    "integrity.adopted",
                    actor="cli",
                    public_keys=public_keys,
                    wrapped_keys=wrapped,
                    rows=rows,
                )
        # After the commit: a crash before this line adopts again next time, which
        # binds only what this run already bound.
        state.set_marker(work, MARKER)
    return Adoption(True, public_keys, wrapped, rows)
