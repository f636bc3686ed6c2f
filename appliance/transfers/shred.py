"""Crypto-shredding: a transfer's keys and chunks destroyed for good (expiry,
revocation, the last allowed download), and the periodic sweeper."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from appliance.transfers.models import Transfer, TransferFile, TransferGrant, TransferRecipient

if TYPE_CHECKING:
    from appliance.core import Appliance

# A completed transfer whose last download never reported its end (a killed
# process) is shredded by the sweeper after this long.
STUCK_SECONDS = 3600.0


def shred(app: Appliance, transfer_id: str, status: str | None = None, event: str | None = None) -> bool:
    """Destroy the transfer's wrapped keys, grants, file keys and content.
    Returns False when it was already shredded."""
    with app.keystore.work() as work, app.db.write() as db:
        row = db.get(Transfer, transfer_id, with_for_update=True)
        if row is None or row.shredded_at is not None:
            return False
        blobs = [
            (f.blob_id, f.store)
            for f in db.execute(select(TransferFile).where(TransferFile.transfer_id == row.id)).scalars()
        ]
        db.execute(delete(TransferFile).where(TransferFile.transfer_id == row.id))
        db.execute(delete(TransferGrant).where(TransferGrant.transfer_id == row.id))
        db.execute(
            update(TransferRecipient)
            .where(TransferRecipient.transfer_id == row.id)
            .values(token_hash=None, code_wrapped=None, code_salt=None, code_pepper=None, code_kdf=None)
        )
        row.wrapped_key = row.pw_salt = row.draft_blob = row.message_ct = None
        row.kek_label = row.pepper_label = row.kdf = None
        row.shredded_at = app.clock()
        if status is not None:
            row.status = status
        if event is not None:
            app.audit.append(db, work, event, actor=row.owner_id, target=row.id)
        app.audit.append(db, work, "transfer.shredded", actor=row.owner_id, target=row.id, files=len(blobs))
    for blob_id, store in blobs:
        try:
            app.files.store(store).delete(blob_id)
        except OSError:
            pass  # unreferenced now: gc removes it
    return True


def sweep(app: Appliance) -> int:
    """Expire what is past its date, shred what ended; drop stale grants."""
    now = app.clock()
    with app.db.read() as db:
        due = list(
            db.execute(
                select(Transfer.id, Transfer.status, Transfer.expires_at, Transfer.active_downloads, Transfer.sent_at)
                .where(Transfer.shredded_at.is_(None))
                .where((Transfer.expires_at <= now) | Transfer.status.in_(("completed", "revoked")))
            ).all()
        )
    done = 0
    for tid, status, expires_at, active, sent_at in due:
        if expires_at <= now and status not in ("completed", "revoked"):
            done += shred(app, tid, "expired", "transfer.expired")
        elif status == "revoked" or active <= 0 or now - (sent_at or now) > STUCK_SECONDS:
            done += shred(app, tid)
    with app.db.write() as db:
        db.execute(delete(TransferGrant).where(TransferGrant.expires_at <= now))
    return done
