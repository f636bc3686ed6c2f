"""Uploads into a vault: a new file or the next version, quotas and limits; the
bytes go through ``stream.Upload``. ``Files`` (appliance/files/service.py) delegates here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from appliance.errors import Conflict, NotFound, TooLarge
from appliance.files import crypto
from appliance.files import format as fmt
from appliance.files.models import FileUpload, FileVersion, StoredFile
from appliance.files.stream import Upload
from appliance.files.views import FileView, check_content_type, check_name
from appliance.folders.sealing import KeyRef
from appliance.integrity import audits_integrity
from appliance.sessions import Principal
from appliance.tokens import new_id
from appliance.vaults import Role

if TYPE_CHECKING:
    from appliance.files.service import Files, FileView
    from appliance.models import VaultMember

    _Base = Files
else:
    _Base = object


# -- upload --------------------------------------------------------------------


def _check_quota(files: Files, db: Any, principal: Principal, vault_id: str, adding: int) -> None:
    s = files.settings
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


def _limit(files: Files, db: Any, principal: Principal, vault_id: str) -> tuple[int, str]:
    """The most bytes this upload may carry, and what to say beyond it."""
    s = files.settings
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
    files: Files,
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
    with files.app.keystore.work() as work, files.app.db.read() as db:
        member = files.app.vaults.membership(db, principal, vault_id, Role.WRITE, work)
        files._folder_level(db, work, principal, member, folder_id, Role.WRITE, "no such folder")
        if declared_size is not None:
            _check_quota(files, db, principal, vault_id, declared_size)
        limit, message = _limit(files, db, principal, vault_id)
    kind = check_content_type(content_type)
    return _begin(files, principal, member, folder_id, new_id(), 1, name, kind, None, limit, message)


@audits_integrity
def begin_replace(
    files: Files, principal: Principal, file_id: str, content_type: Any = None, declared_size: int | None = None
) -> Upload:
    """Start the next version of a file (write role); the name stays."""
    with files.app.keystore.work() as work, files.app.db.read() as db:
        row, member = files._file_and_member(db, work, principal, file_id, Role.WRITE)
        current = db.get(FileVersion, (row.id, row.current_version))
        if declared_size is not None:
            _check_quota(files, db, principal, row.vault_id, declared_size)
        limit, message = _limit(files, db, principal, row.vault_id)
        if current is None:
            raise NotFound("no such file")
        meta = files._meta_in(db, work, principal, member, current)
    return _begin(
        files,
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
    files: Files,
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
    with files.app.keystore.work() as work, files.app.db.read() as db:
        ref = files._folder_level(db, work, principal, member, folder_id, Role.WRITE, "no such folder")
        key = files._key(db, work, principal, member, ref)
        data_key = crypto.new_data_key(work)
        context = crypto.key_context(vault_id, file_id, version, ref.version, ref.folder_id)
        wrapped = crypto.wrap(work, key, data_key, context)
    header = fmt.new_header(files.settings.chunk_kib * 1024, fmt.key_ref(vault_id, file_id, version))
    cipher = crypto.chunk_cipher(files.settings.bulk_crypto, files.app.keystore, fmt.payload_key(data_key, header))
    del data_key
    store = files.store()
    blob_id = new_id()
    with files.app.db.write() as db:
        db.add(FileUpload(blob_id=blob_id, store=store.name, started_at=files.app.clock()))
    try:
        writer = store.writer(blob_id)
        writer.write_header(header.encode())
    except BaseException:
        crypto.close_cipher(cipher)
        with files.app.db.write() as db:
            db.execute(delete(FileUpload).where(FileUpload.blob_id == blob_id))
        raise

    def finish(upload: Upload) -> FileView:
        return _finish(
            files,
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
        with files.app.db.write() as db:
            db.execute(delete(FileUpload).where(FileUpload.blob_id == upload.blob_id))

    return Upload(blob_id, writer, fmt.Sealer(cipher, header), limit, message, finish, abort)


def _finish(
    files: Files,
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
    now = files.app.clock()
    dropped: list[tuple[str, str]] = []
    with files.app.keystore.work() as work:
        with files.app.db.read() as db:
            key = files._key(db, work, principal, member, ref)
        context = crypto.meta_context(vault_id, file_id, version, ref.version, ref.folder_id)
        meta_ct = crypto.seal_meta(work, key, meta, context)
        with files.app.db.write() as db:
            # Shared lock: no vault key rotation or folder key change under our feet.
            files.app.vaults.lock(db, vault_id, exclusive=False)
            current = files.app.vaults.membership(db, principal, vault_id, Role.WRITE, work)
            again = files._folder_level(db, work, principal, current, folder_id, Role.WRITE, "no such folder")
            if current.key_version != member.key_version or again != ref:
                raise Conflict("the vault or folder key changed during the upload; upload again")
            _check_quota(files, db, principal, vault_id, upload.size)
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
            keep = files.settings.keep_versions
            for old in db.execute(
                select(FileVersion).where(FileVersion.file_id == file_id, FileVersion.version <= version - keep)
            ).scalars():
                dropped.append((old.blob_id, old.store))
                db.delete(old)
            files.app.audit.by(
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
        files._drop_blob(blob_id, store)
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
