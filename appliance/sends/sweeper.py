"""Expiry: a send past its time is crypto-shredded by a periodic sweep, or at once by
the public page or reveal that meets it (``expire``), audited as ``send.expired`` and
reported to its sender."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.mail import when
from appliance.models import User
from appliance.sends.models import Send

if TYPE_CHECKING:
    from appliance.core import Appliance
    from hsm.keystore import Work

log = logging.getLogger("coffre.sends")
SWEEP_SECONDS = 30.0
BATCH = 200


def sweep(app: Appliance) -> int:
    """Shred every expired send still holding a copy; return how many."""
    now = app.clock()
    done = 0
    with app.db.read() as db:
        ids = list(
            db.execute(select(Send.id).where(Send.state == "pending", Send.expires_at <= now).limit(BATCH)).scalars()
        )
    for send_id in ids:
        with app.keystore.work() as work, app.db.write() as db:
            if expire(app, db, work, send_id, now, None):
                done += 1
    return done


def expire(app: Appliance, db: Any, work: Work, send_id: str, now: float, client_addr: str | None) -> bool:
    """Shred ``send_id`` in ``db``'s transaction (under its row lock) if it is pending and
    past its expiry; True when it did."""
    service = app.sends.service
    send = (
        db.execute(select(Send).where(Send.id == send_id).with_for_update().execution_options(populate_existing=True))
        .scalars()
        .one_or_none()
    )
    if send is None or send.state != "pending" or send.expires_at > now:
        return False
    if not service.row_ok(work, send):
        service.integrity_event(db, work, send, client_addr)
    viewed = send.views_used > 0
    service.shred(send, "expired", now)
    service.seal_row(work, send)
    app.audit.append(db, work, "send.expired", target=send.id, mode=send.mode, views_used=send.views_used)
    sender = db.get(User, send.sender_id)
    if sender is not None:
        app.mail.enqueue(
            db,
            work=work,
            to=sender.email,
            template="send_expired",
            context={
                "what": service.describe(send),
                "when": when(send.expires_at),
                "viewed": f"after {send.views_used} view(s)" if viewed else "without being opened",
                "link": app.mail.link("/sends") if app.mail.enabled else "",
            },
        )
    return True


class SendSweeper:
    """A daemon thread per web process; several nodes sweeping at once is harmless
    (each send is shredded under a row lock, once)."""

    def __init__(self, app: Appliance, every: float = SWEEP_SECONDS) -> None:
        self.app = app
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="coffre-send-sweeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                sweep(self.app)
            except Exception:
                log.exception("send sweeper failed; retrying")
