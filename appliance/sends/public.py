"""The recipient's side of code and link sends: the page (GET, consumes nothing)
and the reveal (POST: one view, counted atomically).

Every refusal is the same NotFound: unknown token, expired, used up, revoked,
destroyed, or a row whose MAC fails (that one is audited as an integrity failure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.errors import Forbidden, NotFound
from appliance.items import ItemFields
from appliance.mail import when
from appliance.models import User
from appliance.sends import crypto
from appliance.sends.models import Send
from appliance.sends.sweeper import expire
from appliance.tokens import opaque_hash
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.sends.service import SendsService

GONE = "no such send"
WRONG_CODE = "the code is wrong"


def _token_ok(token: Any) -> bool:
    return isinstance(token, str) and token.startswith("cfx_") and len(token) == 47


class PublicSends:
    def __init__(self, app: Appliance, service: SendsService) -> None:
        self.app = app
        self.service = service

    def _limit(self, client_addr: str | None) -> None:
        policy = self.app.settings.sends
        key = f"send-public:{client_addr or 'unknown'}"
        with self.app.db.write() as db:
            self.app.ratelimit.check(db, key, policy.reveals_per_minute, 60, "too many attempts; wait a minute")
            self.app.ratelimit.hit(db, key, 60)

    def _live(self, send: Send | None, now: float) -> bool:
        return send is not None and send.state == "pending" and send.expires_at > now and send.payload is not None

    @staticmethod
    def _expired(send: Send | None, now: float) -> bool:
        return send is not None and send.state == "pending" and send.expires_at <= now

    def _shred_expired(self, db: Any, work: Any, send: Send, now: float, client_addr: str | None) -> None:
        """An expired send met here is shredded at once (the sweeper would within 30 s);
        committed before the caller's 404 rolls the rest back."""
        if expire(self.app, db, work, send.id, now, client_addr):
            db.commit()

    def open_page(self, token: Any, client_addr: str | None) -> str:
        """The mode of a live send ("code" or "link"); consumes nothing."""
        self._limit(client_addr)
        if not _token_ok(token):
            raise NotFound(GONE)
        now = self.app.clock()
        with self.app.keystore.work() as work, self.app.db.write() as db:
            send = db.execute(select(Send).where(Send.token_hash == opaque_hash(token))).scalar_one_or_none()
            if send is not None and self._expired(send, now):
                self._shred_expired(db, work, send, now, client_addr)
            if send is None or not self._live(send, now):
                raise NotFound(GONE)
            if not self.service.row_ok(work, send):
                self.service.integrity_event(db, work, send, client_addr)
                db.commit()
                raise NotFound(GONE)
            self.app.audit.append(db, work, "send.opened", target=send.id, client_addr=client_addr, mode=send.mode)
            return send.mode

    def reveal(self, token: Any, code: Any, client_addr: str | None) -> ItemFields:
        self._limit(client_addr)
        if not _token_ok(token):
            raise NotFound(GONE)
        token_hash = opaque_hash(token)
        now = self.app.clock()
        with self.app.db.read() as db:
            first = db.execute(select(Send).where(Send.token_hash == token_hash)).scalar_one_or_none()
        if first is not None and self._expired(first, now):
            with self.app.keystore.work() as work, self.app.db.write() as db:
                self._shred_expired(db, work, first, now, client_addr)
        if first is None or not self._live(first, now):
            raise NotFound(GONE)
        # The row MAC (which covers code_kdf, salt and pepper) before anything from the row
        # is trusted: a database writer's Argon2id parameters never reach Argon2id.
        self._require_row(first, client_addr)
        code_key: bytes | None = None
        if first.mode == "code":
            canonical = crypto.normalize_code(code)
            # A malformed code is a wrong code (it counts): no free probing of the format.
            code_key = crypto.code_key_again(self.app.keystore, self.app.settings.crypto, first, canonical or "")
            if code_key is None:
                self._require_row(first, client_addr, ok=False)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            send = db.execute(select(Send).where(Send.token_hash == token_hash).with_for_update()).scalar_one_or_none()
            now = self.app.clock()
            if send is not None and send.id == first.id and self._expired(send, now):
                self._shred_expired(db, work, send, now, client_addr)
            if send is None or not self._live(send, now) or send.id != first.id:
                raise NotFound(GONE)
            if not self.service.row_ok(work, send):
                self.service.integrity_event(db, work, send, client_addr)
                db.commit()
                raise NotFound(GONE)
            assert send.payload is not None
            context = crypto.payload_context(send, send.mode)
            try:
                opened = work.unseal(send.payload, context)
            except DecryptionFailed:
                # The KEK layer names the send: a payload swapped in from another row (or
                # broken) is an integrity failure, never a wrong code that would count.
                self.service.integrity_event(db, work, send, client_addr)
                db.commit()
                raise NotFound(GONE) from None
            if code_key is not None:
                try:
                    opened = crypto.open_with_code(code_key, opened, context)
                except DecryptionFailed:
                    self._wrong_code(db, work, send, client_addr, now)
                    db.commit()
                    raise Forbidden(WRONG_CODE) from None
            send.views_used += 1
            send.viewed_at = now
            send.viewed_from = (client_addr or "")[:64] or None
            last = send.views_used >= send.max_views
            if last:
                self.service.shred(send, "viewed", now)
            self.service.seal_row(work, send)
            self.app.audit.append(
                db,
                work,
                "send.revealed",
                target=send.id,
                client_addr=client_addr,
                mode=send.mode,
                views_left=send.max_views - send.views_used,
            )
            sender = db.get(User, send.sender_id)
            if sender is not None:
                left = send.max_views - send.views_used
                self.app.mail.enqueue(
                    db,
                    work=work,
                    to=sender.email,
                    template="send_revealed",
                    context={
                        "what": self.service.describe(send),
                        "when": when(now),
                        "address": client_addr or "an unknown address",
                        "remaining": "It cannot be opened again; its copy has been destroyed."
                        if last
                        else f"It can be opened {left} more time(s).",
                        "link": self.app.mail.link("/sends") if self.app.mail.enabled else "",
                    },
                )
            return crypto.decode_fields(opened)

    def _require_row(self, send: Send, client_addr: str | None, ok: bool | None = None) -> None:
        """The same 404 as every refusal, audited as an integrity failure, unless the row's
        MAC verifies (``ok=False``: refuse without checking)."""
        with self.app.keystore.work() as work:
            if ok is None:
                ok = self.service.row_ok(work, send)
            if not ok:
                with self.app.db.write() as db:
                    self.service.integrity_event(db, work, send, client_addr)
                raise NotFound(GONE)

    def _wrong_code(self, db: Any, work: Any, send: Send, client_addr: str | None, now: float) -> None:
        send.failed_codes += 1
        destroyed = send.failed_codes >= self.app.settings.sends.max_code_failures
        if destroyed:
            self.service.shred(send, "destroyed", now)
        self.service.seal_row(work, send)
        self.app.audit.append(
            db,
            work,
            "send.failed_code",
            target=send.id,
            client_addr=client_addr,
            failures=send.failed_codes,
            destroyed=destroyed,
        )
