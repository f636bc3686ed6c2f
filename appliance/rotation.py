"""KEK rotation: re-seal every blob under the newest KEK.

Only the outer layer changes, so no user's PIN or password is needed. Each row
is re-sealed in its own short transaction and the run can be repeated: rows
already under the newest KEK are skipped (resumable).
"""

from __future__ import annotations

from sqlalchemy import select

from appliance.core import Appliance
from appliance.models import Session, User
from appliance.sessions import session_context, user_key_context
from hsm.labels import RootKind


def reseal_all(app: Appliance) -> dict[str, int]:
    counts = {"users": 0, "sessions": 0}
    with app.keystore.work() as work:
        work.refresh_roots()
        current = work.current_root(RootKind.KEK).label
        with app.db.read() as db:
            user_ids = [
                u for (u,) in db.execute(select(User.id).where(User.kek_label.is_not(None), User.kek_label != current))
            ]
            session_ids = [s for (s,) in db.execute(select(Session.id).where(Session.kek_label != current))]
        for user_id in user_ids:
            with app.db.write() as db:
                user = db.get(User, user_id)
                if user is None or user.private_key_blob is None or user.kek_label == current:
                    continue
                user.private_key_blob = work.reseal(user.private_key_blob, user_key_context(user.id))
                user.kek_label = work.sealed_under(user.private_key_blob)
                app.audit.append(db, work, "key.resealed", actor="cli", target=user.id, kek=user.kek_label)
                counts["users"] += 1
        for session_id in session_ids:
            with app.db.write() as db:
                row = db.get(Session, session_id)
                if row is None or row.kek_label == current:
                    continue
                row.key_blob = work.reseal(row.key_blob, session_context(row.id, row.user_id))
                row.kek_label = work.sealed_under(row.key_blob)
                counts["sessions"] += 1
        from appliance.transfers.reseal import reseal

        counts.update(reseal(app, work, current))  # draft transfers, open deposit boxes
    return counts
