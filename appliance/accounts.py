"""Accounts: invitation, enrollment, two-step login, lockout and admin actions."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from appliance.bindings import bind_public_key
from appliance.errors import (
    AppError,
    ClientError,
    Conflict,
    Forbidden,
    IntegrityFailure,
    Locked,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from appliance.models import LoginTicket, OneTimeToken, User
from appliance.passwords import check_password_strength, check_pin_format
from appliance.sessions import Principal, user_key_context
from appliance.tokens import (
    ENROLL_PREFIX,
    RESET_PREFIX,
    TICKET_PREFIX,
    is_id,
    new_id,
    new_opaque,
    opaque_hash,
)
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from appliance.core import Appliance

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
BAD_LOGIN = "invalid email or password"
LOCKED = "this account is locked after too many wrong PINs; an administrator must unlock it"
BAD_TOKEN = "this token is invalid, expired or already used"  # noqa: S105 - a message, not a secret


@dataclass(frozen=True)
class UserView:
    id: str
    email: str
    is_admin: bool
    status: str
    locked: bool

    @classmethod
    def of(cls, user: User) -> UserView:
        return cls(user.id, user.email, user.is_admin, user.status, user.locked)


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if not EMAIL_RE.match(value):
        raise ValidationFailed("not a valid e-mail address")
    return value


class Accounts:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- invitations and enrollment ----------------------------------------------

    def invite(
        self, email: str, is_admin: bool, actor: Principal | None = None, client_addr: str | None = None
    ) -> tuple[UserView, str]:
        """Create (or re-invite) a user; return the one-time enrollment token."""
        if actor is not None:
            self.require_admin(actor)
        email = normalize_email(email)
        now = self.app.clock()
        token = new_opaque(ENROLL_PREFIX)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            user = db.execute(select(User).where(User.email == email)).scalar_one_or_none()
            if user is not None and user.status != "invited":
                raise Conflict("a user with this e-mail address already exists")
            if user is None:
                user = User(id=new_id(), email=email, is_admin=is_admin, status="invited", created_at=now)
                db.add(user)
                db.flush()
            else:
                user.is_admin = is_admin
                db.execute(
                    delete(OneTimeToken).where(OneTimeToken.user_id == user.id, OneTimeToken.purpose == "enroll")
                )
            db.add(
                OneTimeToken(
                    token_hash=opaque_hash(token),
                    purpose="enroll",
                    user_id=user.id,
                    expires_at=now + self.app.settings.security.enrollment_ttl_seconds,
                    created_by=actor.user_id if actor else None,
                )
            )
            self.app.audit.append(
                db,
                work,
                "user.invited",
                actor=actor.user_id if actor else "cli",
                target=user.id,
                client_addr=client_addr,
                is_admin=is_admin,
            )
            return UserView.of(user), token

    def _claim_token(self, db: Any, token: str, purpose: str) -> OneTimeToken:
        """Mark a one-time token used, atomically; raise if it is not usable."""
        now = self.app.clock()
        if not isinstance(token, str) or len(token) > 200:
            raise ClientError(BAD_TOKEN)
        token_hash = opaque_hash(token)
        result = db.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.token_hash == token_hash,
                OneTimeToken.purpose == purpose,
                OneTimeToken.used_at.is_(None),
                OneTimeToken.expires_at > now,
            )
            .values(used_at=now)
        )
        if result.rowcount != 1:
            raise ClientError(BAD_TOKEN)
        row: OneTimeToken | None = db.get(OneTimeToken, token_hash)
        assert row is not None
        return row

    def _peek_token(self, token: str, purpose: str) -> User:
        now = self.app.clock()
        if not isinstance(token, str) or len(token) > 200:
            raise ClientError(BAD_TOKEN)
        with self.app.db.read() as db:
            row = db.get(OneTimeToken, opaque_hash(token))
            if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= now:
                raise ClientError(BAD_TOKEN)
            user: User | None = db.get(User, row.user_id)
        if user is None:
            raise ClientError(BAD_TOKEN)
        return user

    def enroll(self, token: str, password: str, pin: str, client_addr: str | None = None) -> UserView:
        user = self._peek_token(token, "enroll")
        if user.status != "invited":
            raise ClientError(BAD_TOKEN)
        check_password_strength(password, user.email, self.app.settings.security)
        check_pin_format(pin)
        bits = self.app.settings.crypto.rsa_bits
        salt = os.urandom(16)
        with self.app.keystore.work() as work:
            pepper, pw_hash = self.app.hasher.hash(work, password)
            pin_pepper, pin_key, kdf = self.app.hasher.pin_key(work, user.id, pin, salt, None)
            public_der, private_blob = work.generate_user_keypair(bits, pin_key, user_key_context(user.id))
            with self.app.db.write() as db:
                self._claim_token(db, token, "enroll")
                row = db.get(User, user.id)
                if row is None or row.status != "invited":
                    raise ClientError(BAD_TOKEN)
                row.status = "active"
                row.password_hash = pw_hash
                row.password_pepper = pepper
                row.public_key = public_der
                row.public_key_mac = bind_public_key(work, row.id, public_der)
                row.key_bits = bits
                row.private_key_blob = private_blob
                row.kek_label = work.sealed_under(private_blob)
                row.pin_salt = salt
                row.pin_pepper = pin_pepper
                row.pin_kdf = kdf
                row.enrolled_at = self.app.clock()
                self.app.audit.append(
                    db, work, "user.enrolled", actor=row.id, target=row.id, client_addr=client_addr, key_bits=bits
                )
                return UserView.of(row)

    # -- login ---------------------------------------------------------------------

    def login(self, email: Any, password: Any, client_addr: str | None) -> str:
        """Step one: password. Returns a short-lived single-use login ticket."""
        rules = self.app.settings.security
        email_key = email.strip().lower()[:320] if isinstance(email, str) else ""
        addr_key = f"addr:{client_addr or 'unknown'}"
        # Fixed-size key whatever the input's length (rate_limit_hits.key is 128 chars).
        acct_key = "acct:" + hashlib.sha256(email_key.encode("utf-8", "replace")).hexdigest()
        with self.app.db.write() as db:
            self.app.ratelimit.check(
                db,
                addr_key,
                rules.address_attempts,
                rules.address_window_seconds,
                "too many login attempts from this address; try again later",
            )
            self.app.ratelimit.check(
                db,
                acct_key,
                rules.account_attempts,
                rules.account_window_seconds,
                "too many failed login attempts for this account; try again later",
            )
            # Count the attempt before the (slow) check, so parallel guesses count too;
            # a success clears the account's count below.
            self.app.ratelimit.hit(db, addr_key, rules.address_window_seconds)
            self.app.ratelimit.hit(db, acct_key, rules.account_window_seconds)
        with self.app.db.read() as db:
            user = db.execute(select(User).where(User.email == email_key)).scalar_one_or_none()
        enrolled = user is not None and user.status != "invited"
        ok = self.app.hasher.verify(
            self.app.keystore,
            password if isinstance(password, str) else "",
            user.password_hash if enrolled and user else None,
            user.password_pepper if enrolled and user else None,
        )
        with self.app.keystore.work() as work, self.app.db.write() as db:
            if not ok or user is None:
                self.app.audit.append(
                    db,
                    work,
                    "login.failed",
                    actor=None,
                    target=user.id if user else None,
                    client_addr=client_addr,
                    reason="bad password" if user else "unknown account",
                )
                db.commit()
                raise Unauthorized(BAD_LOGIN)
            refusal: tuple[str, AppError] | None = None
            if user.status == "disabled":
                # The contract: 401 for every refused password step but a lock (423).
                refusal = ("disabled", Unauthorized(BAD_LOGIN))
            elif user.locked:
                refusal = ("locked", Locked(LOCKED))
            if refusal is not None:
                self.app.audit.append(
                    db,
                    work,
                    "login.refused",
                    actor=user.id,
                    target=user.id,
                    client_addr=client_addr,
                    reason=refusal[0],
                )
                db.commit()
                raise refusal[1]
            ticket = new_opaque(TICKET_PREFIX)
            db.add(
                LoginTicket(
                    token_hash=opaque_hash(ticket),
                    user_id=user.id,
                    expires_at=self.app.clock() + rules.login_ticket_ttl_seconds,
                )
            )
            self.app.ratelimit.clear(db, acct_key)
            self.app.audit.append(db, work, "login.password_ok", actor=user.id, target=user.id, client_addr=client_addr)
            return ticket

    def unlock(self, ticket: str, pin: str, client_addr: str | None) -> tuple[str, float]:
        """Step two: ticket + PIN. Returns (session token, expiry)."""
        rules = self.app.settings.security
        if not isinstance(ticket, str) or len(ticket) > 200:
            raise Unauthorized("invalid or expired login ticket")
        check_pin_format(pin)
        with self.app.db.write() as db:
            # Single use, whatever happens next: exactly one request can delete it.
            row = db.execute(
                delete(LoginTicket)
                .where(LoginTicket.token_hash == opaque_hash(ticket))
                .returning(LoginTicket.user_id, LoginTicket.expires_at)
            ).one_or_none()
            if row is None:
                raise Unauthorized("invalid or expired login ticket")
            if row.expires_at <= self.app.clock():
                db.commit()
                raise Unauthorized("invalid or expired login ticket")
            user = db.get(User, row.user_id)
        if user is None or user.status != "active" or user.private_key_blob is None:
            raise Unauthorized("invalid or expired login ticket")
        if user.locked:
            raise Locked(LOCKED)
        assert user.pin_salt is not None and user.pin_pepper and user.pin_kdf
        pin_key = self.app.hasher.pin_key_for(
            self.app.keystore, user.id, pin, user.pin_salt, user.pin_pepper, user.pin_kdf
        )
        with self.app.keystore.work() as work, self.app.db.write() as db:
            # Locked row: concurrent unlocks of one account are counted one by one.
            fresh = db.execute(select(User).where(User.id == user.id).with_for_update()).scalar_one_or_none()
            if fresh is None or fresh.status != "active":
                raise Unauthorized("invalid or expired login ticket")
            if fresh.locked:
                raise Locked(LOCKED)
            try:
                token, expires = self.app.sessions.create(db, work, fresh, pin_key, client_addr)
            except DecryptionFailed:
                fresh.failed_pin_count += 1
                fresh.pin_failures_since_success += 1
                self.app.audit.append(
                    db,
                    work,
                    "login.pin_failed",
                    actor=fresh.id,
                    target=fresh.id,
                    client_addr=client_addr,
                    consecutive=fresh.failed_pin_count,
                )
                if fresh.failed_pin_count >= rules.max_pin_failures:
                    fresh.locked = True
                    revoked = self.app.sessions.revoke_user(db, fresh.id)
                    self.app.audit.append(
                        db,
                        work,
                        "user.locked",
                        actor=None,
                        target=fresh.id,
                        client_addr=client_addr,
                        sessions_revoked=revoked,
                    )
                    db.commit()
                    raise Locked(
                        "too many wrong PINs: the account is now locked; an administrator must unlock it"
                    ) from None
                db.commit()
                raise Unauthorized("wrong PIN") from None
            fresh.failed_pin_count = 0
            fresh.pin_failures_since_success = 0
            self.app.audit.append(db, work, "login.ok", actor=fresh.id, target=fresh.id, client_addr=client_addr)
            return token, expires

    def logout(self, principal: Principal) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.app.sessions.revoke(db, principal.session_id)
            self.app.audit.by(
                principal,
                db,
                work,
                "logout",
                target=principal.user_id,
            )
        self.app.sessions.forget_cached(principal)

    def change_password(self, principal: Principal, current: str, new: str) -> None:
        with self.app.db.read() as db:
            user = db.get(User, principal.user_id)
        if user is None:
            raise Unauthorized("invalid or expired session")
        check_password_strength(new, user.email, self.app.settings.security)
        rules = self.app.settings.security
        acct_key = "acct:" + hashlib.sha256(user.email.encode("utf-8")).hexdigest()
        with self.app.db.write() as db:  # a stolen session must not guess the password freely
            self.app.ratelimit.check(
                db,
                acct_key,
                rules.account_attempts,
                rules.account_window_seconds,
                "too many failed password attempts for this account; try again later",
            )
            self.app.ratelimit.hit(db, acct_key, rules.account_window_seconds)
        correct = self.app.hasher.verify(self.app.keystore, current, user.password_hash, user.password_pepper)
        with self.app.keystore.work() as work:
            if not correct:
                with self.app.db.write() as db:
                    self.app.audit.append(
                        db,
                        work,
                        "user.password_change_failed",
                        actor=user.id,
                        target=user.id,
                        client_addr=principal.client_addr,
                    )
                raise Forbidden("the current password is wrong")
            pepper, pw_hash = self.app.hasher.hash(work, new)
            with self.app.db.write() as db:
                row = db.get(User, user.id)
                assert row is not None
                row.password_hash, row.password_pepper = pw_hash, pepper
                self.app.ratelimit.clear(db, acct_key)
                revoked = self.app.sessions.revoke_user(db, user.id)
                self.app.audit.append(
                    db,
                    work,
                    "user.password_changed",
                    actor=user.id,
                    target=user.id,
                    client_addr=principal.client_addr,
                    sessions_revoked=revoked,
                )
        self.app.sessions.forget_cached(principal)

    # -- administration --------------------------------------------------------------

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden("administrators only")

    def list_users(self, actor: Principal | None) -> list[UserView]:
        if actor is not None:
            self.require_admin(actor)
        with self.app.db.read() as db:
            return [UserView.of(u) for u in db.execute(select(User).order_by(User.email)).scalars()]

    def get_by_email(self, email: str) -> User:
        with self.app.db.read() as db:
            user: User | None = db.execute(
                select(User).where(User.email == normalize_email(email))
            ).scalar_one_or_none()
        if user is None:
            raise NotFound("no user with this e-mail address")
        return user

    def _admin_change(
        self, actor: Principal | None, user_id: str, event: str, client_addr: str | None, **changes: Any
    ) -> UserView:
        if actor is not None:
            self.require_admin(actor)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            user = db.get(User, user_id) if is_id(user_id) else None
            if user is None:
                raise NotFound("no such user")
            if actor is not None and user.id == actor.user_id and changes.get("status") == "disabled":
                raise Conflict("administrators cannot disable their own account")
            for field, value in changes.items():
                setattr(user, field, value)
            revoked = 0
            if changes.get("status") == "disabled":
                revoked = self.app.sessions.revoke_user(db, user.id)
            self.app.audit.append(
                db,
                work,
                event,
                actor=actor.user_id if actor else "cli",
                target=user.id,
                client_addr=client_addr,
                sessions_revoked=revoked,
            )
            return UserView.of(user)

    def admin_unlock(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> UserView:
        """Give back the consecutive-PIN allowance, up to a total bound.

        Past ``max_pin_failures_total`` wrong PINs since the last right one the
        account stays locked: reset-password + unlock must not become an unbounded
        PIN-guessing loop for an administrator.
        """
        if actor is not None:
            self.require_admin(actor)
        with self.app.db.read() as db:
            user = db.get(User, user_id) if is_id(user_id) else None
        limit = self.app.settings.security.max_pin_failures_total
        if user is not None and user.pin_failures_since_success >= limit:
            raise Conflict(
                f"{user.pin_failures_since_success} wrong PINs since the last successful unlock: "
                "the account stays locked and needs recovery (re-enrollment)"
            )
        return self._admin_change(actor, user_id, "user.unlocked", client_addr, locked=False, failed_pin_count=0)

    def disable(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> UserView:
        return self._admin_change(actor, user_id, "user.disabled", client_addr, status="disabled")

    def enable(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> UserView:
        if actor is not None:
            self.require_admin(actor)
        with self.app.db.read() as db:
            user = db.get(User, user_id) if is_id(user_id) else None
        if user is None:
            raise NotFound("no such user")
        status = "active" if user.private_key_blob is not None else "invited"
        return self._admin_change(actor, user_id, "user.enabled", client_addr, status=status)

    def reset_password(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> str:
        """Issue a single-use token that lets the user choose a new password.

        It opens no data: the user's private key stays wrapped under their PIN.
        """
        if actor is not None:
            self.require_admin(actor)
        token = new_opaque(RESET_PREFIX)
        now = self.app.clock()
        with self.app.keystore.work() as work, self.app.db.write() as db:
            user = db.get(User, user_id) if is_id(user_id) else None
            if user is None:
                raise NotFound("no such user")
            if user.status != "active":
                raise Conflict("only enrolled, enabled users can have their password reset")
            db.execute(delete(OneTimeToken).where(OneTimeToken.user_id == user.id, OneTimeToken.purpose == "reset"))
            db.add(
                OneTimeToken(
                    token_hash=opaque_hash(token),
                    purpose="reset",
                    user_id=user.id,
                    expires_at=now + self.app.settings.security.enrollment_ttl_seconds,
                    created_by=actor.user_id if actor else None,
                )
            )
            revoked = self.app.sessions.revoke_user(db, user.id)
            self.app.audit.append(
                db,
                work,
                "user.password_reset_issued",
                actor=actor.user_id if actor else "cli",
                target=user.id,
                client_addr=client_addr,
                sessions_revoked=revoked,
            )
        return token

    def complete_reset(self, token: str, new_password: str, client_addr: str | None = None) -> None:
        user = self._peek_token(token, "reset")
        check_password_strength(new_password, user.email, self.app.settings.security)
        with self.app.keystore.work() as work:
            pepper, pw_hash = self.app.hasher.hash(work, new_password)
            with self.app.db.write() as db:
                self._claim_token(db, token, "reset")
                row = db.get(User, user.id)
                if row is None or row.status != "active":
                    raise ClientError(BAD_TOKEN)
                row.password_hash, row.password_pepper = pw_hash, pepper
                self.app.sessions.revoke_user(db, row.id)
                self.app.audit.append(
                    db, work, "user.password_reset", actor=row.id, target=row.id, client_addr=client_addr
                )

    def me(self, principal: Principal) -> UserView:
        with self.app.db.read() as db:
            user = db.get(User, principal.user_id)
        if user is None:
            raise Unauthorized("invalid or expired session")
        return UserView.of(user)


__all__ = ["Accounts", "IntegrityFailure", "UserView"]
