"""The recovery set-up, the officers' shares, and the escrow of users' private keys.

The recovery key pair (RSA-3072) is generated in the token. Its private key is
stored like a user's (``hsm/private_keys.py``, format 2): wrapped by the token under
the user-key root (unwrapped only as sensitive and non-extractable), that under
AES-256-GCM with the 256-bit *recovery secret* as the caller key (in the process,
like a PIN key), and the whole sealed under the KEK. We chose this over importing
the secret as a session AES key for a KWP: the same, tested three layers as users'
keys, and the private key is never extractable, even to the token-PIN holder with
the secret.

The secret is split M-of-N with SLIP-39 (``shamir-mnemonic``), one share per
officer, each sealed to that officer's public key (a fresh AES key OAEP-wrapped to
it, the share under AES-GCM in the token) until the officer picks it up, once, in
their own session; the sealed copy is then deleted. The secret and the shares
exist in this process only during the ceremony, and Coffre keeps none.

Escrow: with recovery enabled, each user's private key (its token-wrapped inner
layer, which only the token opens) is encrypted under a per-user AES key that is
OAEP-wrapped to the recovery public key: at enrollment, at each key rotation, and
at the next unlock of users enrolled before (the PIN key is at hand then).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import shamir_mnemonic
from sqlalchemy import delete, select

from appliance.bindings import public_key_is_bound
from appliance.errors import Conflict, Forbidden, Gone, IntegrityFailure, NotFound, ValidationFailed
from appliance.integrity import macs
from appliance.models import RecoveryConfig, RecoveryEscrow, RecoveryPickup, User
from appliance.sessions import Principal, user_key_context
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

RECOVERY_BITS = 3072
NOT_ENABLED = "recovery is not enabled"


def _h(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


def config_context(version: int) -> bytes:
    return f"coffre-recovery-key|v{version}".encode()


def pickup_context(version: int, officer_id: str) -> bytes:
    return f"coffre-recovery-pickup|v{version}|{officer_id}".encode()


def escrow_context(user_id: str, generation: int) -> bytes:
    return f"coffre-recovery-escrow|{user_id}|{generation}".encode()


@dataclass(frozen=True)
class RecoveryStatus:
    enabled: bool
    version: int = 0
    threshold: int = 0
    officers: tuple[str, ...] = ()
    pending_pickups: tuple[str, ...] = ()
    escrowed: int = 0
    users: int = 0


class Recovery:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- the configuration --------------------------------------------------------------

    def _config_parts(self, row: RecoveryConfig) -> tuple[Any, ...]:
        return (row.version, row.active, _h(row.public_key), _h(row.private_blob), row.officers, row.threshold)

    def config(self, db: Any, work: Work) -> RecoveryConfig | None:
        """The active configuration, its MAC checked, or None when disabled."""
        row: RecoveryConfig | None = db.execute(
            select(RecoveryConfig).where(RecoveryConfig.active.is_(True)).order_by(RecoveryConfig.version.desc())
        ).scalar_one_or_none()
        if row is None:
            return None
        if not macs.check(work, row.mac, "recovery-config", self.app.integrity.deployment(), *self._config_parts(row)):
            raise IntegrityFailure()
        return row

    def require_config(self, db: Any, work: Work) -> RecoveryConfig:
        row = self.config(db, work)
        if row is None:
            raise Conflict(NOT_ENABLED)
        return row

    @staticmethod
    def officers_of(row: RecoveryConfig) -> list[str]:
        return list(json.loads(row.officers))

    def share_print(self, work: Work, version: int, index: int, share: str) -> str:
        return macs.make(work, "recovery-share", self.app.integrity.deployment(), version, index, share)

    def share_matches(self, work: Work, row: RecoveryConfig, index: int, share: str) -> bool:
        stored = json.loads(row.share_prints).get(str(index))
        deployment = self.app.integrity.deployment()
        return macs.check(work, stored, "recovery-share", deployment, row.version, index, share)

    # -- the set-up ceremony ------------------------------------------------------------

    def init(self, officer_emails: list[str], threshold: int, actor: Principal | None = None) -> RecoveryStatus:
        """Generate the recovery key pair and seal one SLIP-39 share per officer."""
        from appliance.accounts import Accounts, normalize_email

        if actor is not None:
            Accounts.require_admin(actor)
        emails = [normalize_email(e) for e in officer_emails if e.strip()]
        if len(set(emails)) != len(emails):
            raise ValidationFailed("each officer is named once")
        self.check_threshold(threshold, len(emails))
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                if self.config(db, work) is not None:
                    raise Conflict("recovery is already enabled (coffre recovery rotate replaces it)")
                version = 1 + max((v for (v,) in db.execute(select(RecoveryConfig.version))), default=0)
                officers = self.officer_rows(db, work, emails)
            return self.create(work, officers, threshold, version, actor)

    @staticmethod
    def check_threshold(threshold: int, officers: int) -> None:
        if not 2 <= threshold <= officers <= 16:
            raise ValidationFailed("the threshold must be at least 2 and at most the number of officers (up to 16)")

    @staticmethod
    def officer_rows(db: Any, work: Work, emails: list[str]) -> list[User]:
        officers = []
        for email in emails:
            user = db.execute(select(User).where(User.email == email)).scalar_one_or_none()
            if user is None or user.status != "active" or user.public_key is None:
                raise NotFound(f"officers must be enrolled, active users: {email}")
            if not public_key_is_bound(work, user.id, user.public_key, user.public_key_mac):
                raise IntegrityFailure()
            officers.append(user)
        return officers

    def create(
        self,
        work: Work,
        officers: list[User],
        threshold: int,
        version: int,
        actor: Principal | None,
        escrow_keys: dict[str, Any] | None = None,
    ) -> RecoveryStatus:
        """A new recovery key pair and shares; with ``escrow_keys`` (user id -> the
        user's escrow key, extractable, in the token) a rotation: each escrow key is
        wrapped again to the new public key, in the same transaction."""
        secret = os.urandom(32)
        public_der, private_blob = work.generate_user_keypair(RECOVERY_BITS, secret, config_context(version))
        groups = shamir_mnemonic.generate_mnemonics(1, [(threshold, len(officers))], secret, b"", True, 0)
        del secret
        mnemonics = groups[0]
        prints: dict[str, str] = {}
        pickups = []
        for officer, share in zip(officers, mnemonics, strict=True):
            index = shamir_mnemonic.Share.from_mnemonic(share).index
            prints[str(index)] = self.share_print(work, version, index, share)
            key = work.new_data_key()
            assert officer.public_key is not None
            pickups.append(
                RecoveryPickup(
                    version=version,
                    officer_id=officer.id,
                    wrapped_key=work.wrap_for_public_key(key, officer.public_key),
                    sealed=work.encrypt_field(key, share.encode("ascii"), pickup_context(version, officer.id)),
                )
            )
        del mnemonics, groups
        row = RecoveryConfig(
            version=version,
            active=True,
            public_key=public_der,
            private_blob=private_blob,
            officers=json.dumps([o.id for o in officers]),
            threshold=threshold,
            share_prints=json.dumps(prints, sort_keys=True),
            created_at=self.app.clock(),
            created_by=actor.user_id if actor else "cli",
        )
        row.mac = macs.make(work, "recovery-config", self.app.integrity.deployment(), *self._config_parts(row))
        with self.app.db.write() as db:
            for old in db.execute(select(RecoveryConfig).where(RecoveryConfig.active.is_(True))).scalars():
                old.active, old.private_blob = False, b""  # the old shares open nothing any more
                old.mac = macs.make(work, "recovery-config", self.app.integrity.deployment(), *self._config_parts(old))
            db.execute(delete(RecoveryPickup).where(RecoveryPickup.version != version))
            db.add(row)
            db.add_all(pickups)
            rewrapped = 0
            for escrow in db.execute(select(RecoveryEscrow)).scalars() if escrow_keys is not None else ():
                key, user = (escrow_keys or {}).get(escrow.user_id), db.get(User, escrow.user_id)
                if key is None or user is None:
                    db.delete(escrow)  # re-escrowed at the user's next unlock
                    continue
                escrow.version, escrow.wrapped_key = version, work.wrap_for_public_key(key, public_der)
                escrow.mac = self.escrow_mac(work, escrow, user)
                rewrapped += 1
            self.app.audit.append(
                db,
                work,
                "recovery.rotated" if escrow_keys is not None else "recovery.initialized",
                escrows_rewrapped=rewrapped,
                actor=actor.user_id if actor else "cli",
                target=str(version),
                officers=[o.id for o in officers],
                threshold=threshold,
            )
        return self.status()

    # -- the officers' pickup ----------------------------------------------------------------

    def pickup(self, principal: Principal) -> str:
        """The caller's share, once (``Gone`` afterwards); the sealed copy is deleted."""
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                cfg = self.require_config(db, work)
                row = db.get(RecoveryPickup, (cfg.version, principal.user_id))
            if principal.user_id not in self.officers_of(cfg):
                raise Forbidden("only recovery officers have a share")
            if row is None:
                raise Gone("your share was already picked up")
            private = self.app.sessions.private_key(work, principal)
            try:
                key = work.unwrap_with_private_key(private, row.wrapped_key)
                share = work.decrypt_field(key, row.sealed, pickup_context(cfg.version, principal.user_id)).decode()
            except DecryptionFailed:
                raise IntegrityFailure() from None
            with self.app.db.write() as db:
                gone = db.execute(
                    delete(RecoveryPickup).where(
                        RecoveryPickup.version == cfg.version, RecoveryPickup.officer_id == principal.user_id
                    )
                )
                if not getattr(gone, "rowcount", 0):
                    raise Gone("your share was already picked up")
                self.app.audit.by(principal, db, work, "recovery.share_picked_up", target=str(cfg.version))
        return share

    def rewrap_pickups(self, db: Any, work: Work, user_id: str, old_private: Any, public_der: bytes) -> int:
        """An officer's key pair rotates before they pick their share up: the share's
        key follows, inside the token (``userkeys.rotate``)."""
        done = 0
        for pickup in db.execute(select(RecoveryPickup).where(RecoveryPickup.officer_id == user_id)).scalars():
            try:
                key = work.unwrap_with_private_key(old_private, pickup.wrapped_key, extractable=True)
            except DecryptionFailed:
                continue
            pickup.wrapped_key = work.wrap_for_public_key(key, public_der)
            done += 1
        return done

    # -- escrow -------------------------------------------------------------------------------

    def escrow(self, db: Any, work: Work, user: User, caller_key: bytes) -> bool:
        """Escrow ``user``'s current private key if recovery is enabled and it is not
        already (inside the caller's transaction). True when a copy was written."""
        cfg = self.config(db, work)
        if cfg is None or user.private_key_blob is None:
            return False
        existing = db.get(RecoveryEscrow, user.id)
        if existing is not None and (existing.version, existing.key_generation) == (cfg.version, user.key_generation):
            return False
        try:
            inner = work.private_key_inner(user.private_key_blob, user_key_context(user.id), caller_key)
        except DecryptionFailed:
            return False  # a format 1 blob: escrowed after its rotation
        key = work.new_data_key()
        wrapped = work.wrap_for_public_key(key, cfg.public_key)
        blob = work.encrypt_field(key, inner, escrow_context(user.id, user.key_generation))
        row = existing or RecoveryEscrow(user_id=user.id)
        row.version, row.key_generation, row.wrapped_key, row.blob = cfg.version, user.key_generation, wrapped, blob
        row.mac = self.escrow_mac(work, row, user)
        if existing is None:
            db.add(row)
        return True

    def escrow_mac(self, work: Work, row: RecoveryEscrow, user: User) -> str:
        return macs.make(work, "recovery-escrow", self.app.integrity.deployment(), *self._escrow_parts(row, user))

    @staticmethod
    def _escrow_parts(row: RecoveryEscrow, user: User) -> tuple[Any, ...]:
        return (row.user_id, row.version, row.key_generation, _h(row.wrapped_key), _h(row.blob), _h(user.public_key))

    def escrow_is_bound(self, work: Work, row: RecoveryEscrow, user: User) -> bool:
        deployment = self.app.integrity.deployment()
        return macs.check(work, row.mac, "recovery-escrow", deployment, *self._escrow_parts(row, user))

    # -- status -------------------------------------------------------------------------------

    def status(self) -> RecoveryStatus:
        with self.app.keystore.work() as work, self.app.db.read() as db:
            cfg = self.config(db, work)
            if cfg is None:
                return RecoveryStatus(False)
            ids = self.officers_of(cfg)
            emails = {u.id: u.email for u in db.execute(select(User).where(User.id.in_(ids))).scalars()}
            pending = {
                p for (p,) in db.execute(select(RecoveryPickup.officer_id).where(RecoveryPickup.version == cfg.version))
            }
            users = list(db.execute(select(User.id, User.key_generation).where(User.status == "active")))
            escrows = {
                e.user_id: e.key_generation
                for e in db.execute(select(RecoveryEscrow).where(RecoveryEscrow.version == cfg.version)).scalars()
            }
        covered = sum(1 for uid, gen in users if escrows.get(uid) == gen)
        return RecoveryStatus(
            True,
            cfg.version,
            cfg.threshold,
            tuple(emails.get(i, i) for i in ids),
            tuple(emails.get(i, i) for i in ids if i in pending),
            covered,
            len(users),
        )


__all__ = ["NOT_ENABLED", "Recovery", "RecoveryStatus"]
