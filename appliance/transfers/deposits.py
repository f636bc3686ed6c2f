"""Deposit boxes: an upload link for outsiders into one of a member's vaults.

What arrives is sealed at once (file STREAM format) under a fresh data key, which
is sealed under the box's deposit key (the server holds that one under the KEK
while the box is open). The first member who lists the vault's files *adopts*
the deposits: each data key moves under the vault key, the content is not
touched, and the file is an ordinary vault file from then on. Depositors see
nothing (not even each other's files); every refusal is the same 404."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from appliance.errors import NotFound, TooLarge, ValidationFailed
from appliance.files import crypto
from appliance.files import format as fmt
from appliance.files.models import FileUpload, FileVersion, StoredFile
from appliance.files.service import check_name
from appliance.files.stream import Upload
from appliance.sessions import Principal
from appliance.tokens import is_id, new_id
from appliance.transfers import keys
from appliance.transfers.models import DepositBox, DepositFile
from appliance.vaults import Role

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.models import VaultMember
    from hsm.keystore import Work

REFUSED = "this deposit link does not open: it is unknown, closed or full, or the password is wrong"
MAX_FAILED_PASSWORDS = 5


@dataclass(frozen=True)
class DepositView:
    id: str
    vault_id: str
    status: str
    created_at: float
    closes_at: float | None
    max_bytes: int | None
    used_bytes: int
    pending: int


def box_context(vault_id: str, box_id: str, key_version: int) -> bytes:
    return f"coffre/deposit-key/v1|vault={vault_id}|box={box_id}|key={key_version}".encode("ascii")


def sealed_context(box_id: str) -> bytes:
    return f"coffre/deposit-key-kek/v1|box={box_id}".encode("ascii")


def _parse_time(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed("closes_at must be an ISO 8601 date and time, e.g. 2030-01-31T18:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed("closes_at must be an ISO 8601 date and time, e.g. 2030-01-31T18:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValidationFailed("closes_at must name its time zone (Z for UTC)")
    return parsed.timestamp()


class Deposits:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- the member's side -------------------------------------------------------------

    def create(
        self,
        principal: Principal,
        vault_id: Any,
        folder_id: Any,
        password: Any,
        closes_at: Any,
        max_bytes: Any,
        base_url: str,
    ) -> tuple[str, str]:
        if not isinstance(vault_id, str):
            raise ValidationFailed("vault_id must be a vault id")
        if folder_id is not None:
            raise ValidationFailed("folders are not available on this appliance yet; leave folder_id out")
        if password is not None and (not isinstance(password, str) or not 10 <= len(password) <= 1024):
            raise ValidationFailed("password must be 10 to 1024 characters")
        closes = _parse_time(closes_at)
        if closes is not None and closes <= self.app.clock():
            raise ValidationFailed("closes_at must be in the future")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
            raise ValidationFailed("max_bytes must be a positive whole number")
        with self.app.db.read() as db:
            member = self.app.vaults.membership(db, principal, vault_id, Role.WRITE)
        box_id, token = new_id(), secrets.token_urlsafe(32)
        with self.app.keystore.work() as work:
            vault_key = self.app.vaults.vault_key(work, principal, member)
            dkey = crypto.new_data_key(work)
            wrapped = work.encrypt_field(vault_key, dkey, box_context(vault_id, box_id, member.key_version))
            sealed = work.seal(dkey, sealed_context(box_id))
            label = hashed = None
            if password is not None:
                label, hashed = self.app.hasher.hash(work, password)
            with self.app.db.write() as db:
                db.add(
                    DepositBox(
                        id=box_id,
                        vault_id=vault_id,
                        folder_id=None,
                        owner_id=principal.user_id,
                        token_hash=keys.token_hash(token),
                        status="open",
                        created_at=self.app.clock(),
                        closes_at=closes,
                        max_bytes=max_bytes,
                        used_bytes=0,
                        password_hash=hashed,
                        password_pepper=label,
                        failed_passwords=0,
                        key_version=member.key_version,
                        vault_wrapped_key=wrapped,
                        sealed_key=sealed,
                        kek_label=work.sealed_under(sealed),
                    )
                )
                self.app.audit.by(principal, db, work, "deposit.created", target=box_id, vault=vault_id)
        base = self.app.mail.link("") if self.app.mail.enabled else base_url  # [mail] base_url: the public address
        return box_id, f"{base.rstrip('/')}/d/{token}"

    def list_mine(self, principal: Principal) -> list[DepositView]:
        with self.app.db.read() as db:
            boxes = list(db.execute(select(DepositBox).where(DepositBox.owner_id == principal.user_id)).scalars())
            pending = {b.id: 0 for b in boxes}
            for f in db.execute(select(DepositFile.box_id).where(DepositFile.box_id.in_(list(pending)))).scalars():
                pending[f] += 1
        return [
            DepositView(
                b.id, b.vault_id, self._status(b), b.created_at, b.closes_at, b.max_bytes, b.used_bytes, pending[b.id]
            )
            for b in sorted(boxes, key=lambda b: -b.created_at)
        ]

    def _status(self, box: DepositBox) -> str:
        if box.status == "open" and box.closes_at is not None and box.closes_at <= self.app.clock():
            return "closed"
        return box.status

    def close(self, principal: Principal, box_id: str) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            box = db.get(DepositBox, box_id) if is_id(box_id) else None
            if box is None or box.owner_id != principal.user_id:
                raise NotFound("no such deposit box")
            box.status, box.token_hash, box.sealed_key, box.kek_label = "closed", None, None, None
            self.app.audit.by(principal, db, work, "deposit.closed", target=box.id, vault=box.vault_id)

    # -- the depositor's side --------------------------------------------------------------

    def check(self, token: Any) -> bool:
        """The box behind a link is open (its page may be shown); True when it has a password."""
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            raise NotFound(REFUSED)
        with self.app.db.read() as db:
            box = db.execute(
                select(DepositBox).where(DepositBox.token_hash == keys.token_hash(token))
            ).scalar_one_or_none()
        if box is None or self._status(box) != "open" or box.sealed_key is None:
            raise NotFound(REFUSED)
        return box.password_hash is not None

    def begin(self, token: Any, name: Any, password: Any, declared: int | None, addr: str | None) -> Upload:
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            raise NotFound(REFUSED)
        with self.app.db.read() as db:
            box = db.execute(
                select(DepositBox).where(DepositBox.token_hash == keys.token_hash(token))
            ).scalar_one_or_none()
        if box is None or self._status(box) != "open" or box.sealed_key is None:
            raise NotFound(REFUSED)
        if box.password_hash is not None:
            ok = isinstance(password, str) and self.app.hasher.verify(
                self.app.keystore, password, box.password_hash, box.password_pepper
            )
            if not ok:
                self._wrong_password(box, addr)
                raise NotFound(REFUSED)
        name = check_name(name)
        room = (box.max_bytes - box.used_bytes) if box.max_bytes is not None else self.app.settings.files.max_file_bytes
        limit = min(room, self.app.settings.files.max_file_bytes)
        message = "the file is larger than this deposit box accepts"
        if declared is not None and declared > limit:
            raise TooLarge(message)
        fid = new_id()
        with self.app.keystore.work() as work:
            box_key = work.unseal(box.sealed_key, sealed_context(box.id))
            dkey = crypto.new_data_key(work)
        header = fmt.new_header(self.app.settings.files.chunk_kib * 1024, fmt.key_ref(box.vault_id, fid, 1))
        cipher = crypto.chunk_cipher(
            self.app.settings.files.bulk_crypto, self.app.keystore, fmt.payload_key(dkey, header)
        )
        wrapped = keys.seal(box_key, dkey, keys.file_context(box.id, fid, "deposit-key"))
        store = self.app.files.store()
        blob_id = new_id()
        with self.app.db.write() as db:
            db.add(FileUpload(blob_id=blob_id, store=store.name, started_at=self.app.clock()))
        writer = store.writer(blob_id)
        writer.write_header(header.encode())

        def finish(upload: Upload) -> tuple[str, str, int]:
            meta = json.dumps(
                {"name": name, "content_type": "application/octet-stream", "sha256": upload.sha256.hexdigest()}
            )
            with self.app.keystore.work() as work, self.app.db.write() as db:
                moved = db.execute(
                    update(DepositBox)
                    .where(DepositBox.id == box.id, DepositBox.status == "open")
                    .where(
                        (DepositBox.max_bytes.is_(None)) | (DepositBox.used_bytes + upload.size <= DepositBox.max_bytes)
                    )
                    .values(used_bytes=DepositBox.used_bytes + upload.size)
                    .execution_options(synchronize_session=False)
                )
                if moved.rowcount != 1:  # type: ignore[attr-defined]
                    raise NotFound(REFUSED)
                db.add(
                    DepositFile(
                        id=fid,
                        box_id=box.id,
                        vault_id=box.vault_id,
                        size=upload.size,
                        chunk_size=header.chunk_size,
                        wrapped_key=wrapped,
                        meta_ct=keys.seal(
                            box_key, meta.encode("utf-8"), keys.file_context(box.id, fid, "deposit-meta")
                        ),
                        blob_id=upload.blob_id,
                        store=store.name,
                        created_at=self.app.clock(),
                        client_addr=addr,
                    )
                )
                db.execute(delete(FileUpload).where(FileUpload.blob_id == upload.blob_id))
                # The owner is told: the audit trail, and an e-mail when [mail] is set.
                self._tell_owner(db, work, box, upload.size, addr)
                self.app.audit.append(
                    db,
                    work,
                    "deposit.received",
                    actor=None,
                    target=box.id,
                    client_addr=addr,
                    vault=box.vault_id,
                    file=fid,
                    size=upload.size,
                    owner=box.owner_id,
                )
            return fid, name, upload.size

        def abort(upload: Upload) -> None:
            with self.app.db.write() as db:
                db.execute(delete(FileUpload).where(FileUpload.blob_id == upload.blob_id))

        return Upload(blob_id, writer, fmt.Sealer(cipher, header), limit, message, finish, abort)

    def _tell_owner(self, db: Any, work: Any, box: DepositBox, size: int, addr: str | None) -> None:
        mail = self.app.mail
        if not mail.enabled:
            return
        from appliance.models import User
        from appliance.transfers.service import _when

        owner = db.get(User, box.owner_id)
        if owner is not None:
            context = {
                "size": f"{size:,}",
                "when": _when(self.app.clock()),
                "address": addr or "unknown",
                "link": mail.link(f"/vaults/{box.vault_id}/files"),
            }
            mail.enqueue(db, to=owner.email, template="deposit_received", context=context, work=work)

    def _wrong_password(self, box: DepositBox, addr: str | None) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            db.execute(
                update(DepositBox)
                .where(DepositBox.id == box.id)
                .values(failed_passwords=DepositBox.failed_passwords + 1)
            )
            self.app.audit.append(db, work, "deposit.failed_password", target=box.id, client_addr=addr)
            current = db.get(DepositBox, box.id)
            if current is not None and current.failed_passwords >= MAX_FAILED_PASSWORDS and current.status == "open":
                current.status, current.token_hash, current.sealed_key, current.kek_label = "locked", None, None, None
                self.app.audit.append(db, work, "deposit.locked", target=box.id, client_addr=addr)

    # -- adoption and rotation (called by the files service and vault rotation) -------------

    def adopt(self, work: Work, principal: Principal, member: VaultMember, vault_key: Any) -> int:
        """Move every deposit of the vault under the vault key (content untouched)."""
        vault_id = member.vault_id
        with self.app.db.read() as db:
            pending = list(db.execute(select(DepositFile).where(DepositFile.vault_id == vault_id)).scalars())
            boxes = {b.id: b for b in db.execute(select(DepositBox).where(DepositBox.vault_id == vault_id)).scalars()}
        if not pending:
            return 0
        done = 0
        for f in pending:
            box = boxes.get(f.box_id)
            if box is None or box.key_version != member.key_version:
                continue
            box_key = crypto.unwrap(
                work, vault_key, box.vault_wrapped_key, box_context(vault_id, box.id, box.key_version)
            )
            dkey = keys.open_(box_key, f.wrapped_key, keys.file_context(box.id, f.id, "deposit-key"))
            meta = json.loads(keys.open_(box_key, f.meta_ct, keys.file_context(box.id, f.id, "deposit-meta")))
            kv = member.key_version
            wrapped = crypto.wrap(work, vault_key, dkey, crypto.key_context(vault_id, f.id, 1, kv))
            meta_ct = crypto.seal_meta(work, vault_key, meta, crypto.meta_context(vault_id, f.id, 1, kv))
            with self.app.db.write() as db:
                self.app.vaults.lock(db, vault_id, exclusive=False)
                if db.get(DepositFile, f.id) is None:
                    continue  # adopted by someone else meanwhile
                db.add(
                    StoredFile(
                        id=f.id,
                        vault_id=vault_id,
                        folder_id=None,
                        current_version=1,
                        created_at=f.created_at,
                        created_by=box.owner_id,
                        updated_at=f.created_at,
                        updated_by=box.owner_id,
                    )
                )
                db.flush()
                db.add(
                    FileVersion(
                        file_id=f.id,
                        version=1,
                        vault_id=vault_id,
                        size=f.size,
                        chunk_size=f.chunk_size,
                        key_version=kv,
                        wrapped_key=wrapped,
                        meta_ct=meta_ct,
                        blob_id=f.blob_id,
                        store=f.store,
                        created_at=f.created_at,
                        created_by=box.owner_id,
                    )
                )
                db.execute(delete(DepositFile).where(DepositFile.id == f.id))
                self.app.audit.by(principal, db, work, "deposit.adopted", target=f.id, vault=vault_id, box=box.id)
            done += 1
        return done

    def rewrap_vault(self, db: Any, work: Work, vault_id: str, old_key: Any, new_key: Any, new_version: int) -> None:
        for box in db.execute(select(DepositBox).where(DepositBox.vault_id == vault_id)).scalars():
            dkey = crypto.unwrap(work, old_key, box.vault_wrapped_key, box_context(vault_id, box.id, box.key_version))
            box.vault_wrapped_key = work.encrypt_field(new_key, dkey, box_context(vault_id, box.id, new_version))
            box.key_version = new_version
