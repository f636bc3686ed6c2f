"""Creating, listing and revoking sends (the sender's side)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.accounts import normalize_email
from appliance.bindings import bind_send_key, public_key_is_bound
from appliance.errors import Conflict, NotFound, ValidationFailed
from appliance.integrity import audits_integrity, macs
from appliance.items import ItemFields
from appliance.mail import when
from appliance.models import User
from appliance.sends import crypto
from appliance.sends.models import Send
from appliance.sessions import Principal
from appliance.tokens import is_id, new_id, new_opaque, opaque_hash
from appliance.vaults import BrokenBinding
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

MODES = ("user", "code", "link")
SEND_PREFIX = "cfx_"
HOUR = 3600.0
CREATE_WINDOW = 600


@dataclass(frozen=True)
class Created:
    id: str
    # The page's path with the token (code and link modes); shown to the sender once.
    path: str | None
    code: str | None
    # An enrollment link path for a recipient who had no account and no e-mail went out.
    invitation_path: str | None
    mailed: bool


@dataclass(frozen=True)
class SentView:
    id: str
    mode: str
    recipient_email: str | None
    status: str
    created_at: float
    expires_at: float
    max_views: int
    views_used: int
    viewed_at: float | None
    viewed_from: str | None


def _int(name: str, value: Any, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationFailed(f"{name} must be a whole number")
    if not low <= value <= high:
        raise ValidationFailed(f"{name} must be between {low} and {high}")
    return value


def status_of(send: Send, now: float) -> str:
    if send.state == "pending" and send.expires_at <= now:
        return "expired"
    return send.state


class SendsService:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- integrity --------------------------------------------------------------------

    def seal_row(self, work: Work, send: Send) -> None:
        send.mac = macs.make(work, "send", self.app.integrity.deployment(), *crypto.row_parts(send))

    def row_ok(self, work: Work, send: Send) -> bool:
        return macs.check(work, send.mac, "send", self.app.integrity.deployment(), *crypto.row_parts(send))

    def integrity_event(self, db: Any, work: Work, send: Send, client_addr: str | None) -> None:
        self.app.audit.append(
            db, work, "integrity.failed", actor=None, target=send.id, client_addr=client_addr, what="send"
        )

    @staticmethod
    def shred(send: Send, state: str, now: float) -> None:
        """Forget the copy and its key: nothing left that opens it."""
        send.payload = None
        send.kek_label = None
        send.wrapped_key = None
        send.wrapped_key_mac = None
        send.state = state
        send.finished_at = now

    def describe(self, send: Send) -> str:
        to = f" to {send.recipient_email}" if send.recipient_email else ""
        return f"{send.mode} send{to} of {when(send.created_at)}"

    # -- create -------------------------------------------------------------------------

    def _fields(self, principal: Principal, item_id: Any, secret: Any) -> tuple[ItemFields, str | None]:
        if (item_id is None) == (secret is None):
            raise ValidationFailed("give either item_id or secret")
        if secret is not None:
            if not isinstance(secret, str) or not secret:
                raise ValidationFailed("secret must be a non-empty string")
            return ItemFields.validate({"title": "Secret", "password": secret}), None
        if not is_id(item_id):
            raise NotFound("no such item")
        return self.app.items.get(principal, item_id).fields, item_id

    @audits_integrity
    def create(
        self,
        principal: Principal,
        *,
        mode: Any,
        item_id: Any = None,
        secret: Any = None,
        recipient_email: Any = None,
        expires_in_hours: Any = None,
        max_views: Any = None,
    ) -> Created:
        policy = self.app.settings.sends
        if mode not in MODES:
            raise ValidationFailed('mode must be "user", "code" or "link"')
        hours = _int(
            "expires_in_hours", expires_in_hours, policy.default_expires_in_hours, 1, policy.max_expires_in_hours
        )
        views = _int("max_views", max_views, 1, 1, policy.max_views)
        email: str | None = None
        if recipient_email is not None:
            if not isinstance(recipient_email, str):
                raise ValidationFailed("recipient_email must be an e-mail address")
            email = normalize_email(recipient_email)
        if mode == "user":
            if email is None:
                raise ValidationFailed("a send to a user needs recipient_email")
            if max_views not in (None, 1):
                raise ValidationFailed("a send to a user is received once: max_views must be 1")
        # Validate the secret (and that the caller may read the item) before anything changes.
        fields, source_item = self._fields(principal, item_id, secret)
        # Refused before anything is made (an invitation included); counted with the send.
        with self.app.db.write() as db:
            self._limit(db, principal, count=False)
        if mode == "user":
            assert email is not None
            return self._to_user(principal, fields, source_item, email, hours)
        return self._by_token(principal, mode, fields, source_item, email, hours, views)

    def _limit(self, db: Any, principal: Principal, *, count: bool) -> None:
        """``[sends] creates_per_10_minutes`` per sender; ``count`` in the transaction that
        adds the send (so a refused or failed create counts nothing)."""
        key = f"send-create:{principal.user_id}"
        limit = self.app.settings.sends.creates_per_10_minutes
        self.app.ratelimit.check(db, key, limit, CREATE_WINDOW, "too many sends; wait a few minutes")
        if count:
            self.app.ratelimit.hit(db, key, CREATE_WINDOW)

    def _new_row(self, principal: Principal, mode: str, hours: int, views: int) -> Send:
        now = self.app.clock()
        return Send(
            id=new_id(),
            mode=mode,
            sender_id=principal.user_id,
            state="pending",
            max_views=views,
            views_used=0,
            failed_codes=0,
            created_at=now,
            expires_at=now + hours * HOUR,
        )

    def _to_user(
        self, principal: Principal, fields: ItemFields, source_item: str | None, email: str, hours: int
    ) -> Created:
        with self.app.db.read() as db:
            recipient = db.execute(select(User).where(User.email == email)).scalar_one_or_none()
        invitation: str | None = None
        if recipient is not None and recipient.status == "disabled":
            raise ValidationFailed("this user cannot receive sends")
        if recipient is None:
            # Seed: "the recipient is directed to registration". The enrollment link goes
            # to their mailbox only; without [mail] only an administrator (who could
            # invite them anyway) is handed it, never another user (who could enroll
            # as them). The copy waits under the KEK and is wrapped to their key when
            # they first look at "Received".
            if not self.app.mail.enabled and not principal.is_admin:
                raise Conflict(f"{email} is not a user; ask an administrator to invite them, or send by code or link")
            user, token = self.app.accounts.invite(
                email,
                False,
                principal,
                principal.client_addr,
                by_send=True,
                intro=f'{principal.email} sent you a password; it will be waiting in your "Received" list.',
            )
            recipient_id = user.id
            invitation = None if self.app.mail.enabled else f"/enroll#token={token}"
        else:
            # An active user, or one invited and not enrolled yet: their invitation is left
            # alone (a send never re-issues an enrollment token or changes the account);
            # the copy waits under the KEK until they enroll.
            recipient_id = recipient.id
        invited_now = recipient is None
        send = self._new_row(principal, "user", hours, 1)
        send.recipient_id = recipient_id
        send.recipient_email = email
        plaintext = crypto.encode_fields(fields)
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                user_row = self.app.accounts.checked_user(db, work, recipient_id, principal.user_id)
            if user_row is None:
                raise Conflict("the recipient changed meanwhile; retry")
            if user_row.public_key is None:
                send.payload = work.seal(plaintext, crypto.payload_context(send, "kek"))
                send.kek_label = work.sealed_under(send.payload)
            else:
                self._wrap_to(work, send, user_row, plaintext)
            self.seal_row(work, send)
            with self.app.db.write() as db:
                self._limit(db, principal, count=True)
                db.add(send)
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "send.created",
                    target=send.id,
                    mode="user",
                    recipient=recipient_id,
                    item=source_item,
                    expires_at=send.expires_at,
                    invited=invited_now,
                    waiting=user_row.public_key is None,
                )
                mailed = False
                if not invited_now:
                    mailed = self.app.mail.enqueue(
                        db,
                        work=work,
                        to=email,
                        template="send_received",
                        context={
                            "sender": principal.email,
                            "expires": when(send.expires_at),
                            "link": self.app.mail.link("/received") if self.app.mail.enabled else "",
                        },
                    )
                else:
                    mailed = self.app.mail.enabled
        return Created(send.id, None, None, invitation, mailed)

    def _wrap_to(self, work: Work, send: Send, user: User, plaintext: bytes) -> None:
        """Seal the copy under a fresh key from the token, wrapped to ``user``."""
        if user.public_key is None or not public_key_is_bound(work, user.id, user.public_key, user.public_key_mac):
            raise BrokenBinding("public_key_binding", user.id)
        key = work.new_data_key()
        send.payload = work.encrypt_field(key, plaintext, crypto.payload_context(send, "key"))
        send.kek_label = None
        send.wrapped_key = work.wrap_for_public_key(key, user.public_key)
        send.wrapped_key_mac = bind_send_key(work, send.id, user.id, send.wrapped_key)

    def _by_token(
        self,
        principal: Principal,
        mode: str,
        fields: ItemFields,
        source_item: str | None,
        email: str | None,
        hours: int,
        views: int,
    ) -> Created:
        token = new_opaque(SEND_PREFIX)
        send = self._new_row(principal, mode, hours, views)
        send.token_hash = opaque_hash(token)
        send.recipient_email = email
        plaintext = crypto.encode_fields(fields)
        context = crypto.payload_context(send, mode)
        code: str | None = None
        if mode == "code":
            code = crypto.new_code()
            salt = os.urandom(16)
            canonical = crypto.normalize_code(code)
            assert canonical is not None
            pepper, key, kdf = crypto.code_key(
                self.app.keystore, self.app.settings.crypto, send.id, canonical, salt, None
            )
            send.code_salt, send.code_pepper, send.code_kdf = salt, pepper, kdf
            plaintext = crypto.seal_with_code(key, plaintext, context)
        path = f"/s/{token}"
        with self.app.keystore.work() as work:
            send.payload = work.seal(plaintext, context)
            send.kek_label = work.sealed_under(send.payload)
            self.seal_row(work, send)
            with self.app.db.write() as db:
                self._limit(db, principal, count=True)
                db.add(send)
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "send.created",
                    target=send.id,
                    mode=mode,
                    item=source_item,
                    expires_at=send.expires_at,
                    max_views=views,
                )
                mailed = False
                if email is not None:
                    # The link only: a code never travels in the same e-mail as its link.
                    mailed = self.app.mail.enqueue(
                        db,
                        work=work,
                        to=email,
                        template="send_link",
                        context={
                            "sender": principal.email,
                            "expires": when(send.expires_at),
                            "link": self.app.mail.link(path) if self.app.mail.enabled else "",
                            "code_note": "The sender will give you the code that opens it by another way."
                            if mode == "code"
                            else "",
                        },
                    )
        return Created(send.id, path, code, None, mailed)

    # -- the sender's list and revocation ----------------------------------------------------

    def list_sent(self, principal: Principal) -> list[SentView]:
        now = self.app.clock()
        with self.app.db.read() as db:
            rows = list(
                db.execute(
                    select(Send).where(Send.sender_id == principal.user_id).order_by(Send.created_at.desc(), Send.id)
                ).scalars()
            )
        return [
            SentView(
                s.id,
                s.mode,
                s.recipient_email,
                status_of(s, now),
                s.created_at,
                s.expires_at,
                s.max_views,
                s.views_used,
                s.viewed_at,
                s.viewed_from,
            )
            for s in rows
        ]

    def revoke(self, principal: Principal, send_id: Any) -> None:
        if not is_id(send_id):
            raise NotFound("no such send")
        now = self.app.clock()
        with self.app.keystore.work() as work, self.app.db.write() as db:
            send = db.execute(select(Send).where(Send.id == send_id).with_for_update()).scalar_one_or_none()
            if send is None or send.sender_id != principal.user_id:
                raise NotFound("no such send")
            if send.state == "revoked":
                return
            if send.state != "pending":
                raise Conflict(f"this send is no longer pending ({send.state})")
            if not self.row_ok(work, send):
                self.integrity_event(db, work, send, principal.client_addr)
                db.commit()
                raise NotFound("no such send")
            self.shred(send, "revoked", now)
            self.seal_row(work, send)
            self.app.audit.by(principal, db, work, "send.revoked", target=send.id, mode=send.mode)
