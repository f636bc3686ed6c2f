"""KEK rotation of what transfers and deposit boxes seal under the KEK: a draft
transfer's key (``transfers.draft_blob``) and an open deposit box's key
(``deposit_boxes.sealed_key``), each beside its ``kek_label``. One short
transaction per row; repeatable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from appliance.transfers import keys
from appliance.transfers.deposits import sealed_context
from appliance.transfers.models import DepositBox, Transfer

if TYPE_CHECKING:
    from appliance.core import Appliance
    from hsm.keystore import Work


def reseal(app: Appliance, work: Work, current: str) -> dict[str, int]:
    counts = {"transfer_drafts": 0, "deposit_boxes": 0}
    with app.db.read() as db:
        drafts = list(
            db.execute(
                select(Transfer.id).where(Transfer.kek_label.is_not(None), Transfer.kek_label != current)
            ).scalars()
        )
        boxes = list(
            db.execute(
                select(DepositBox.id).where(DepositBox.kek_label.is_not(None), DepositBox.kek_label != current)
            ).scalars()
        )
    for tid in drafts:
        with app.db.write() as db:
            row = db.get(Transfer, tid)
            if row is None or row.draft_blob is None or row.kek_label == current:
                continue
            row.draft_blob = work.reseal(row.draft_blob, keys.draft_context(row.id))
            row.kek_label = work.sealed_under(row.draft_blob)
            counts["transfer_drafts"] += 1
    for box_id in boxes:
        with app.db.write() as db:
            box = db.get(DepositBox, box_id)
            if box is None or box.sealed_key is None or box.kek_label == current:
                continue
            box.sealed_key = work.reseal(box.sealed_key, sealed_context(box.id))
            box.kek_label = work.sealed_under(box.sealed_key)
            counts["deposit_boxes"] += 1
    return counts
