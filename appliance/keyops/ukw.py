"""Which user-key root (ukw) version each private key depends on, read from the data.

A private key's inner layer is wrapped by a ukw version (hsm/private_keys.py); the
middle layer's authenticated header names it, and the token reads it after opening
the outer (KEK) layer. A database writer cannot change it without the token, and a
node still sealing under an old version after a rotation writes the old label: the
census sees the truth either way (no timestamp, no job row is trusted).

A recovery escrow holds the inner layer of the user's pair of its generation: when
it verifies and matches the user's current generation it depends on the same
version; otherwise what it depends on is unknown.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from sqlalchemy import select

from appliance.models import RecoveryEscrow, User
from appliance.sessions import user_key_context
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from appliance.core import Appliance

UNKNOWN = None


def user_labels(app: Appliance) -> dict[str, str | None]:
    """{user id: ukw label of their private key, or None when it cannot be known}."""
    out: dict[str, str | None] = {}
    with app.keystore.work() as work, app.db.read() as db:
        rows = db.execute(select(User.id, User.private_key_blob).where(User.private_key_blob.is_not(None)))
        for user_id, blob in rows:
            try:
                out[user_id] = work.private_key_ukw_label(bytes(blob), user_key_context(user_id))
            except DecryptionFailed:
                out[user_id] = UNKNOWN
    return out


def census(app: Appliance) -> Counter[tuple[str, str | None]]:
    """{(table.column, label or None): rows} over private keys and recovery escrows."""
    labels = user_labels(app)
    counts: Counter[tuple[str, str | None]] = Counter(("users.private_key_blob", v) for v in labels.values())
    with app.keystore.work() as work, app.db.read() as db:
        for escrow in db.execute(select(RecoveryEscrow)).scalars():
            user = db.get(User, escrow.user_id)
            label = labels.get(escrow.user_id)
            same_pair = (
                user is not None
                and escrow.key_generation == user.key_generation
                and app.recovery.escrow_is_bound(work, escrow, user)
            )
            counts[("recovery_escrows.blob", label if same_pair else UNKNOWN)] += 1
    return counts


def references(
    app: Appliance, label: str, counts: Counter[tuple[str, str | None]] | None = None
) -> dict[str, int] | None:
    """Rows depending on ``label``; ``None`` while any row's version is unknown (a
    key from before labels were recorded, a stale or unverifiable escrow): retiring
    is then refused."""
    if counts is None:
        counts = census(app)
    if any(v is UNKNOWN and n for (_, v), n in counts.items()):
        return None
    return {column: n for (column, v), n in counts.items() if v == label and n}
