"""Files in vaults: who may do what (the vault roles), metadata, versions,
quotas; the bytes go through ``stream.Upload``/``stream.Download``.

Read role: list and download. Write role: upload, replace, delete. Not a member:
404, as for an id that does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from appliance.errors import Conflict, Forbidden, IntegrityFailure, NotFound
from appliance.files import crypto, uploads
from appliance.files import format as fmt
from appliance.files.models import FileVersion, StoredFile
from appliance.files.store import BlobStore, DatabaseStore, FilesystemStore
from appliance.files.stream import Download, Upload
from appliance.files.views import FileView, check_content_type, check_name
from appliance.folders.access import Level
from appliance.folders.sealing import KeyRef
from appliance.integrity import audits_integrity
from appliance.sessions import Principal
from appliance.tokens import is_id
from appliance.vaults import Role
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.models import VaultMember
    from hsm.keystore import Work


class Files:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self._stores: dict[str, BlobStore] = {}

    @property
    def settings(self) -> Any:
        return self.app.settings.files

    def store(self, name: str | None = None) -> BlobStore:
        name = name or self.settings.store
        if name not in self._stores:
            if name == "database":
                self._stores[name] = DatabaseStore(self.app.db)
            elif name == "filesystem":
                root = Path(self.settings.dir) if self.settings.dir else self.app.settings.data_dir / "files"
                self._stores[name] = FilesystemStore(root)
            else:
                raise ValueError(name)
        return self._stores[name]

    # -- access --------------------------------------------------------------------

    def _file_and_member(
        self, db: Any, work: Work, principal: Principal, file_id: str, at_least: Role
    ) -> tuple[StoredFile, VaultMember]:
        """The file and the caller's membership; the vault role *and* the access to the
        file's folder must allow ``at_least`` (a folder set to "no access": 404)."""
        row = db.get(StoredFile, file_id) if is_id(file_id) else None
        if row is None:
            raise NotFound("no such file")
        try:
            member = self.app.vaults.membership(db, principal, row.vault_id, Role.READ, work)
        except NotFound:
            raise NotFound("no such file") from None
        self.app.vaults.check_role(member, at_least)
        self._folder_level(db, work, principal, member, row.folder_id, at_least, "no such file")
        return row, member

    def _folder_level(
        self,
        db: Any,
        work: Work,
        principal: Principal,
        member: VaultMember,
        folder_id: Any,
        at_least: Role,
        missing: str,
    ) -> KeyRef:
        """The key a file in ``folder_id`` is sealed under now; NotFound/Forbidden by the folder's access."""
        place = self.app.folders.place(db, work, principal, member, folder_id, missing)
        if place.level < (Level.FULL if at_least >= Role.WRITE else Level.READ):
            raise Forbidden("this needs full access to the folder")
        return place.ref

    def _key(self, db: Any, work: Work, principal: Principal, member: VaultMember, ref: KeyRef) -> Any:
        if ref.folder_id is None and ref.version != member.key_version:
            raise Conflict("the vault key changed meanwhile; retry")
        return self.app.folders.key(db, work, principal, member, ref)

    def _fail(self, principal: Principal | None, target: str, what: str, **details: Any) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            if principal is not None:
                self.app.audit.by(principal, db, work, "integrity.failed", target=target, what=what, **details)
            else:
                self.app.audit.append(db, work, "integrity.failed", target=target, what=what, **details)

    # -- upload (appliance/files/uploads.py) ------------------------------------------

    def begin_upload(
        self,
        principal: Principal,
        vault_id: str,
        name: Any,
        folder_id: Any = None,
        content_type: Any = None,
        declared_size: int | None = None,
    ) -> Upload:
        """Start a new file in a vault (write role, full access to the folder)."""
        return uploads.begin_upload(self, principal, vault_id, name, folder_id, content_type, declared_size)

    def begin_replace(
        self, principal: Principal, file_id: str, content_type: Any = None, declared_size: int | None = None
    ) -> Upload:
        """Start the next version of a file (write role); the name stays."""
        return uploads.begin_replace(self, principal, file_id, content_type, declared_size)

    def _drop_blob(self, blob_id: str, store: str) -> None:
        try:
            self.store(store).delete(blob_id)
        except OSError:
            pass  # unreferenced now: gc removes it

    # -- metadata --------------------------------------------------------------------

    @staticmethod
    def ref_of(version: FileVersion) -> KeyRef:
        return KeyRef(version.key_folder_id, version.key_version)

    def _meta_in(
        self, db: Any, work: Work, principal: Principal, member: VaultMember, version: FileVersion, key: Any = None
    ) -> dict[str, Any]:
        key = key if key is not None else self._key(db, work, principal, member, self.ref_of(version))
        ctx = crypto.meta_context(
            version.vault_id, version.file_id, version.version, version.key_version, version.key_folder_id
        )
        try:
            return crypto.open_meta(work, key, version.meta_ct, ctx)
        except (DecryptionFailed, ValueError):
            self._fail(principal, version.file_id, "file_meta", vault=version.vault_id)
            raise IntegrityFailure() from None

    def _view(self, row: StoredFile, version: FileVersion, meta: dict[str, Any]) -> FileView:
        return FileView(
            row.id,
            row.vault_id,
            row.folder_id,
            str(meta.get("name", "")),
            str(meta.get("content_type", "application/octet-stream")),
            version.size,
            str(meta.get("sha256", "")),
            version.version,
            row.created_at,
            row.created_by,
            row.updated_at,
            row.updated_by,
        )

    @audits_integrity
    def list_files(self, principal: Principal, vault_id: str) -> list[FileView]:
        """The files the caller may see (a folder set to "no access" hides its files)."""
        out = []
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                member = self.app.vaults.membership(db, principal, vault_id, Role.READ, work)
            if self.app.deposits.adopt(work, principal, member, self.app.vaults.vault_key(work, principal, member)):
                return self.list_files(principal, vault_id)  # deposits just became files
            with self.app.db.read() as db:
                rows = db.execute(
                    select(StoredFile, FileVersion)
                    .join(
                        FileVersion,
                        (FileVersion.file_id == StoredFile.id) & (FileVersion.version == StoredFile.current_version),
                    )
                    .where(StoredFile.vault_id == vault_id)
                ).all()
                tree = self.app.folders.place(db, work, principal, member, None, "no such vault").tree
                levels = tree.levels(principal.user_id)
                keys: dict[KeyRef, Any] = {}
                for row, version in rows:
                    ref = self.ref_of(version)
                    if levels.get(row.folder_id, Level.NONE) < Level.READ or ref != tree.key_ref(row.folder_id):
                        continue
                    if ref not in keys:
                        keys[ref] = self._key(db, work, principal, member, ref)
                    out.append(self._view(row, version, self._meta_in(db, work, principal, member, version, keys[ref])))
        return sorted(out, key=lambda f: (f.name.lower(), f.id))

    @audits_integrity
    def get(self, principal: Principal, file_id: str) -> FileView:
        with self.app.keystore.work() as work, self.app.db.read() as db:
            row, member = self._file_and_member(db, work, principal, file_id, Role.READ)
            version = db.get(FileVersion, (row.id, row.current_version))
            if version is None:
                raise NotFound("no such file")
            return self._view(row, version, self._meta_in(db, work, principal, member, version))

    # -- download ----------------------------------------------------------------------

    @audits_integrity
    def open_download(self, principal: Principal, file_id: str, version: int | None = None) -> Download:
        """Check access, unwrap the data key (in the token), read and check the
        header; audited as ``file.downloaded``. Call ``prepare`` then ``chunks``."""
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                row, member = self._file_and_member(db, work, principal, file_id, Role.READ)
                stored = db.get(FileVersion, (row.id, version or row.current_version))
                if stored is None:
                    raise NotFound("no such file version")
                key = self._key(db, work, principal, member, self.ref_of(stored))
                meta = self._meta_in(db, work, principal, member, stored, key)
            ctx = crypto.key_context(
                stored.vault_id, stored.file_id, stored.version, stored.key_version, stored.key_folder_id
            )
            try:
                data_key = crypto.unwrap(work, key, stored.wrapped_key, ctx)
            except DecryptionFailed:
                data_key = None
            if data_key is not None:
                with self.app.db.write() as db:
                    self.app.audit.by(
                        principal,
                        db,
                        work,
                        "file.downloaded",
                        target=row.id,
                        vault=row.vault_id,
                        version=stored.version,
                    )
        if data_key is None:
            self._fail(principal, row.id, "file_key", vault=row.vault_id, version=stored.version)
            raise IntegrityFailure()
        return self._download(data_key, stored, meta, lambda: self._fail(principal, row.id, "file", vault=row.vault_id))

    def _download(self, data_key: bytes, stored: FileVersion, meta: dict[str, Any], on_failure: Any) -> Download:
        reader = self.store(stored.store).reader(stored.blob_id)
        try:
            header = fmt.Header.decode(reader.header())
            if header.key_ref != fmt.key_ref(stored.vault_id, stored.file_id, stored.version) or (
                header.chunk_size != stored.chunk_size
            ):
                raise fmt.StreamError()
        except fmt.StreamError:
            reader.close()
            on_failure()
            raise IntegrityFailure() from None
        cipher = crypto.chunk_cipher(self.settings.bulk_crypto, self.app.keystore, fmt.payload_key(data_key, header))
        return Download(
            stored.file_id,
            stored.version,
            str(meta.get("name", "")),
            str(meta.get("content_type", "application/octet-stream")),
            str(meta.get("sha256", "")),
            stored.size,
            header,
            reader,
            cipher,
            on_failure,
        )

    # -- delete ------------------------------------------------------------------------

    @audits_integrity
    def delete(self, principal: Principal, file_id: str) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            row, _ = self._file_and_member(db, work, principal, file_id, Role.WRITE)
            self.app.vaults.lock(db, row.vault_id, exclusive=False)
            blobs = [
                (v.blob_id, v.store)
                for v in db.execute(select(FileVersion).where(FileVersion.file_id == row.id)).scalars()
            ]
            db.execute(delete(FileVersion).where(FileVersion.file_id == row.id))
            db.execute(delete(StoredFile).where(StoredFile.id == row.id))
            self.app.audit.by(principal, db, work, "file.deleted", target=row.id, vault=row.vault_id)
        for blob_id, store in blobs:
            self._drop_blob(blob_id, store)

    # -- key changes (vault key rotation, folder keys) ----------------------------------

    def rewrap_vault(self, db: Any, work: Work, vault_id: str, old_key: Any, new_key: Any, new_version: int) -> int:
        """After a vault key rotation: re-wrap the data keys and metadata under the vault
        key (files in keyed folders follow their folder's key, ``reseal_for_tree``)."""
        from appliance.files.rekey import rewrap_vault

        return rewrap_vault(self.app, db, work, vault_id, old_key, new_key, new_version)

    def reseal_for_tree(
        self, db: Any, work: Work, tree: Any, old_key: Any, new_keys: dict[str, Any], vault_key: Any
    ) -> int:
        from appliance.files.rekey import reseal_for_tree

        return reseal_for_tree(db, work, tree, old_key, new_keys, vault_key)


__all__ = ["FileView", "Files", "check_content_type", "check_name"]
