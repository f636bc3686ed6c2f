"""A recovery: an administrator opens a request for a user (who gets a password-reset
token); M different officers each submit their share in their own session; the
user sets a new password and PIN with the token, and only then is the recovery
secret rebuilt, in this process, for that one operation.

Where the shares wait: each submitted share is sealed to the request's own key
pair, generated in the token when the request opens, whose private key is wrapped
(as a user's is) under a key derived from the user's reset token. Coffre keeps only
the token's hash, so the shares open only when the user comes back with the token.
A request that expires, is replaced or refused loses its key pair and its shares.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import shamir_mnemonic
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, func, select

from appliance.errors import ClientError, Conflict, Forbidden, NotFound, ValidationFailed
from appliance.models import LoginTicket, RecoveryEscrow, RecoveryRequest, RecoveryRequestShare, User
from appliance.onetime import BAD_TOKEN
from appliance.passwords import check_password_strength, check_pin_format
from appliance.pin_policy import check_pin_policy
from appliance.recovery.ceremony import RECOVERY_BITS, config_context, escrow_context
from appliance.sessions import Principal, user_key_context
from appliance.tokens import is_id, new_id
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

WINDOW_SECONDS = 24 * 3600
WAITING = "waiting for the officers"


def _request_context(request_id: str) -> bytes:
    return f"coffre-recovery-request|{request_id}".encode()


def _share_context(request_id: str, officer_id: str) -> bytes:
    return f"coffre-recovery-request-share|{request_id}|{officer_id}".encode()


def _token_key(token: str, request_id: str) -> bytes:
    """The request key pair's caller key: only the holder of the reset token has it."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_request_context(request_id))
    return hkdf.derive(token.encode("utf-8"))


@dataclass(frozen=True)
class RequestView:
    id: str
    email: str
    status: str
    shares_received: int
    threshold: int
    expires_at: float


