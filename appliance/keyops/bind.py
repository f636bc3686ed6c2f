"""Bind root rotation: every MAC made with the bind root, re-made under the new
version, each only after the old one verifies (a rotation never blesses a row a
database writer changed: such a row stays under the old version and is reported
as a failure).

- users: the public-key binding, and the row MAC (re-sealed by the integrity
  machinery: ``Accounts.change_user`` moves the user's anchor counter);
- vaults: each member's and each folder reader's wrapped-key binding, and the row
  MACs of the vault, its members, folders, folder access and folder keys
  (``Integrity.changing`` on the vault's bucket, under its lock);
- sessions: the idle MAC (compare-and-swap on ``last_seen_at``: a request that
  touched the session meanwhile wins, the sweep takes it again) and the row MACs;
- recovery: the configuration's and each escrow's MAC;
- sends: each send's row MAC and the binding of its wrapped key (under a row lock,
  each only after the old one verifies).

Not moved (they reference the old version until they go): one-time tokens and
login tickets (they expire), and the recovery configuration's share prints (they
are MACs over the officers' shares, which only the officers hold: the next
`coffre recovery rotate` makes new ones). ``coffre keys retire`` counts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, and_, or_, select, update

from appliance.bindings import (
    bind_folder_key,
    bind_member_key,
    bind_public_key,
    bind_send_key,
    folder_key_is_bound,
    member_key_is_bound,
    public_key_is_bound,
    send_key_is_bound,
)
from appliance.integrity import MEMBER, BrokenRow, Domain, macs
from appliance.integrity.rows import FOLDER_KEY
from appliance.keyops.registry import Row, RowRefused
from appliance.models import (
    Base,
    Folder,
    FolderAccess,
    FolderKey,
    RecoveryConfig,
    RecoveryEscrow,
    Session,
    User,
    VaultMember,
)
from appliance.sends.models import Send

if TYPE_CHECKING:
    from appliance.core import Appliance
    from hsm.keystore import Work


def _stale(column: Any, target: str) -> Any:
    return and_(column.is_not(None), ~column.like(f"{target}:%"))


class _BucketMover:
    """Rows grouped by the key the change is made under (a user, a vault)."""

    name = ""
    table = ""

    def __init__(self) -> None:
        self.refused: list[tuple[str, str]] = []

    def _keys(self, app: Appliance, target: str, after: str | None = None, limit: int | None = None) -> list[str]:
        raise NotImplementedError

    def count(self, app: Appliance, target: str) -> int:
        return len(self._keys(app, target))

    def stale(self, app: Appliance, target: str) -> list[str]:
        return self._keys(app, target)

    def pending(self, app: Appliance, target: str, after: str | None, limit: int) -> list[Row]:
        return [{"id": key} for key in self._keys(app, target, after, limit)]

    def rows(self, app: Appliance, ids: list[str]) -> list[Row]:
        return [{"id": i} for i in ids]

    def row_id(self, row: Row) -> str:
        return str(row["id"])

    def compute(self, app: Appliance, work: Work, row: Row, target: str) -> dict[str, Any] | None:
        return {}  # everything happens under the anchor lock, in ``apply``

    def apply(self, db: Any, work: Work, row: Row, values: dict[str, Any]) -> bool:
        raise NotImplementedError

    def apply_many(self, db: Any, work: Work, changes: list[tuple[Row, dict[str, Any]]]) -> list[str]:
        for row, values in changes:
            try:
                self.apply(db, work, row, values)
            except RowRefused as exc:
                self.refused.append((self.row_id(row), str(exc)))
            except BrokenRow:
                self.refused.append((self.row_id(row), "its row MAC does not verify"))
        return []


class UserBindings(_BucketMover):
    name, table = "users.bind", "users"

    def __init__(self, app: Appliance) -> None:
        super().__init__()
        self.app = app

    def _keys(self, app: Appliance, target: str, after: str | None = None, limit: int | None = None) -> list[str]:
        query = select(User.id).where(or_(_stale(User.row_mac, target), _stale(User.public_key_mac, target)))
        if after is not None:
            query = query.where(User.id > after)
        with app.db.read() as db:
            return list(db.execute(query.order_by(User.id).limit(limit)).scalars())

    def apply(self, db: Any, work: Work, row: Row, values: dict[str, Any]) -> bool:
        user_id = row["id"]
        with self.app.accounts.change_user(db, work, user_id, "keyops") as user:
            if user.public_key is not None:
                if not public_key_is_bound(work, user_id, user.public_key, user.public_key_mac):
                    raise RowRefused("the public key binding does not verify")
                user.public_key_mac = bind_public_key(work, user_id, user.public_key)
        return True


class VaultBindings(_BucketMover):
    name, table = "vaults.bind", "vaults"

    def __init__(self, app: Appliance) -> None:
        super().__init__()
        self.app = app

    def _keys(self, app: Appliance, target: str, after: str | None = None, limit: int | None = None) -> list[str]:
        vaults: Table = Base.metadata.tables["vaults"]
        with app.db.read() as db:
            keys = set(db.execute(select(vaults.c.id).where(_stale(vaults.c.row_mac, target))).scalars())
            keys |= set(
                db.execute(
                    select(VaultMember.vault_id).where(
                        or_(_stale(VaultMember.row_mac, target), _stale(VaultMember.wrapped_key_mac, target))
                    )
                ).scalars()
            )
            keys |= set(
                db.execute(
                    select(FolderKey.vault_id).where(
                        or_(_stale(FolderKey.row_mac, target), _stale(FolderKey.wrapped_key_mac, target))
                    )
                ).scalars()
            )
            for model in (Folder, FolderAccess):
                keys |= set(db.execute(select(model.vault_id).where(_stale(model.row_mac, target))).scalars())
        ordered = sorted(k for k in keys if after is None or k > after)
        return ordered[:limit] if limit is not None else ordered

    def apply(self, db: Any, work: Work, row: Row, values: dict[str, Any]) -> bool:
        vault_id = row["id"]
        self.app.vaults.lock(db, vault_id)
        members = list(db.execute(select(VaultMember).where(VaultMember.vault_id == vault_id)).scalars())
        for m in members:
            if self.app.integrity.valid(work, MEMBER, m) and not member_key_is_bound(
                work, vault_id, m.user_id, m.key_version, m.wrapped_key, m.wrapped_key_mac
            ):
                raise RowRefused(f"the wrapped key binding of member {m.user_id} does not verify")
        folder_keys = list(db.execute(select(FolderKey).where(FolderKey.vault_id == vault_id)).scalars())
        for k in folder_keys:
            if self.app.integrity.valid(work, FOLDER_KEY, k) and not folder_key_is_bound(
                work, vault_id, k.folder_id, k.user_id, k.key_version, k.wrapped_key, k.wrapped_key_mac
            ):
                raise RowRefused(f"the folder key binding of {k.folder_id}/{k.user_id} does not verify")
        with self.app.integrity.changing(db, work, Domain.VAULTS, vault_id):
            # Only rows that verify are re-bound; ``changing`` re-seals their row MACs
            # (and the vault's, folders' and folder access rows') under the new version.
            for m in members:
                if self.app.integrity.valid(work, MEMBER, m):
                    m.wrapped_key_mac = bind_member_key(work, vault_id, m.user_id, m.key_version, m.wrapped_key)
            for k in folder_keys:
                if self.app.integrity.valid(work, FOLDER_KEY, k):
                    k.wrapped_key_mac = bind_folder_key(
                        work, vault_id, k.folder_id, k.user_id, k.key_version, k.wrapped_key
                    )
        return True


class SessionBindings(_BucketMover):
    name, table = "sessions.bind", "sessions"

    def __init__(self, app: Appliance) -> None:
        super().__init__()
        self.app = app

    def _keys(self, app: Appliance, target: str, after: str | None = None, limit: int | None = None) -> list[str]:
        query = (
            select(Session.user_id)
            .where(or_(_stale(Session.row_mac, target), _stale(Session.seen_mac, target)))
            .distinct()
        )
        if after is not None:
            query = query.where(Session.user_id > after)
        with app.db.read() as db:
            return list(db.execute(query.order_by(Session.user_id).limit(limit)).scalars())

    def apply(self, db: Any, work: Work, row: Row, values: dict[str, Any]) -> bool:
        user_id = row["id"]
        deployment = self.app.integrity.deployment()
        with self.app.integrity.changing(db, work, Domain.SESSIONS, user_id):
            for s in db.execute(select(Session).where(Session.user_id == user_id)).scalars().all():
                seen = repr(float(s.last_seen_at))
                if not macs.check(work, s.seen_mac, "session-seen", deployment, s.id, seen):
                    continue  # it opens nothing already; left under the old version (a failure)
                db.execute(
                    update(Session)
                    .where(Session.id == s.id, Session.last_seen_at == s.last_seen_at, Session.seen_mac == s.seen_mac)
                    .values(seen_mac=self.app.sessions.seen_mac(work, s.id, s.last_seen_at))
                    .execution_options(synchronize_session=False)
                )
        return True


class RecoveryBindings(_BucketMover):
    name, table = "recovery.bind", "recovery_escrows"

    def __init__(self, app: Appliance) -> None:
        super().__init__()
        self.app = app

    def _keys(self, app: Appliance, target: str, after: str | None = None, limit: int | None = None) -> list[str]:
        with app.db.read() as db:
            configs = db.execute(select(RecoveryConfig.version).where(_stale(RecoveryConfig.mac, target)))
            escrows = db.execute(select(RecoveryEscrow.user_id).where(_stale(RecoveryEscrow.mac, target)))
            keys = [f"c{v}" for v in configs.scalars()] + [f"e{u}" for u in escrows.scalars()]
        ordered = sorted(k for k in keys if after is None or k > after)
        return ordered[:limit] if limit is not None else ordered

    def apply(self, db: Any, work: Work, row: Row, values: dict[str, Any]) -> bool:
        key: str = row["id"]
        recovery = self.app.recovery
        deployment = self.app.integrity.deployment()
        if key.startswith("c"):
            config = db.get(RecoveryConfig, int(key[1:]))
            if config is None:
                return True
            parts = recovery._config_parts(config)
            if not macs.check(work, config.mac, "recovery-config", deployment, *parts):
                raise RowRefused("the recovery configuration's MAC does not verify")
            config.mac = macs.make(work, "recovery-config", deployment, *parts)
            return True
        escrow = db.get(RecoveryEscrow, key[1:])
        user = db.get(User, key[1:])
        if escrow is None or user is None:
            return True
        if not recovery.escrow_is_bound(work, escrow, user):
            raise RowRefused("the escrow's MAC does not verify")
        escrow.mac = recovery.escrow_mac(work, escrow, user)
        return True


class SendBindings(_BucketMover):
    name, table = "sends.bind", "sends"

    def __init__(self, app: Appliance) -> None:
        super().__init__()
        self.app = app

    def _keys(self, app: Appliance, target: str, after: str | None = None, limit: int | None = None) -> list[str]:
        query = select(Send.id).where(or_(_stale(Send.mac, target), _stale(Send.wrapped_key_mac, target)))
        if after is not None:
            query = query.where(Send.id > after)
        with app.db.read() as db:
            return list(db.execute(query.order_by(Send.id).limit(limit)).scalars())

    def apply(self, db: Any, work: Work, row: Row, values: dict[str, Any]) -> bool:
        send = db.execute(select(Send).where(Send.id == row["id"]).with_for_update()).scalar_one_or_none()
        if send is None:
            return True
        sends = self.app.sends.service
        if not sends.row_ok(work, send):
            raise RowRefused("the send's MAC does not verify")
        if send.wrapped_key is not None and send.recipient_id is not None:
            if not send_key_is_bound(work, send.id, send.recipient_id, send.wrapped_key, send.wrapped_key_mac):
                raise RowRefused("the send key's binding does not verify")
            send.wrapped_key_mac = bind_send_key(work, send.id, send.recipient_id, send.wrapped_key)
        sends.seal_row(work, send)
        return True


def bind_movers(app: Appliance) -> list[_BucketMover]:
    return [UserBindings(app), VaultBindings(app), SessionBindings(app), RecoveryBindings(app), SendBindings(app)]
