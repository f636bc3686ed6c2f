"""User key pairs rotate, so that a private key taken once opens nothing shared after.

Whoever holds the database *and* the token PIN can, with one of the user's
session tokens or the user's PIN, unwrap that user's private key with a template
of their own on a token that does not enforce unwrap templates (SoftHSM: see
``hsm/policy.py``) and read it. Rotation bounds what that is worth: a new pair is
generated in the token, each vault key the user holds is unwrapped with the old
private key and wrapped to the new public key *inside the token*, and the old
pair's blobs and wrapped copies are replaced in the same transaction. A key taken
before the rotation opens none of the wrapped copies made after it (vault keys
also rotate when members leave).

A pair rotates:

- when the user changes their PIN (``change_pin``);
- at the user's next unlock after an administrator asked for it
  (``request_rotation``: ``coffre user rotate-key EMAIL``, the admin API);
- at the first unlock after the pair is older than ``[crypto] user_key_max_age_days``.

The user's other sessions end (they hold the old private key); the session being
opened, or the one changing the PIN, carries the new one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.bindings import bind_member_key, bind_public_key, member_key_is_bound
from appliance.errors import Forbidden, Unauthorized
from appliance.integrity import MEMBER, USER, BrokenRow, Domain, audits_integrity
from appliance.models import Session as SessionRow
from appliance.models import User, VaultMember
from appliance.passwords import check_pin_format
from appliance.pin_policy import check_pin_policy
from appliance.sessions import Principal, session_context, user_key_context
from hsm.errors import DecryptionFailed
from hsm.keystore import Work
from hsm.private_keys import FORMAT_TOKEN_WRAPPED

if TYPE_CHECKING:
    from appliance.core import Appliance

DAY = 86400.0


class UserKeys:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    def rotation_due(self, work: Work, user: User) -> str | None:
        """Why ``user``'s pair must be replaced now, or None."""
        if user.key_rotation_due:
            return "requested"
        assert user.private_key_blob is not None
        if work.private_key_format(user.private_key_blob, user_key_context(user.id)) != FORMAT_TOKEN_WRAPPED:
            return "format"  # wrapped before the token's unwrap template guarded it
        max_age = self.app.settings.crypto.user_key_max_age_days
        if max_age <= 0 or user.key_created_at is None:
            return None
        return "age" if self.app.clock() - user.key_created_at >= max_age * DAY else None

    def rotate(self, db: Any, work: Work, user: User, old_inner: bytes, new_inner: bytes, reason: str) -> int:
        """Give ``user`` (a checked row inside ``db``'s transaction) a new key pair,
        wrapped under ``new_inner``; re-wrap every vault key they hold. Raises
        ``DecryptionFailed`` when ``old_inner`` does not open the current pair."""
        assert user.private_key_blob is not None
        context = user_key_context(user.id)
        old_private = work.open_private_key(user.private_key_blob, context, old_inner)
        bits = self.app.settings.crypto.rsa_bits
        public_der, private_blob = work.generate_user_keypair(bits, new_inner, context)
        # The vaults' row locks first (sorted: no deadlock between two rotations), so no
        # vault key rotation interleaves; then the memberships as they are under them.
        vault_ids = sorted(db.execute(select(VaultMember.vault_id).where(VaultMember.user_id == user.id)).scalars())
        for vault_id in vault_ids:
            self.app.vaults.lock(db, vault_id, exclusive=True)
        db.expire_all()
        members = list(db.execute(select(VaultMember).where(VaultMember.user_id == user.id)).scalars())
        rewrapped: list[tuple[VaultMember, bytes, str]] = []
        for member in members:
            checked = self.app.integrity.require(db, work, MEMBER, member, actor=user.id)
            if checked is None:
                continue
            if not member_key_is_bound(
                work, member.vault_id, user.id, member.key_version, member.wrapped_key, member.wrapped_key_mac
            ):
                raise BrokenRow("vault_key", member.vault_id, user.id)
            try:
                vault_key = work.unwrap_with_private_key(old_private, member.wrapped_key, extractable=True)
            except DecryptionFailed:
                raise BrokenRow("vault_key", member.vault_id, user.id) from None
            wrapped = work.wrap_for_public_key(vault_key, public_der)
            rewrapped.append(
                (member, wrapped, bind_member_key(work, member.vault_id, user.id, member.key_version, wrapped))
            )
        folder_keys = self.app.folders.keys.rewrapped_for(db, work, user.id, old_private, public_der)
        if rewrapped or folder_keys:
            touched = {m.vault_id for m, _, _ in rewrapped} | {k.vault_id for k, _, _ in folder_keys}
            with self.app.integrity.changing(db, work, Domain.VAULTS, *sorted(touched)):
                for member, wrapped, mac in rewrapped:
                    member.wrapped_key, member.wrapped_key_mac = wrapped, mac
                for copy, wrapped, mac in folder_keys:
                    copy.wrapped_key, copy.wrapped_key_mac = wrapped, mac
        with self.app.accounts.change_user(db, work, user.id, user.id) as row:
            row.public_key = public_der
            row.public_key_mac = bind_public_key(work, row.id, public_der)
            row.key_bits = bits
            row.private_key_blob = private_blob
            row.kek_label = work.sealed_under(private_blob)
            row.key_generation = (row.key_generation or 0) + 1
            row.key_created_at = self.app.clock()
            row.key_rotation_due = False
        self.app.recovery.escrow(db, work, user, new_inner)
        self.app.recovery.rewrap_pickups(db, work, user.id, old_private, public_der)
        self.app.audit.append(
            db,
            work,
            "user.key_rotated",
            actor=user.id,
            target=user.id,
            generation=user.key_generation,
            vault_keys=len(rewrapped),
            folder_keys=len(folder_keys),
            reason=reason,
        )
        return len(rewrapped)

    @audits_integrity
    def request_rotation(self, actor: Principal | None, user_id: str, client_addr: str | None = None) -> None:
        """An administrator asks for a new pair: made at the user's next unlock (their
        PIN is needed to open the old private key; nobody else can)."""
        if actor is not None:
            self.app.accounts.require_admin(actor)
        actor_id = actor.user_id if actor else None
        with self.app.keystore.work() as work, self.app.db.write() as db:
            with self.app.accounts.change_user(db, work, user_id, actor_id, client_addr) as user:
                if user.status != "active":
                    raise Forbidden("only enrolled users have a key pair")
                user.key_rotation_due = True
            self.app.audit.append(
                db,
                work,
                "user.key_rotation_requested",
                actor=actor_id or "cli",
                target=user_id,
                client_addr=client_addr,
            )

    @audits_integrity
    def change_pin(self, principal: Principal, current_pin: Any, new_pin: Any) -> None:
        """Change the PIN: a new key pair wrapped under the new PIN; this session
        keeps working (re-wrapped under its own secret), the others end. A wrong
        current PIN counts as a wrong PIN at unlock (a stolen session cannot guess)."""
        check_pin_format(current_pin)
        check_pin_format(new_pin)
        check_pin_policy(new_pin)
        with self.app.keystore.work() as work, self.app.db.read() as db:
            user = self.app.accounts.checked_user(db, work, principal.user_id, principal.user_id)
        if user is None or user.status != "active":
            raise Unauthorized("invalid or expired session")
        assert user.pin_salt is not None and user.pin_pepper and user.pin_kdf
        old_inner = self.app.hasher.pin_key_for(
            self.app.keystore, user.id, current_pin, user.pin_salt, user.pin_pepper, user.pin_kdf
        )
        salt = os.urandom(16)
        with self.app.keystore.work() as work:
            pepper, new_inner, kdf = self.app.hasher.pin_key(work, user.id, new_pin, salt, None)
        self.app.login.with_pin_attempt(
            user.id,
            old_inner,
            principal.client_addr,
            lambda db, work, row: self._finish_pin_change(
                db, work, row, principal, old_inner, new_inner, salt, pepper, kdf
            ),
        )
        self.app.sessions.forget_cached(principal)

    def _finish_pin_change(
        self,
        db: Any,
        work: Work,
        user: User,
        principal: Principal,
        old_inner: bytes,
        new_inner: bytes,
        salt: bytes,
        pepper: str,
        kdf: str,
    ) -> None:
        self.rotate(db, work, user, old_inner, new_inner, "pin_changed")
        with self.app.accounts.change_user(db, work, user.id, user.id, principal.client_addr) as row:
            row.pin_salt, row.pin_pepper, row.pin_kdf = salt, pepper, kdf
        current = db.get(SessionRow, principal.session_id)
        if current is not None:
            assert user.private_key_blob is not None
            current.key_blob = work.rewrap_private_key(
                user.private_key_blob,
                user_key_context(user.id),
                new_inner,
                principal.token.wrapping_key(),
                session_context(current.id, user.id),
                "session",
            )
            current.kek_label = work.sealed_under(current.key_blob)
        others = [
            sid
            for (sid,) in db.execute(
                select(SessionRow.id).where(SessionRow.user_id == user.id, SessionRow.id != principal.session_id)
            )
        ]
        for sid in others:
            self.app.sessions.revoke(db, work, sid)
        self.app.audit.append(
            db,
            work,
            "user.pin_changed",
            actor=user.id,
            target=user.id,
            client_addr=principal.client_addr,
            sessions_revoked=len(others),
        )


__all__ = ["USER", "UserKeys"]