class RecoveryRequests:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    @property
    def recovery(self) -> Any:
        return self.app.recovery

    # -- housekeeping ---------------------------------------------------------------------

    def _close(self, db: Any, row: RecoveryRequest, status: str) -> None:
        """Nothing left behind: the shares and the request key pair go."""
        db.execute(delete(RecoveryRequestShare).where(RecoveryRequestShare.request_id == row.id))
        row.status, row.public_key, row.private_blob = status, None, None

    def expire(self) -> int:
        now = self.app.clock()
        with self.app.keystore.work() as work, self.app.db.write() as db:
            due = list(
                db.execute(
                    select(RecoveryRequest).where(RecoveryRequest.status == "open", RecoveryRequest.expires_at <= now)
                ).scalars()
            )
            for row in due:
                self._close(db, row, "expired")
                self.app.audit.append(db, work, "recovery.expired", actor=None, target=row.user_id, request=row.id)
        return len(due)

    def _received(self, db: Any, request_id: str) -> int:
        return int(
            db.execute(
                select(func.count())
                .select_from(RecoveryRequestShare)
                .where(RecoveryRequestShare.request_id == request_id)
            ).scalar_one()
        )

    # -- an administrator opens a request ---------------------------------------------------

    def open(
        self, actor: Principal | None, email: str, client_addr: str | None = None, window: float = WINDOW_SECONDS
    ) -> tuple[str, str]:
        """Returns (request id, the user's reset token)."""
        from appliance.accounts import Accounts, normalize_email

        if actor is not None:
            Accounts.require_admin(actor)
        actor_id = actor.user_id if actor else "cli"
        self.expire()
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                cfg = self.recovery.require_config(db, work)
                user = db.execute(select(User).where(User.email == normalize_email(email))).scalar_one_or_none()
                if user is None or user.status != "active":
                    raise NotFound("no enrolled, active user with this e-mail address")
                escrow = db.get(RecoveryEscrow, user.id)
                if escrow is None or (escrow.version, escrow.key_generation) != (cfg.version, user.key_generation):
                    raise Conflict("this user's private key is not escrowed yet (it is at their next unlock)")
            request_id = new_id()
            with self.app.db.write() as db:
                row = self.app.accounts.checked_user(db, work, user.id, actor_id)
                if row is None:
                    raise NotFound("no enrolled, active user with this e-mail address")
                token = self.app.accounts.tokens.issue(db, work, row, "reset", actor.user_id if actor else None)
                public_der, private_blob = work.generate_user_keypair(
                    RECOVERY_BITS, _token_key(token, request_id), _request_context(request_id)
                )
                for old in db.execute(
                    select(RecoveryRequest).where(RecoveryRequest.user_id == user.id, RecoveryRequest.status == "open")
                ).scalars():
                    self._close(db, old, "cancelled")
                now = self.app.clock()
                db.add(
                    RecoveryRequest(
                        id=request_id,
                        user_id=user.id,
                        requested_by=actor_id,
                        status="open",
                        version=cfg.version,
                        threshold=cfg.threshold,
                        created_at=now,
                        expires_at=now + window,
                        public_key=public_der,
                        private_blob=private_blob,
                    )
                )
                db.execute(delete(LoginTicket).where(LoginTicket.user_id == user.id))
                revoked = self.app.sessions.revoke_user(db, work, user.id)
                self.app.audit.append(
                    db,
                    work,
                    "recovery.requested",
                    actor=actor_id,
                    target=user.id,
                    client_addr=client_addr,
                    request=request_id,
                    sessions_revoked=revoked,
                )
        return request_id, token

    # -- listing ------------------------------------------------------------------------------

    def list_requests(self, principal: Principal) -> list[RequestView]:
        self.expire()
        with self.app.keystore.work() as work, self.app.db.read() as db:
            cfg = self.recovery.require_config(db, work)
            if not principal.is_admin and principal.user_id not in self.recovery.officers_of(cfg):
                raise Forbidden("administrators and recovery officers only")
            rows = db.execute(
                select(RecoveryRequest, User.email)
                .join(User, User.id == RecoveryRequest.user_id)
                .order_by(RecoveryRequest.created_at.desc())
            ).all()
            return [
                RequestView(r.id, email, r.status, self._received(db, r.id), r.threshold, r.expires_at)
                for r, email in rows
            ]

    # -- an officer submits a share -----------------------------------------------------------

    def submit(self, principal: Principal, request_id: str, share: Any) -> tuple[int, int]:
        self.expire()
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                cfg = self.recovery.require_config(db, work)
                row = db.get(RecoveryRequest, request_id) if is_id(request_id) else None
            if principal.user_id not in self.recovery.officers_of(cfg):
                raise Forbidden("only recovery officers submit shares")
            if row is None:
                raise NotFound("no such recovery request")
            if row.status != "open" or row.public_key is None:
                raise Conflict(f"this recovery request is {row.status}")
            if principal.user_id in (row.requested_by, row.user_id):
                self._refused(work, principal, row, "requester_or_subject")
                raise Forbidden("the administrator who opened a request, or its subject, cannot approve it")
            try:
                parsed = shamir_mnemonic.Share.from_mnemonic(share if isinstance(share, str) else "")
            except (shamir_mnemonic.MnemonicError, ValueError, KeyError):
                self._refused(work, principal, row, "malformed")
                raise ValidationFailed("this is not a valid recovery share") from None
            text = " ".join(share.split())
            if row.version != cfg.version or not self.recovery.share_matches(work, cfg, parsed.index, text):
                self._refused(work, principal, row, "wrong_share")
                raise ValidationFailed("this share does not open this deployment's recovery key")
            key = work.new_data_key()
            sealed = RecoveryRequestShare(
                request_id=row.id,
                officer_id=principal.user_id,
                member_index=parsed.index,
                wrapped_key=work.wrap_for_public_key(key, row.public_key),
                sealed=work.encrypt_field(key, text.encode("ascii"), _share_context(row.id, principal.user_id)),
                created_at=self.app.clock(),
            )
            with self.app.db.write() as db:
                fresh = db.get(RecoveryRequest, row.id)
                if fresh is None or fresh.status != "open":
                    raise Conflict("this recovery request is closed")
                taken = db.execute(
                    select(RecoveryRequestShare.officer_id, RecoveryRequestShare.member_index).where(
                        RecoveryRequestShare.request_id == row.id
                    )
                ).all()
                if any(o == principal.user_id for o, _ in taken):
                    raise Conflict("you already submitted a share for this request")
                if any(i == parsed.index for _, i in taken):
                    raise Conflict("this share was already submitted")
                db.add(sealed)
                db.flush()
                received = self._received(db, row.id)
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "recovery.share_submitted",
                    target=row.user_id,
                    request=row.id,
                    shares_received=received,
                    threshold=row.threshold,
                )
        return received, row.threshold

    def _refused(self, work: Work, principal: Principal, row: RecoveryRequest, reason: str) -> None:
        with self.app.db.write() as db:
            self.app.audit.by(
                principal, db, work, "recovery.refused", target=row.user_id, request=row.id, reason=reason
            )

    # -- the user completes ---------------------------------------------------------------------

    def complete(self, token: str, new_password: str, new_pin: Any, client_addr: str | None = None) -> None:
        """Rebuild the secret, open the escrow in the token, and wrap the user's own
        private key under the new PIN; set the new password. ``Conflict`` (409)
        while fewer than M shares are in: nothing changes."""
        self.expire()
        with self.app.keystore.work() as work:
            user = self.app.accounts.tokens.peek(work, token, "reset")
            check_password_strength(new_password, user.email, self.app.settings.security)
            check_pin_format(new_pin)
            check_pin_policy(new_pin)
            with self.app.db.read() as db:
                cfg = self.recovery.require_config(db, work)
                row = db.execute(
                    select(RecoveryRequest).where(RecoveryRequest.user_id == user.id, RecoveryRequest.status == "open")
                ).scalar_one_or_none()
                if row is None or row.private_blob is None:
                    raise Conflict("no recovery request is open for this account")
                shares = list(
                    db.execute(select(RecoveryRequestShare).where(RecoveryRequestShare.request_id == row.id)).scalars()
                )
                escrow = db.get(RecoveryEscrow, user.id)
            if len(shares) < row.threshold:
                raise Conflict(f"{WAITING}: {len(shares)} of {row.threshold} shares are in")
            if escrow is None or escrow.version != row.version or not self.recovery.escrow_is_bound(work, escrow, user):
                self._fail(work, row, "escrow")
                raise Conflict("this user's escrowed key does not verify; the request was refused")
            try:
                request_key = work.open_private_key(
                    row.private_blob, _request_context(row.id), _token_key(token, row.id)
                )
            except DecryptionFailed:
                raise ClientError(BAD_TOKEN) from None
            inner = self._open_escrow(work, row, cfg.private_blob, request_key, shares, escrow)
            salt = os.urandom(16)
            pin_pepper, pin_key, kdf = self.app.hasher.pin_key(work, user.id, new_pin, salt, None)
            context = user_key_context(user.id)
            blob = work.private_key_from_inner(inner, pin_key, "pin", context)
            pepper, pw_hash = self.app.hasher.hash(work, new_password)
            with self.app.db.write() as db:
                self.app.accounts.tokens.claim(db, token, "reset")
                with self.app.accounts.change_user(db, work, user.id, user.id, client_addr) as fresh:
                    if fresh.status != "active" or fresh.password_hash != user.password_hash:
                        raise ClientError(BAD_TOKEN)
                    fresh.password_hash, fresh.password_pepper = pw_hash, pepper
                    fresh.private_key_blob, fresh.kek_label = blob, work.sealed_under(blob)
                    fresh.pin_salt, fresh.pin_pepper, fresh.pin_kdf = salt, pin_pepper, kdf
                    fresh.locked, fresh.failed_pin_count, fresh.pin_failures_since_success = False, 0, 0
                self.app.accounts._end_credentials(db, work, user.id)
                live = db.get(RecoveryRequest, row.id)
                assert live is not None
                self._close(db, live, "completed")
                self.app.audit.append(
                    db,
                    work,
                    "recovery.completed",
                    actor=user.id,
                    target=user.id,
                    client_addr=client_addr,
                    request=row.id,
                )

    def _open_escrow(
        self,
        work: Work,
        row: RecoveryRequest,
        recovery_blob: bytes,
        request_key: Any,
        shares: list[RecoveryRequestShare],
        escrow: RecoveryEscrow,
    ) -> bytes:
        try:
            mnemonics = []
            for s in shares:
                key = work.unwrap_with_private_key(request_key, s.wrapped_key)
                mnemonics.append(work.decrypt_field(key, s.sealed, _share_context(row.id, s.officer_id)).decode())
            secret = shamir_mnemonic.combine_mnemonics(mnemonics)
            del mnemonics
            recovery_key = work.open_private_key(recovery_blob, config_context(row.version), secret)
            del secret
            escrow_key = work.unwrap_with_private_key(recovery_key, escrow.wrapped_key)
            return work.decrypt_field(escrow_key, escrow.blob, escrow_context(escrow.user_id, escrow.key_generation))
        except (DecryptionFailed, shamir_mnemonic.MnemonicError, ValueError):
            self._fail(work, row, "combine")
            raise Conflict("the shares did not open the recovery key; the request was refused") from None

    def _fail(self, work: Work, row: RecoveryRequest, reason: str) -> None:
        with self.app.db.write() as db:
            live = db.get(RecoveryRequest, row.id)
            if live is not None:
                self._close(db, live, "refused")
            self.app.audit.append(
                db, work, "recovery.refused", actor=None, target=row.user_id, request=row.id, reason=reason
            )


__all__ = ["WAITING", "RecoveryRequests", "RequestView"]
