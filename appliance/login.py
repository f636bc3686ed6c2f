"""Two-step login: password (a short-lived ticket), then PIN (a session).

What a database writer cannot do here (docs/security.md, "database writer"):

- mint a login ticket: each ticket row carries a MAC under the HSM ``bind`` root
  over its hash, user, expiry and a fingerprint of the user's password hash, so a
  row inserted without the password step, or issued before a password change or
  an admin reset, does not unlock;
- plant a password hash (their own, on a victim's row): the user row's MAC covers
  it;
- lower or roll back the PIN failure counts: they are in the user row, whose MAC
  is anchored in the token (appliance/integrity), and each wrong PIN moves the
  anchor. The total bound (``max_pin_failures_total``) is checked *before* each
  attempt, so it is exact: nobody, an administrator looping reset + unlock
  included, gets more guesses than it says.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import delete, select

from appliance.accounts import account_key
from appliance.errors import AppError, Locked, Unauthorized
from appliance.integrity import USER, BrokenRow, Domain, audits_integrity, macs
from appliance.mail import when
from appliance.models import LoginTicket, User
from appliance.passwords import check_pin_format
from appliance.sessions import Principal, user_key_context
from appliance.tokens import TICKET_PREFIX, new_opaque, opaque_hash
from hsm.errors import DecryptionFailed
from hsm.keystore import Work
from hsm.labels import RootKind

if TYPE_CHECKING:
    from appliance.core import Appliance

T = TypeVar("T")

BAD_LOGIN = "invalid email or password"
BAD_TICKET = "invalid or expired login ticket"
LOCKED = "this account is locked after too many wrong PINs; an administrator must unlock it"
LOCKED_FOR_GOOD = "this account is locked after too many wrong PINs; it needs recovery"


def _ticket_parts(token_hash: str, user_id: str, expires_at: float, password_hash: str | None) -> tuple[Any, ...]:
    return (token_hash, user_id, repr(float(expires_at)), macs.password_fingerprint(password_hash))


class Login:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- step one: the password ------------------------------------------------------

    @audits_integrity
    def login(self, email: Any, password: Any, client_addr: str | None) -> str:
        """Returns a short-lived single-use login ticket."""
        rules = self.app.settings.security
        email_key = email.strip().lower()[:320] if isinstance(email, str) else ""
        addr_key = f"addr:{client_addr or 'unknown'}"
        acct_key = account_key(email_key)
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
        with self.app.keystore.work() as work, self.app.db.read() as db:
            user = db.execute(select(User).where(User.email == email_key)).scalar_one_or_none()
            if user is not None:
                # The password hash is trusted only under the row's MAC.
                user = self.app.integrity.require(db, work, USER, user, actor=user.id, client_addr=client_addr)
        enrolled = user is not None and user.status != "invited"
        ok = self.app.hasher.verify(
            self.app.keystore,
            password if isinstance(password, str) else "",
            user.password_hash if enrolled and user else None,
            user.password_pepper if enrolled and user else None,
        )
        rehash = self._pepper_moved(password, user) if ok and enrolled and user is not None else None
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
            refusal = self._refusal(user)
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
            password_hash = user.password_hash
            if rehash is not None:
                # The pepper rotated (appliance/keyops): the hash moves to the new version
                # now that the password is known, unless it changed meanwhile.
                with self.app.accounts.change_user(db, work, user.id, user.id, client_addr) as moved:
                    if moved.password_hash == user.password_hash:
                        moved.password_pepper, moved.password_hash = rehash
                    password_hash = moved.password_hash
            ticket = new_opaque(TICKET_PREFIX)
            expires = self.app.clock() + rules.login_ticket_ttl_seconds
            row = LoginTicket(token_hash=opaque_hash(ticket), user_id=user.id, expires_at=expires)
            row.mac = macs.make(
                work,
                "login-ticket",
                self.app.integrity.deployment(),
                *_ticket_parts(row.token_hash, user.id, expires, password_hash),
            )
            db.add(row)
            self.app.ratelimit.clear(db, acct_key)
            self.app.audit.append(db, work, "login.password_ok", actor=user.id, target=user.id, client_addr=client_addr)
            return ticket

    def _pepper_moved(self, password: Any, user: User) -> tuple[str, str] | None:
        """A new hash under the newest pepper when the user's is older, else None."""
        with self.app.keystore.work() as work:
            if work.current_label(RootKind.PEPPER) == user.password_pepper:
                return None
            return self.app.hasher.hash(work, password)

    def _refusal(self, user: User) -> tuple[str, AppError] | None:
        if user.status == "disabled":
            # The contract: 401 for every refused password step but a lock (423).
            return ("disabled", Unauthorized(BAD_LOGIN))
        if user.pin_failures_since_success >= self.app.settings.security.max_pin_failures_total:
            return ("locked", Locked(LOCKED_FOR_GOOD))
        if user.locked:
            return ("locked", Locked(LOCKED))
        return None

    # -- step two: the PIN -------------------------------------------------------------

    @audits_integrity
    def unlock(self, ticket: Any, pin: Any, client_addr: str | None) -> tuple[str, float]:
        """Ticket + PIN. Returns (session token, expiry)."""
        if not isinstance(ticket, str) or len(ticket) > 200:
            raise Unauthorized(BAD_TICKET)
        check_pin_format(pin)
        with self.app.db.write() as db:
            # Single use, whatever happens next: exactly one request can delete it.
            found = db.execute(
                delete(LoginTicket)
                .where(LoginTicket.token_hash == opaque_hash(ticket))
                .returning(LoginTicket.user_id, LoginTicket.expires_at, LoginTicket.mac)
            ).one_or_none()
            if found is None:
                raise Unauthorized(BAD_TICKET)
            if found.expires_at <= self.app.clock():
                db.commit()
                raise Unauthorized(BAD_TICKET)
            user = db.get(User, found.user_id)
        if user is None:
            raise Unauthorized(BAD_TICKET)
        with self.app.keystore.work() as work, self.app.db.read() as db:
            user = self.app.integrity.require(db, work, USER, user, actor=found.user_id, client_addr=client_addr)
            parts = _ticket_parts(
                opaque_hash(ticket), found.user_id, found.expires_at, user.password_hash if user else None
            )
            if user is None or not macs.check(work, found.mac, "login-ticket", self.app.integrity.deployment(), *parts):
                # Forged, or issued before a password change or an admin reset.
                raise Unauthorized(BAD_TICKET)
        if user.status != "active" or user.private_key_blob is None:
            raise Unauthorized(BAD_TICKET)
        refusal = self._refusal(user)
        if refusal is not None:
            raise refusal[1]
        assert user.pin_salt is not None and user.pin_pepper and user.pin_kdf
        pin_key = self.app.hasher.pin_key_for(
            self.app.keystore, user.id, pin, user.pin_salt, user.pin_pepper, user.pin_kdf
        )
        repin = None
        with self.app.keystore.work() as work:
            if work.current_label(RootKind.PEPPER) != user.pin_pepper:
                salt = os.urandom(16)
                repin = (salt, *self.app.hasher.pin_key(work, user.id, pin, salt, None))
        return self._try_pin(user.id, pin_key, client_addr, repin)

    def _try_pin(
        self,
        user_id: str,
        pin_key: bytes,
        client_addr: str | None,
        repin: tuple[bytes, str, bytes, str] | None = None,
    ) -> tuple[str, float]:
        def open_session(db: Any, work: Work, user: User) -> tuple[str, float]:
            nonlocal pin_key
            if repin is not None and user.private_key_blob is not None:
                # The pepper rotated: the PIN key moves to the new version now that the
                # PIN is known (the private key's middle layer re-wrapped, same pair).
                salt, pepper, new_key, kdf = repin
                context = user_key_context(user.id)
                blob = work.rewrap_private_key(user.private_key_blob, context, pin_key, new_key, context, "pin")
                with self.app.accounts.change_user(db, work, user.id, user.id, client_addr) as row:
                    row.private_key_blob, row.kek_label = blob, work.sealed_under(blob)
                    row.pin_salt, row.pin_pepper, row.pin_kdf = salt, pepper, kdf
                pin_key = new_key
            reason = self.app.userkeys.rotation_due(work, user)
            if reason is not None:
                self.app.sessions.revoke_user(db, work, user.id)  # they hold the old private key
                self.app.userkeys.rotate(db, work, user, pin_key, pin_key, reason)
            self.app.recovery.escrow(db, work, user, pin_key)  # users enrolled before recovery was enabled
            token, expires = self.app.sessions.create(db, work, user, pin_key, client_addr)
            self.app.audit.append(db, work, "login.ok", actor=user.id, target=user.id, client_addr=client_addr)
            return token, expires

        return self.with_pin_attempt(user_id, pin_key, client_addr, open_session)

    def with_pin_attempt(
        self, user_id: str, pin_key: bytes, client_addr: str | None, on_success: Callable[[Any, Work, User], T]
    ) -> T:
        """Check a PIN (its key) against the user's private key, counting it first.

        1. The attempt is counted (and the account locked if it reaches a limit) and
           *committed* before the PIN is tried: if that write fails, no PIN is tried.
           A database writer who makes the count fail (a trigger, a lock) learns nothing.
        2. The PIN is tried in the token.
        3. A right PIN clears the counts and the lock it may have set, and runs
           ``on_success`` in that transaction; a wrong one is audited (and, if it
           locked the account, ends its sessions)."""
        with self.app.keystore.work() as work:
            locks, blob = self._count_attempt(work, user_id, client_addr)
            try:
                work.open_private_key(blob, user_key_context(user_id), pin_key)
                right = True
            except DecryptionFailed:
                right = False
            with self.app.db.write() as db:
                # Anchor locks in one order everywhere (users, vaults, sessions).
                self.app.integrity.lock(db, Domain.USERS)
                fresh = db.execute(select(User).where(User.id == user_id).with_for_update()).scalar_one_or_none()
                if fresh is None:
                    raise Unauthorized(BAD_TICKET)
                fresh = self.app.integrity.require(db, work, USER, fresh, actor=user_id, client_addr=client_addr)
                if fresh is None:
                    raise Unauthorized(BAD_TICKET)
                if not right:
                    self._settle_failure(db, work, fresh, locks, client_addr)
                    db.commit()
                    if locks:
                        raise Locked("too many wrong PINs: the account is now locked; an administrator must unlock it")
                    raise Unauthorized("wrong PIN")
                with self.app.accounts.change_user(db, work, fresh.id, fresh.id, client_addr) as row:
                    row.failed_pin_count = 0
                    row.pin_failures_since_success = 0
                    row.locked = False
                return on_success(db, work, fresh)

    def _count_attempt(self, work: Work, user_id: str, client_addr: str | None) -> tuple[bool, bytes]:
        """Count one PIN attempt before it is made (own transaction). Returns whether
        this attempt locks the account if it is wrong, and the private key blob."""
        rules = self.app.settings.security
        with self.app.db.write() as db:
            self.app.integrity.lock(db, Domain.USERS)
            # Locked row: concurrent attempts on one account are counted one by one.
            fresh = db.execute(select(User).where(User.id == user_id).with_for_update()).scalar_one_or_none()
            if fresh is None:
                raise Unauthorized(BAD_TICKET)
            fresh = self.app.integrity.require(db, work, USER, fresh, actor=user_id, client_addr=client_addr)
            if fresh is None or fresh.status != "active" or fresh.private_key_blob is None:
                raise Unauthorized(BAD_TICKET)
            refusal = self._refusal(fresh)
            if refusal is not None:
                raise refusal[1]
            with self.app.accounts.change_user(db, work, fresh.id, fresh.id, client_addr) as row:
                row.failed_pin_count += 1
                row.pin_failures_since_success += 1
                locks = (
                    row.failed_pin_count >= rules.max_pin_failures
                    or row.pin_failures_since_success >= rules.max_pin_failures_total
                )
                if locks:
                    row.locked = True
            blob = fresh.private_key_blob
        assert blob is not None
        return locks, blob

    def _settle_failure(self, db: Any, work: Work, user: User, locked_now: bool, client_addr: str | None) -> None:
        self.app.audit.append(
            db,
            work,
            "login.pin_failed",
            actor=user.id,
            target=user.id,
            client_addr=client_addr,
            consecutive=user.failed_pin_count,
            total=user.pin_failures_since_success,
        )
        if locked_now:
            revoked = self.app.sessions.revoke_user(db, work, user.id)
            self.app.audit.append(
                db,
                work,
                "user.locked",
                actor=None,
                target=user.id,
                client_addr=client_addr,
                sessions_revoked=revoked,
            )
            self.app.mail.enqueue(
                db, work=work, to=user.email, template="account_locked", context={"when": when(self.app.clock())}
            )

    # -- logout ------------------------------------------------------------------------------

    def logout(self, principal: Principal) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.app.sessions.revoke(db, work, principal.session_id)
            self.app.audit.by(principal, db, work, "logout", target=principal.user_id)
        self.app.sessions.forget_cached(principal)


__all__ = ["BAD_LOGIN", "LOCKED", "BrokenRow", "Login"]
