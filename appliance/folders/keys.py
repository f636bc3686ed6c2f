"""Folder keys: a keyed folder's AES-256 key, generated in the token, wrapped to
the public key of each member who may read it (bound by the bind MAC), and kept
in step with the access tree.

``reconcile`` is the one place that changes them. After any change of who may
read what (a setting, a folder move, a member added, removed or re-roled, a vault
key rotation), it compares the folders that need a key and their readers with
what is stored, and in the caller's transaction:

- gives a new key to a folder that needs one, and rotates the key of a folder
  where someone who held a copy may no longer read (their copy then opens
  nothing new); wraps the current key for new readers;
- drops the key of a folder that no longer needs one;
- re-seals every item and item version whose key changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from appliance.bindings import bind_folder_key, folder_key_is_bound, public_key_is_bound
from appliance.errors import Conflict
from appliance.folders.access import Tree
from appliance.folders.sealing import KeyRef, reseal_rows
from appliance.integrity import FOLDER_KEY, BrokenRow, Change, Domain
from appliance.models import Folder, FolderKey, Item, ItemVersion, User
from appliance.sessions import Principal
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance


class BrokenFolderKey(BrokenRow):
    """A wrapped folder key or an item under it failed its check."""


class FolderKeys:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- a reader's copy ------------------------------------------------------------

    def wrap_row(self, db: Any, work: Work, folder_id: str, user_id: str, actor: str | None) -> FolderKey | None:
        row = db.get(FolderKey, (folder_id, user_id))
        if row is None:
            return None
        checked: FolderKey | None = self.app.integrity.require(db, work, FOLDER_KEY, row, actor=actor)
        return checked

    def unwrap(self, work: Work, principal: Principal, row: FolderKey, extractable: bool = False) -> Any:
        """The folder key in the token, unwrapped with the caller's private key
        (cached like vault keys, unless an extractable copy is asked for)."""
        cache = self.app.keystore.cache
        digest = hashlib.sha256(row.wrapped_key + row.wrapped_key_mac.encode()).digest()
        key = principal.cache_prefix + b"|folder|" + row.folder_id.encode() + b"|" + digest
        handle = None if extractable else cache.get(key, work.generation)
        if handle is not None:
            return handle
        if row.user_id != principal.user_id or not folder_key_is_bound(
            work, row.vault_id, row.folder_id, row.user_id, row.key_version, row.wrapped_key, row.wrapped_key_mac
        ):
            raise BrokenFolderKey("folder_key", row.folder_id, principal.user_id, principal.client_addr)
        private = self.app.sessions.private_key(work, principal)
        try:
            handle = work.unwrap_with_private_key(private, row.wrapped_key, extractable=extractable)
        except DecryptionFailed:
            raise BrokenFolderKey("folder_key", row.folder_id, principal.user_id, principal.client_addr) from None
        if not extractable:
            cache.put(key, work.keep(handle), work.generation)
        return handle

    def key(self, db: Any, work: Work, principal: Principal, ref: KeyRef, vault_key: Callable[[], Any]) -> Any:
        """The handle of ``ref`` for the caller: the vault key, or their copy of the
        folder key at exactly that version."""
        if ref.folder_id is None:
            return vault_key()
        row = self.wrap_row(db, work, ref.folder_id, principal.user_id, principal.user_id)
        if row is None or row.key_version != ref.version:
            # A reader always holds the current copy; anything else is a stale read.
            raise Conflict("the folder key changed meanwhile; retry")
        return self.unwrap(work, principal, row)

    def _wrap(self, work: Work, key: Any, vault_id: str, folder_id: str, user: User, version: int) -> FolderKey:
        if user.public_key is None or not public_key_is_bound(work, user.id, user.public_key, user.public_key_mac):
            raise BrokenFolderKey("public_key_binding", user.id)
        wrapped = work.wrap_for_public_key(key, user.public_key)
        return FolderKey(
            folder_id=folder_id,
            user_id=user.id,
            vault_id=vault_id,
            key_version=version,
            wrapped_key=wrapped,
            wrapped_key_mac=bind_folder_key(work, vault_id, folder_id, user.id, version, wrapped),
        )

    def rewrapped_for(
        self, db: Any, work: Work, user_id: str, old_private: Any, public_der: bytes
    ) -> list[tuple[FolderKey, bytes, str]]:
        """A user's key pair is being replaced: each folder key copy they hold (that
        verifies), re-wrapped to the new public key, for the caller to store inside
        its anchor change block (``appliance/userkeys.py``)."""
        rows = db.execute(select(FolderKey).where(FolderKey.user_id == user_id)).scalars().all()
        out = []
        for row in self.app.integrity.verified(db, work, FOLDER_KEY, rows, actor=user_id):
            if not folder_key_is_bound(
                work, row.vault_id, row.folder_id, user_id, row.key_version, row.wrapped_key, row.wrapped_key_mac
            ):
                raise BrokenFolderKey("folder_key", row.folder_id, user_id)
            try:
                key = work.unwrap_with_private_key(old_private, row.wrapped_key, extractable=True)
            except DecryptionFailed:
                raise BrokenFolderKey("folder_key", row.folder_id, user_id) from None
            wrapped = work.wrap_for_public_key(key, public_der)
            mac = bind_folder_key(work, row.vault_id, row.folder_id, user_id, row.key_version, wrapped)
            out.append((row, wrapped, mac))
        return out

    # -- keeping keys in step with the tree ------------------------------------------

    def reconcile(
        self,
        db: Any,
        work: Work,
        principal: Principal,
        tree: Tree,
        vault_key: Any,
        change: Change | None,
        *,
        rotate_all: bool = False,
        rotate: frozenset[str] = frozenset(),
    ) -> int:
        """Make the stored keys match ``tree`` (already changed in memory as the
        caller changes the rows); ``principal`` is a vault administrator (who holds
        every key), ``vault_key`` the vault key at ``tree.vault_version``. Inside
        the caller's write transaction and exclusive vault lock; ``change``: the
        caller's anchor change block, if it is in one; ``rotate``: folders whose key
        must change whatever the tree says (a removed member held a copy).
        Returns how many item and version rows were re-sealed."""
        if not tree.settings and not any(n.keyed for n in tree.nodes.values()):
            return 0  # no setting anywhere: every folder is under the vault key
        if change is None:
            with self.app.integrity.changing(db, work, Domain.VAULTS, tree.vault_id) as own:
                return self._reconcile(db, work, principal, tree, vault_key, own, rotate_all, rotate)
        return self._reconcile(db, work, principal, tree, vault_key, change, rotate_all, rotate)

    def _reconcile(
        self,
        db: Any,
        work: Work,
        principal: Principal,
        tree: Tree,
        vault_key: Any,
        change: Change,
        rotate_all: bool,
        rotate: frozenset[str],
    ) -> int:
        vault_id = tree.vault_id
        desired = tree.desired_readers()
        stored: dict[str, dict[str, FolderKey]] = {}
        rows = db.execute(select(FolderKey).where(FolderKey.vault_id == vault_id)).scalars().all()
        for row in self.app.integrity.verified(db, work, FOLDER_KEY, rows, actor=principal.user_id):
            stored.setdefault(row.folder_id, {})[row.user_id] = row
        # The caller's own copies, opened before anything is replaced.
        old_keys: dict[KeyRef, Any] = {KeyRef(None, tree.vault_version): vault_key}
        mine = {fid: wraps[principal.user_id] for fid, wraps in stored.items() if principal.user_id in wraps}

        def old_key(ref: KeyRef) -> Any:
            if ref not in old_keys:
                row = mine.get(ref.folder_id or "")
                if row is None or row.key_version != ref.version:
                    # Only an administrator made one by an offboarding transfer can lack a copy.
                    raise Conflict("this needs a vault administrator who holds the folder's key")
                old_keys[ref] = self.unwrap(work, principal, row)
            return old_keys[ref]

        readers_needed = set().union(*desired.values()) if desired else set()
        users = {u.id: u for u in db.execute(select(User).where(User.id.in_(readers_needed))).scalars()}
        before = {fid: KeyRef(fid, n.key_version) for fid, n in tree.nodes.items() if n.keyed}
        for ref in before.values():  # open every current key now: copies are about to go
            if any(True for _ in self._items_under(db, vault_id, ref)):
                old_key(ref)
        new_keys: dict[str, Any] = {}
        for fid, node in tree.nodes.items():
            wraps = stored.get(fid, {})
            current = {u: w for u, w in wraps.items() if node.keyed and w.key_version == node.key_version}
            readers = desired.get(fid)
            folder = db.get(Folder, fid)
            if readers is None:
                if node.keyed:
                    node.keyed = folder.keyed = False
                    for row in wraps.values():
                        db.delete(row)
                continue
            if not node.keyed or rotate_all or fid in rotate or set(current) - readers:
                key = work.new_data_key()
                new_keys[fid] = key
                node.keyed = folder.keyed = True
                node.key_version = folder.key_version = node.key_version + 1
                for row in wraps.values():
                    db.delete(row)
                give = readers
            else:
                for user_id in set(wraps) - set(current):
                    db.delete(wraps[user_id])
                give = readers - set(current)
                if not give:
                    continue
                own = current.get(principal.user_id)
                if own is None:
                    raise Conflict("this needs a vault administrator who holds the folder's key")
                key = self.unwrap(work, principal, own, extractable=True)
            db.flush()
            for user_id in sorted(give):
                row = self._wrap(work, key, vault_id, fid, users[user_id], node.key_version)
                db.add(row)
                change.add(FOLDER_KEY, row)
        db.flush()
        return self._reseal(db, work, tree, old_key, new_keys, vault_key)

    @staticmethod
    def _items_under(db: Any, vault_id: str, ref: KeyRef) -> Any:
        from appliance.files.rekey import files_under

        if files_under(db, vault_id, ref):  # files sealed under the folder's key need it too
            return iter([ref.folder_id])
        return db.execute(
            select(Item.id).where(Item.vault_id == vault_id, Item.key_folder_id == ref.folder_id).limit(1)
        ).scalars()

    def _reseal(
        self,
        db: Any,
        work: Work,
        tree: Tree,
        old_key: Callable[[KeyRef], Any],
        new_keys: dict[str, Any],
        vault_key: Any,
    ) -> int:
        """Re-seal every item and item version whose key is not the one the tree
        now gives its folder."""
        count = 0
        for model in (Item, ItemVersion):
            query = select(model).where(model.vault_id == tree.vault_id)
            if not new_keys and not any(n.keyed for n in tree.nodes.values()):
                query = query.where(or_(model.key_folder_id.is_not(None), model.key_version != tree.vault_version))
            for row in db.execute(query).scalars():
                target = tree.key_ref(row.folder_id)
                if row.key_folder_id == target.folder_id and row.key_version == target.version:
                    continue
                new = vault_key if target.folder_id is None else new_keys.get(target.folder_id)
                if new is None:
                    new = old_key(target)
                try:
                    count += reseal_rows(work, [row], old_key, new, target)
                except DecryptionFailed:
                    raise BrokenFolderKey("item", str(getattr(row, "item_id", None) or row.id)) from None
        try:  # files' data keys follow their folder's key (appliance/files/rekey.py)
            count += self.app.files.reseal_for_tree(db, work, tree, old_key, new_keys, vault_key)
        except DecryptionFailed:
            raise BrokenFolderKey("file_key", tree.vault_id) from None
        db.flush()
        return count
