"""Files in vaults: who may do what (the vault roles), metadata, versions,
quotas; the bytes go through ``stream.Upload``/``stream.Download``.

Read role: list and download. Write role: upload, replace, delete. Not a member:
404, as for an id that does not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from appliance.errors import Conflict, Forbidden, IntegrityFailure, NotFound, TooLarge, ValidationFailed
from appliance.files import crypto
from appliance.files import format as fmt
from appliance.files.models import FileUpload, FileVersion, StoredFile
from appliance.files.store import BlobStore, DatabaseStore, FilesystemStore
from appliance.files.stream import Download, Upload
from appliance.folders.access import Level
from appliance.folders.sealing import KeyRef
from appliance.integrity import audits_integrity
from appliance.sessions import Principal
from appliance.tokens import is_id, new_id
from appliance.vaults import Role
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.models import VaultMember
    from hsm.keystore import Work

_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class FileView:
    id: str
    vault_id: str
    folder_id: str | None
    name: str
    content_type: str
    size: int
    sha256: str
    version: int
    created_at: float
    created_by: str
    updated_at: float
    updated_by: str


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise ValidationFailed("name must be 1 to 255 characters")
    if _BAD_NAME.search(name) or name.strip() in (".", ".."):
        raise ValidationFailed("name must not contain control characters, / or \\")
    return name.strip()


def check_content_type(value: Any) -> str:
    if value is None or value == "":
        return "application/octet-stream"
    if not isinstance(value, str) or len(value) > 200 or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", value.split(";")[0]):
        return "application/octet-stream"
    return value.split(";")[0].strip().lower()


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

    # -- upload --------------------------------------------------------------------

    def _check_quota(self, db: Any, principal: Principal, vault_id: str, adding: int) -> None:
        s = self.settings
        if adding > s.max_file_bytes:
            raise TooLarge(f"the file is larger than the {s.max_file_bytes}-byte limit per file")
        if s.user_quota_bytes:
            used = db.execute(
                select(func.coalesce(func.sum(FileVersion.size), 0)).where(FileVersion.created_by == principal.user_id)
            ).scalar_one()
            if used + adding > s.user_quota_bytes:
                raise TooLarge(f"this would exceed your file quota of {s.user_quota_bytes} bytes ({used} used)")
        if s.vault_quota_bytes:
            used = db.execute(
                select(func.coalesce(func.sum(FileVersion.size), 0)).where(FileVersion.vault_id == vault_id)
            ).scalar_one()
            if used + adding > s.vault_quota_bytes:
                raise TooLarge(f"this would exceed the vault's file quota of {s.vault_quota_bytes} bytes ({used} used)")

    def _limit(self, db: Any, principal: Principal, vault_id: str) -> tuple[int, str]:
        """The most bytes this upload may carry, and what to say beyond it."""
        s = self.settings
        limit, message = s.max_file_bytes, f"the file is larger than the {s.max_file_bytes}-byte limit per file"
        if s.user_quota_bytes:
            used = db.execute(
                select(func.coalesce(func.sum(FileVersion.size), 0)).where(FileVersion.created_by == principal.user_id)
            ).scalar_one()
            if s.user_quota_bytes - used < limit:
                limit, message = (
                    s.user_quota_bytes - used,
                    f"this exceeds your file quota of {s.user_quota_bytes} bytes",
                )
        if s.vault_quota_bytes:
            used = db.execute(
                select(func.coalesce(func.sum(FileVersion.size), 0)).where(FileVersion.vault_id == vault_id)
            ).scalar_one()
            if s.vault_quota_bytes - used < limit:
                limit = s.vault_quota_bytes - used
                message = f"this exceeds the vault's file quota of {s.vault_quota_bytes} bytes"
        return max(limit, 0), message

    @audits_integrity
    def begin_upload(
        self,
        principal: Principal,
        vault_id: str,
        name: Any,
        folder_id: Any = None,
        content_type: Any = None,
        declared_size: int | None = None,
    ) -> Upload:
        """Start a new file in a vault (write role)."""
        name = check_name(name)
        if folder_id == "":
            folder_id = None
        with self.app.keystore.work() as work, self.app.db.read() as db:
            member = self.app.vaults.membership(db, principal, vault_id, Role.WRITE, work)
            self._folder_level(db, work, principal, member, folder_id, Role.WRITE, "no such folder")
            if declared_size is not None:
                self._check_quota(db, principal, vault_id, declared_size)
            limit, message = self._limit(db, principal, vault_id)
        kind = check_content_type(content_type)
        return self._begin(principal, member, folder_id, new_id(), 1, name, kind, None, limit, message)

    @audits_integrity
    def begin_replace(
        self, principal: Principal, file_id: str, content_type: Any = None, declared_size: int | None = None
    ) -> Upload:
        """Start the next version of a file (write role); the name stays."""
        with self.app.keystore.work() as work, self.app.db.read() as db:
            row, member = self._file_and_member(db, work, principal, file_id, Role.WRITE)
            current = db.get(FileVersion, (row.id, row.current_version))
            if declared_size is not None:
                self._check_quota(db, principal, row.vault_id, declared_size)
            limit, message = self._limit(db, principal, row.vault_id)
            if current is None:
                raise NotFound("no such file")
            meta = self._meta_in(db, work, principal, member, current)
        return self._begin(
            principal,
            member,
            row.folder_id,
            row.id,
            row.current_version + 1,
            meta["name"],
            check_content_type(content_type) if content_type else meta.get("content_type"),
            row.current_version,
            limit,
            message,
        )

    def _begin(
        self,
        principal: Principal,
        member: VaultMember,
        folder_id: str | None,
        file_id: str,
        version: int,
        name: str,
        content_type: str | None,
        base_version: int | None,
        limit: int,
        message: str,
    ) -> Upload:
        vault_id = member.vault_id
        with self.app.keystore.work() as work, self.app.db.read() as db:
            ref = self._folder_level(db, work, principal, member, folder_id, Role.WRITE, "no such folder")
            key = self._key(db, work, principal, member, ref)
            data_key = crypto.new_data_key(work)
            context = crypto.key_context(vault_id, file_id, version, ref.version, ref.folder_id)
            wrapped = crypto.wrap(work, key, data_key, context)
        header = fmt.new_header(self.settings.chunk_kib * 1024, fmt.key_ref(vault_id, file_id, version))
        cipher = crypto.chunk_cipher(self.settings.bulk_crypto, self.app.keystore, fmt.payload_key(data_key, header))
        del data_key
        store = self.store()
        blob_id = new_id()
        with self.app.db.write() as db:
            db.add(FileUpload(blob_id=blob_id, store=store.name, started_at=self.app.clock()))
        try:
            writer = store.writer(blob_id)
            writer.write_header(header.encode())
        except BaseException:
            crypto.close_cipher(cipher)
            with self.app.db.write() as db:
                db.execute(delete(FileUpload).where(FileUpload.blob_id == blob_id))
            raise

        def finish(upload: Upload) -> FileView:
            return self._finish(
                principal,
                member,
                folder_id,
                ref,
                file_id,
                version,
                base_version,
                name,
                content_type,
                wrapped,
                upload,
                store.name,
            )

        def abort(upload: Upload) -> None:
            with self.app.db.write() as db:
                db.execute(delete(FileUpload).where(FileUpload.blob_id == upload.blob_id))

        return Upload(blob_id, writer, fmt.Sealer(cipher, header), limit, message, finish, abort)

    def _finish(
        self,
        principal: Principal,
        member: VaultMember,
        folder_id: str | None,
        ref: KeyRef,
        file_id: str,
        version: int,
        base_version: int | None,
        name: str,
        content_type: str | None,
        wrapped: bytes,
        upload: Upload,
        store_name: str,
    ) -> FileView:
        vault_id = member.vault_id
        digest = upload.sha256.hexdigest()
        meta = {"name": name, "content_type": content_type or "application/octet-stream", "sha256": digest}
        now = self.app.clock()
        dropped: list[tuple[str, str]] = []
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                key = self._key(db, work, principal, member, ref)
            context = crypto.meta_context(vault_id, file_id, version, ref.version, ref.folder_id)
            meta_ct = crypto.seal_meta(work, key, meta, context)
            with self.app.db.write() as db:
                # Shared lock: no vault key rotation or folder key change under our feet.
                self.app.vaults.lock(db, vault_id, exclusive=False)
                current = self.app.vaults.membership(db, principal, vault_id, Role.WRITE, work)
                again = self._folder_level(db, work, principal, current, folder_id, Role.WRITE, "no such folder")
                if current.key_version != member.key_version or again != ref:
                    raise Conflict("the vault or folder key changed during the upload; upload again")
                self._check_quota(db, principal, vault_id, upload.size)
                if base_version is None:
                    row = StoredFile(
                        id=file_id,
                        vault_id=vault_id,
                        folder_id=folder_id,
                        current_version=version,
                        created_at=now,
                        created_by=principal.user_id,
                        updated_at=now,
                        updated_by=principal.user_id,
                    )
                    db.add(row)
                    db.flush()
                else:
                    found = db.get(StoredFile, file_id, with_for_update=True)
                    if found is None:
                        raise NotFound("no such file")
                    row = found
                    if row.current_version != base_version:
                        raise Conflict("the file changed during the upload; upload again")
                    row.current_version, row.updated_at, row.updated_by = version, now, principal.user_id
                db.add(
                    FileVersion(
                        file_id=file_id,
                        version=version,
                        vault_id=vault_id,
                        size=upload.size,
                        chunk_size=upload.sealer.header.chunk_size,
                        key_folder_id=ref.folder_id,
                        key_version=ref.version,
                        wrapped_key=wrapped,
                        meta_ct=meta_ct,
                        blob_id=upload.blob_id,
                        store=store_name,
                        created_at=now,
                        created_by=principal.user_id,
                    )
                )
                db.execute(delete(FileUpload).where(FileUpload.blob_id == upload.blob_id))
                keep = self.settings.keep_versions
                for old in db.execute(
                    select(FileVersion).where(FileVersion.file_id == file_id, FileVersion.version <= version - keep)
                ).scalars():
                    dropped.append((old.blob_id, old.store))
                    db.delete(old)
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "file.uploaded" if base_version is None else "file.replaced",
                    target=file_id,
                    vault=vault_id,
                    version=version,
                    size=upload.size,
                )
        upload.done = True
        for blob_id, store in dropped:
            self._drop_blob(blob_id, store)
        return FileView(
            file_id,
            vault_id,
            folder_id,
            name,
            meta["content_type"],
            upload.size,
            digest,
            version,
            row.created_at,
            row.created_by,
            now,
            principal.user_id,
        )

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
