"""The recipient's side of sends to a user: the "Received" list, save, discard.

A copy waiting for a recipient who had not enrolled yet is sealed under the KEK;
the first time they list what they received it is re-sealed under a fresh key
from the token wrapped to their public key (and the KEK copy is gone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.bindings import send_key_is_bound
from appliance.errors import NotFound
from appliance.integrity import audits_integrity
from appliance.items import ItemFields, ItemView
from appliance.models import User
from appliance.sends import crypto
from appliance.sends.models import Send
from appliance.sessions import Principal
from appliance.tokens import is_id
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.sends.service import SendsService


@dataclass(frozen=True)
class ReceivedView:
    id: str
    sender_email: str
    fields: ItemFields
    created_at: float
    expires_at: float


class ReceivedSends:
    def __init__(self, app: Appliance, service: SendsService) -> None:
        self.app = app
        self.service = service

    def _mine(self, db: Any, principal: Principal, now: float) -> list[Send]:
        return list(
            db.execute(
                select(Send)
                .where(
                    Send.recipient_id == principal.user_id,
                    Send.mode == "user",
                    Send.state == "pending",
                    Send.expires_at > now,
                    Send.payload.is_not(None),
                )
                .order_by(Send.created_at.desc(), Send.id)
            ).scalars()
        )

    def _deliver_waiting(self, work: Work, principal: Principal, now: float) -> None:
        """Wrap copies that waited for this user's enrollment to their key."""
        with self.app.db.read() as db:
            waiting = [s for s in self._mine(db, principal, now) if s.wrapped_key is None]
        if not waiting:
            return
        with self.app.db.write() as db:
            user = self.app.accounts.checked_user(db, work, principal.user_id, principal.user_id)
            assert user is not None
            for first in waiting:
                send = db.execute(select(Send).where(Send.id == first.id).with_for_update()).scalar_one_or_none()
                if send is None or send.wrapped_key is not None or send.payload is None or send.state != "pending":
                    continue
                if not self.service.row_ok(work, send):
                    self.service.integrity_event(db, work, send, principal.client_addr)
                    continue
                try:
                    plaintext = work.unseal(send.payload, crypto.payload_context(send, "kek"))
                except DecryptionFailed:
                    self.service.integrity_event(db, work, send, principal.client_addr)
                    continue
                self.service._wrap_to(work, send, user, plaintext)
                self.service.seal_row(work, send)
                self.app.audit.by(principal, db, work, "send.delivered", target=send.id)

    def _open(self, work: Work, principal: Principal, send: Send) -> ItemFields | None:
        """The copy's fields, or None (and an audited integrity failure) when the row,
        its key binding or its ciphertext was tampered with."""
        if (
            send.wrapped_key is None
            or send.payload is None
            or not self.service.row_ok(work, send)
            or not send_key_is_bound(work, send.id, principal.user_id, send.wrapped_key, send.wrapped_key_mac)
        ):
            with self.app.db.write() as db:
                self.service.integrity_event(db, work, send, principal.client_addr)
            return None
        private = self.app.sessions.private_key(work, principal)
        try:
            key = work.unwrap_with_private_key(private, send.wrapped_key)
            raw = work.decrypt_field(key, send.payload, crypto.payload_context(send, "key"))
        except DecryptionFailed:
            with self.app.db.write() as db:
                self.service.integrity_event(db, work, send, principal.client_addr)
            return None
        return crypto.decode_fields(raw)

    @audits_integrity
    def list_received(self, principal: Principal) -> list[ReceivedView]:
        now = self.app.clock()
        out: list[ReceivedView] = []
        with self.app.keystore.work() as work:
            self._deliver_waiting(work, principal, now)
            with self.app.db.read() as db:
                rows = self._mine(db, principal, now)
                senders = {
                    u.id: u.email
                    for u in db.execute(select(User).where(User.id.in_({s.sender_id for s in rows}))).scalars()
                }
            for send in rows:
                fields = self._open(work, principal, send)
                if fields is not None:
                    out.append(
                        ReceivedView(send.id, senders.get(send.sender_id, ""), fields, send.created_at, send.expires_at)
                    )
            self._audit_read(work, principal, [view.id for view in out])
        return out

    def _audit_read(self, work: Work, principal: Principal, send_ids: list[str]) -> None:
        """``send.read``: one entry per copy opened (and shown) for the recipient."""
        if not send_ids:
            return
        with self.app.db.write() as db:
            for send_id in send_ids:
                self.app.audit.by(principal, db, work, "send.read", target=send_id)

    def _one(self, work: Work, principal: Principal, send_id: Any) -> tuple[Send, ItemFields]:
        if not is_id(send_id):
            raise NotFound("no such received password")
        now = self.app.clock()
        self._deliver_waiting(work, principal, now)
        with self.app.db.read() as db:
            send = db.get(Send, send_id)
        if (
            send is None
            or send.recipient_id != principal.user_id
            or send.mode != "user"
            or send.state != "pending"
            or send.expires_at <= now
        ):
            raise NotFound("no such received password")
        fields = self._open(work, principal, send)
        if fields is None:
            raise NotFound("no such received password")
        self._audit_read(work, principal, [send.id])
        return send, fields

    def _finish(self, work: Work, principal: Principal, send: Send, state: str, **details: Any) -> bool:
        now = self.app.clock()
        with self.app.db.write() as db:
            row = db.execute(select(Send).where(Send.id == send.id).with_for_update()).scalar_one_or_none()
            if row is None or row.state != "pending" or row.payload is None:
                return False
            self.service.shred(row, state, now)
            row.viewed_at = now
            row.viewed_from = (principal.client_addr or "")[:64] or None
            self.service.seal_row(work, row)
            self.app.audit.by(principal, db, work, f"send.{state}", target=row.id, **details)
        return True

    @audits_integrity
    def save(self, principal: Principal, send_id: Any, vault_id: Any, folder_id: Any = None) -> ItemView:
        """Copy into a vault (or folder) the caller can write; the send is then destroyed."""
        with self.app.keystore.work() as work:
            send, fields = self._one(work, principal, send_id)
        values = {name: getattr(fields, name) for name in crypto.FIELDS}
        if not isinstance(vault_id, str):
            raise NotFound("no such vault")
        item = self._create_item(principal, vault_id, values, folder_id)
        with self.app.keystore.work() as work:
            if not self._finish(work, principal, send, "saved", item=item.id, vault=vault_id):
                # Raced with a discard, an expiry or another save: the copy was made once.
                self.app.items.delete(principal, item.id)
                raise NotFound("no such received password")
        return item

    def _create_item(self, principal: Principal, vault_id: str, values: dict[str, Any], folder_id: Any) -> ItemView:
        """Items.create checks that the caller may write there (vault role and folder access)."""
        return self.app.items.create(principal, vault_id, values, folder_id=folder_id)

    def discard(self, principal: Principal, send_id: Any) -> None:
        """Destroy the copy unread (works even if the row was tampered with)."""
        if not is_id(send_id):
            raise NotFound("no such received password")
        with self.app.db.read() as db:
            send = db.get(Send, send_id)
        if send is None or send.recipient_id != principal.user_id or send.mode != "user" or send.state != "pending":
            raise NotFound("no such received password")
        with self.app.keystore.work() as work:
            if not self._finish(work, principal, send, "discarded"):
                raise NotFound("no such received password")
