"""Accounts: invitation, enrollment, password changes and admin actions.

Login (password, then PIN) is in ``appliance/login.py``. Every change of a user
row goes through ``Accounts.change_user``: the row's MAC is checked first and the
users anchor moves (appliance/integrity), so the change can be neither forged nor
rolled back by a database writer.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from appliance.bindings import bind_public_key
from appliance.errors import (
    ClientError,
    Conflict,
    Forbidden,
    IntegrityFailure,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from appliance.integrity import USER, Domain, audits_integrity
from appliance.mail import when
from appliance.models import LoginTicket, User
from appliance.models import Session as SessionRow
from appliance.onetime import BAD_TOKEN, OneTimeTokens
from appliance.passwords import check_password_strength, check_pin_format
from appliance.pin_policy import check_pin_policy
from appliance.sessions import Principal, user_key_context
from appliance.tokens import is_id, new_id
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


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


def account_key(email: str) -> str:
    """The rate-limit key of an account (fixed size whatever the input)."""
    return "acct:" + hashlib.sha256(email.encode("utf-8", "replace")).hexdigest()


class Accounts:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.tokens = OneTimeTokens(app)

    # -- the one way a user row changes -------------------------------------------------

    @contextmanager
    def change_user(
        self, db: Any, work: Work, user_id: str, actor: str | None = None, client_addr: str | None = None
    ) -> Iterator[User]:
        """The user's row, checked, for the caller to change; the users anchor moves."""
        user = db.get(User, user_id) if is_id(user_id) else None
        if user is None:
            raise NotFound("no such user")
        checked = self.app.integrity.require(db, work, USER, user, actor=actor, client_addr=client_addr)
        if checked is None:
            raise NotFound("no such user")
        with self.app.integrity.changing(db, work, Domain.USERS, user_id):
            yield checked

    def checked_user(self, db: Any, work: Work, user_id: str, actor: str | None = None) -> User | None:
        """A user row whose MAC verifies (``BrokenRow`` otherwise), or None."""
        user = db.get(User, user_id) if is_id(user_id) else None
        if user is None:
            return None
        checked: User | None = self.app.integrity.require(db, work, USER, user, actor=actor)
        return checked

    # -- invitations and enrollment ----------------------------------------------

    @audits_integrity
    def invite(
        self,
        email: str,
        is_admin: bool,
        actor: Principal | None = None,
        client_addr: str | None = None,
        *,
        intro: str = "",
        by_send: bool = False,
    ) -> tuple[UserView, str]:
        """Create (or re-invite) a user; return the one-time enrollment token (also
        e-mailed when [mail] is set). ``by_send``: a user sending a password to an
        address that has no account (not an administrator; never an admin invite; an
        existing account, invited or not, is a Conflict). The token is for the caller
        to hand on only when the actor is an administrator (or the CLI)."""
        if actor is not None and not by_send:
            self.require_admin(actor)
        if by_send and is_admin:
            raise Forbidden("a send cannot invite an administrator")
        email = normalize_email(email)
        now = self.app.clock()
        actor_id = actor.user_id if actor else None
        with self.app.keystore.work() as work, self.app.db.write() as db:
            user = db.execute(select(User).where(User.email == email)).scalar_one_or_none()
            # A send invites only an address with no account: re-inviting (a new token,
            # the old one dead, is_admin reset) is an administrator's act.
            if user is not None and (by_send or user.status != "invited"):
                raise Conflict("a user with this e-mail address already exists")
            if user is None:
                user = User(
                    id=new_id(),
                    email=email,
                    is_admin=is_admin,
                    status="invited",
                    locked=False,
                    failed_pin_count=0,
                    pin_failures_since_success=0,
                    key_generation=0,
                    key_rotation_due=False,
                    created_at=now,
                )
                self.app.integrity.seal_new(db, work, USER, user)
                db.add(user)
                db.flush()
            else:
                with self.change_user(db, work, user.id, actor_id, client_addr) as row:
                    row.is_admin = is_admin
            token = self.tokens.issue(db, work, user, "enroll", actor_id)
            self.app.mail.enqueue(
                db,
                work=work,
                to=user.email,
                template="invitation",
                context={
                    "intro": intro,
                    "expires": when(now + self.app.settings.security.enrollment_ttl_seconds),
                    "link": self.app.mail.link(f"/enroll#token={token}") if self.app.mail.enabled else "",
                },
            )
            self.app.audit.append(
                db,
                work,
                "user.invited",
                actor=actor_id or "cli",
                target=user.id,
                client_addr=client_addr,
                is_admin=is_admin,
            )
            return UserView.of(user), token

    @audits_integrity
    def enroll(self, token: str, password: str, pin: str, client_addr: str | None = None) -> UserView:
        with self.app.keystore.work() as work:
            user = self.tokens.peek(work, token, "enroll")
        if user.status != "invited":
            raise ClientError(BAD_TOKEN)
        check_password_strength(password, user.email, self.app.settings.security)
        check_pin_format(pin)
        check_pin_policy(pin)
        bits = self.app.settings.crypto.rsa_bits
        salt = os.urandom(16)
        with self.app.keystore.work() as work:
            pepper, pw_hash = self.app.hasher.hash(work, password)
            pin_pepper, pin_key, kdf = self.app.hasher.pin_key(work, user.id, pin, salt, None)
            public_der, private_blob = work.generate_user_keypair(bits, pin_key, user_key_context(user.id))
            with self.app.db.write() as db:
                self.tokens.claim(db, token, "enroll")
                with self.change_user(db, work, user.id, user.id, client_addr) as row:
                    if row.status != "invited":
                        raise ClientError(BAD_TOKEN)
                    now = self.app.clock()
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
                    row.enrolled_at = now
                    row.key_generation = 1
                    row.key_created_at = now
                self.app.recovery.escrow(db, work, row, pin_key)
                self.app.audit.append(
                    db, work, "user.enrolled", actor=row.id, target=row.id, client_addr=client_addr, key_bits=bits
                )
                return UserView.of(row)

    # -- login (appliance/login.py) ----------------------------------------------------

    def login(self, email: Any, password: Any, client_addr: str | None) -> str:
        return self.app.login.login(email, password, client_addr)

    def unlock(self, ticket: Any, pin: Any, client_addr: str | None) -> tuple[str, float]:
        return self.app.login.unlock(ticket, pin, client_addr)

    def logout(self, principal: Principal) -> None:
        self.app.login.logout(principal)

    # -- passwords -------------------------------------------------------------------------

    def _end_credentials(self, db: Any, work: Work, user_id: str) -> int:
        """After a password change or reset: pending login tickets and reset tokens
        die (their MACs also name the old password), and every session ends."""
        db.execute(delete(LoginTicket).where(LoginTicket.user_id == user_id))
        self.tokens.revoke_resets(db, user_id)
        return self.app.sessions.revoke_user(db, work, user_id)

    def _end_other_sessions(self, db: Any, work: Work, user_id: str, keep: str) -> int:
        others = [
            sid
            for (sid,) in db.execute(select(SessionRow.id).where(SessionRow.user_id == user_id, SessionRow.id != keep))
        ]
        for sid in others:
            self.app.sessions.revoke(db, work, sid)
        return len(others)

    @audits_integrity
    def change_password(self, principal: Principal, current: str, new: str, end_other_sessions: bool = True) -> None:
        """Change the login password. The caller's session stays open (it just proved
        the current password; the private key is not under the password); the
        account's other sessions end unless ``end_other_sessions`` is False. Pending
        login tickets and reset tokens always die."""
        with self.app.db.read() as db:
            user = db.get(User, principal.user_id)
        if user is None:
            raise Unauthorized("invalid or expired session")
        check_password_strength(new, user.email, self.app.settings.security)
        rules = self.app.settings.security
        acct_key = account_key(user.email)
        with self.app.db.write() as db:  # a stolen session must not guess the password freely
            self.app.ratelimit.check(
                db,
                acct_key,
                rules.account_attempts,
                rules.account_window_seconds,
                "too many failed password attempts for this account; try again later",
            )
            self.app.ratelimit.hit(db, acct_key, rules.account_window_seconds)
        with self.app.keystore.work() as work, self.app.db.read() as db:
            self.app.integrity.require(db, work, USER, user, actor=user.id)
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
                with self.change_user(db, work, user.id, user.id, principal.client_addr) as row:
                    if row.password_hash != user.password_hash:
                        raise Conflict("the password changed meanwhile; retry")
                    row.password_hash, row.password_pepper = pw_hash, pepper
                self.app.ratelimit.clear(db, acct_key)
                db.execute(delete(LoginTicket).where(LoginTicket.user_id == user.id))
                self.tokens.revoke_resets(db, user.id)
                revoked = self._end_other_sessions(db, work, user.id, principal.session_id) if end_other_sessions else 0
                self.app.audit.append(
                    db,
                    work,
                    "user.password_changed",
                    actor=user.id,
                    target=user.id,
                    client_addr=principal.client_addr,
                    sessions_revoked=revoked,
                    other_sessions_kept=not end_other_sessions,
                )

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

    @audits_integrity
    def _admin_change(
        self, actor: Principal | None, user_id: str, event: str, client_addr: str | None, **changes: Any
    ) -> UserView:
        if actor is not None:
            self.require_admin(actor)
        actor_id = actor.user_id if actor else None
        with self.app.keystore.work() as work, self.app.db.write() as db:
            with self.change_user(db, work, user_id, actor_id, client_addr) as user:
                if actor is not None and user.id == actor.user_id and changes.get("status") == "disabled":
                    raise Conflict("administrators cannot disable their own account")
                if event == "user.unlocked":
                    self._check_unlock_allowed(user)
                if event == "user.enabled":
                    changes["status"] = "active" if user.private_key_blob is not None else "invited"
                for name, value in changes.items():
                    setattr(user, name, value)
            revoked = 0
            if changes.get("status") == "disabled":
                revoked = self.app.sessions.revoke_user(db, work, user.id)
            self.app.audit.append(
                db,
                work,
                event,
                actor=actor_id or "cli",
                target=user.id,
                client_addr=client_addr,
                sessions_revoked=revoked,
            )
            return UserView.of(user)

    def _check_unlock_allowed(self, user: User) -> None:
        """Past ``max_pin_failures_total`` wrong PINs since the last right one the
        account stays locked: reset-password + unlock must not become an unbounded
        PIN-guessing loop for an administrator (the count is in the MACed, anchored
        user row, so a database writer cannot lower it either)."""
        limit = self.app.settings.security.max_pin_failures_total
        if user.pin_failures_since_success >= limit:
            raise Conflict(
                f"{user.pin_failures_since_success} wrong PINs since the last successful unlock: "
                "the account stays locked and needs recovery (re-enrollment)"
            )

    def admin_unlock(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> UserView:
        """Give back the consecutive-PIN allowance, up to the total bound."""
        return self._admin_change(actor, user_id, "user.unlocked", client_addr, locked=False, failed_pin_count=0)

    def disable(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> UserView:
        return self._admin_change(actor, user_id, "user.disabled", client_addr, status="disabled")

    def enable(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> UserView:
        return self._admin_change(actor, user_id, "user.enabled", client_addr)

    @audits_integrity
    def reset_password(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> str:
        """Issue a single-use token that lets the user choose a new password.

        It opens no data: the user's private key stays wrapped under their PIN.
        Pending login tickets die, and so do the user's sessions.
        """
        if actor is not None:
            self.require_admin(actor)
        actor_id = actor.user_id if actor else None
        with self.app.keystore.work() as work, self.app.db.write() as db:
            user = self.checked_user(db, work, user_id, actor_id)
            if user is None:
                raise NotFound("no such user")
            if user.status != "active":
                raise Conflict("only enrolled, enabled users can have their password reset")
            token = self.tokens.issue(db, work, user, "reset", actor_id)
            db.execute(delete(LoginTicket).where(LoginTicket.user_id == user.id))
            revoked = self.app.sessions.revoke_user(db, work, user.id)
            self.app.audit.append(
                db,
                work,
                "user.password_reset_issued",
                actor=actor_id or "cli",
                target=user.id,
                client_addr=client_addr,
                sessions_revoked=revoked,
            )
        return token

    @audits_integrity
    def complete_reset(self, token: str, new_password: str, client_addr: str | None = None) -> None:
        with self.app.keystore.work() as work:
            user = self.tokens.peek(work, token, "reset")
        check_password_strength(new_password, user.email, self.app.settings.security)
        with self.app.keystore.work() as work:
            pepper, pw_hash = self.app.hasher.hash(work, new_password)
            with self.app.db.write() as db:
                self.tokens.claim(db, token, "reset")
                with self.change_user(db, work, user.id, user.id, client_addr) as row:
                    if row.status != "active" or row.password_hash != user.password_hash:
                        raise ClientError(BAD_TOKEN)
                    row.password_hash, row.password_pepper = pw_hash, pepper
                self._end_credentials(db, work, row.id)
                self.app.audit.append(
                    db, work, "user.password_reset", actor=row.id, target=row.id, client_addr=client_addr
                )

    def me(self, principal: Principal) -> UserView:
        with self.app.db.read() as db:
            user = db.get(User, principal.user_id)
        if user is None:
            raise Unauthorized("invalid or expired session")
        return UserView.of(user)


__all__ = ["Accounts", "IntegrityFailure", "UserView", "account_key", "normalize_email"]
