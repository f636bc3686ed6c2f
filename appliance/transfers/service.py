"""Transfers to outsiders, the sender's side: create (password), add files
(uploaded, or copied from a vault the sender can read), send (links), list with
receipts, revoke. The recipient's side is ``public.py``."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from appliance.accounts import normalize_email
from appliance.errors import Conflict, NotFound, ValidationFailed
from appliance.files import format as fmt
from appliance.files.crypto import chunk_cipher, new_data_key
from appliance.files.models import FileUpload
from appliance.files.service import check_name
from appliance.files.stream import Upload
from appliance.sessions import Principal
from appliance.tokens import is_id, new_id
from appliance.transfers import keys
from appliance.transfers.models import Transfer, TransferEvent, TransferFile, TransferRecipient
from appliance.transfers.shred import shred

if TYPE_CHECKING:
    from appliance.core import Appliance

MAX_RECIPIENTS = 50
MAX_FILES = 100
DEFAULT_HOURS = 7 * 24
MAX_HOURS = 30 * 24
MIN_PASSWORD = 10


@dataclass(frozen=True)
class TransferFileView:
    id: str
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ReceiptView:
    kind: str
    at: float
    client_addr: str | None


@dataclass(frozen=True)
class RecipientView:
    email: str
    downloads: int
    events: list[ReceiptView] = field(default_factory=list)


@dataclass(frozen=True)
class TransferView:
    id: str
    status: str
    created_at: float
    sent_at: float | None
    expires_at: float
    max_downloads: int
    file_count: int
    total_bytes: int
    failed_passwords: int
    recipients: list[RecipientView]


def _when(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def transfer_key_ref(transfer_id: str, file_id: str) -> str:
    return f"transfer={transfer_id}|file={file_id}|version=1"


def _int(value: Any, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(f"{name} must be a whole number from {low} to {high}")
    return int(value)


class Transfers:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- create --------------------------------------------------------------------

    def create(
        self,
        principal: Principal,
        recipients: Any,
        message: Any = None,
        password: Any = None,
        email_codes: Any = None,
        expires_in_hours: Any = None,
        max_downloads: Any = None,
        notify_downloads: Any = None,
    ) -> str:
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise ValidationFailed(f"recipients must list 1 to {MAX_RECIPIENTS} e-mail addresses")
        emails = sorted({normalize_email(r) if isinstance(r, str) else normalize_email("") for r in recipients})
        codes = bool(email_codes)
        if codes and not self.app.mail.enabled:
            raise ValidationFailed(
                "e-mailed codes need the appliance's mail service, which is not configured; protect with a password"
            )
        if password is None and not codes:
            raise ValidationFailed("protect the transfer with a password, e-mailed codes (email_codes), or both")
        if password is not None and (
            not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 1024
        ):
            raise ValidationFailed(f"password must be {MIN_PASSWORD} to 1024 characters, passed on out of band")
        if message is not None and (not isinstance(message, str) or len(message) > 4000):
            raise ValidationFailed("message must be text of at most 4000 characters")
        longest = min(MAX_HOURS, self.app.settings.files.transfer_max_expires_hours)  # the administrators' policy
        hours = _int(expires_in_hours, "expires_in_hours", min(DEFAULT_HOURS, longest), 1, longest)
        limit = _int(max_downloads, "max_downloads", 3, 1, 100)
        tid = new_id()
        salt = label = wrapping = kdf = None
        if password is not None:
            salt = os.urandom(16)
            label, wrapping, kdf = keys.password_key(
                self.app.keystore, self.app.settings.crypto, tid, password, salt, None
            )
        now = self.app.clock()
        with self.app.keystore.work() as work:
            tkey = new_data_key(work)
            # With both a password and codes, T = P xor C: the password opens P, each
            # recipient's code opens C; either alone opens nothing.
            pw_share = new_data_key(work) if (wrapping is not None and codes) else tkey
            code_share = keys.xor(tkey, pw_share) if wrapping is not None else tkey
            draft = work.seal(tkey + (code_share if codes else b""), keys.draft_context(tid))
            row = Transfer(
                id=tid,
                owner_id=principal.user_id,
                status="draft",
                created_at=now,
                expires_at=now + hours * 3600,
                max_downloads=limit,
                failed_passwords=0,
                active_downloads=0,
                notify_downloads=bool(notify_downloads),
                email_codes=codes,
                pw_salt=salt,
                pepper_label=label,
                kdf=kdf,
                wrapped_key=None if wrapping is None else keys.seal(wrapping, pw_share, keys.key_context(tid)),
                draft_blob=draft,
                kek_label=work.sealed_under(draft),
                message_ct=keys.seal(tkey, (message or "").encode("utf-8"), keys.message_context(tid)),
                file_count=0,
                total_bytes=0,
            )
            with self.app.db.write() as db:
                db.add(row)
                db.flush()
                for email in emails:
                    db.add(TransferRecipient(id=new_id(), transfer_id=tid, email=email, downloads=0))
                self.app.audit.by(
                    principal, db, work, "transfer.created", target=tid, recipients=len(emails), hours=hours
                )
        return tid

    def _draft(self, principal: Principal, transfer_id: str) -> tuple[Transfer, bytes]:
        """The sender's draft and its transfer key (from the KEK-sealed draft copy)."""
        with self.app.db.read() as db:
            row = db.get(Transfer, transfer_id) if is_id(transfer_id) else None
        if row is None or row.owner_id != principal.user_id:
            raise NotFound("no such transfer")
        if row.status != "draft" or row.draft_blob is None or row.expires_at <= self.app.clock():
            raise Conflict("the transfer was sent (or has ended); files can only be added before sending")
        with self.app.keystore.work() as work:
            return row, work.unseal(row.draft_blob, keys.draft_context(row.id))[:32]

    # -- files -----------------------------------------------------------------------

    def begin_upload(self, principal: Principal, transfer_id: str, name: Any, declared: int | None = None) -> Upload:
        name = check_name(name)
        row, tkey = self._draft(principal, transfer_id)
        limit = self.app.settings.files.max_file_bytes
        message = f"the file is larger than the {limit}-byte limit per file"
        if declared is not None and declared > limit:
            from appliance.errors import TooLarge

            raise TooLarge(message)
        if row.file_count >= MAX_FILES:
            raise Conflict(f"a transfer holds at most {MAX_FILES} files")
        fid = new_id()
        with self.app.keystore.work() as work:
            dkey = new_data_key(work)
        wrapped = keys.seal(tkey, dkey, keys.file_context(row.id, fid, "file-key"))
        header = fmt.new_header(self.app.settings.files.chunk_kib * 1024, transfer_key_ref(row.id, fid))
        cipher = chunk_cipher(self.app.settings.files.bulk_crypto, self.app.keystore, fmt.payload_key(dkey, header))
        store = self.app.files.store()
        blob_id = new_id()
        with self.app.db.write() as db:
            db.add(FileUpload(blob_id=blob_id, store=store.name, started_at=self.app.clock()))
        writer = store.writer(blob_id)
        writer.write_header(header.encode())

        def finish(upload: Upload) -> TransferFileView:
            digest = upload.sha256.hexdigest()
            meta = json.dumps({"name": name, "sha256": digest}).encode("utf-8")
            with self.app.keystore.work() as work, self.app.db.write() as db:
                current = db.get(Transfer, row.id, with_for_update=True)
                if current is None or current.status != "draft":
                    raise Conflict("the transfer was sent or ended during the upload")
                db.add(
                    TransferFile(
                        id=fid,
                        transfer_id=row.id,
                        size=upload.size,
                        chunk_size=header.chunk_size,
                        wrapped_key=wrapped,
                        meta_ct=keys.seal(tkey, meta, keys.file_context(row.id, fid, "file-meta")),
                        blob_id=upload.blob_id,
                        store=store.name,
                        created_at=self.app.clock(),
                    )
                )
                current.file_count += 1
                current.total_bytes += upload.size
                db.execute(delete(FileUpload).where(FileUpload.blob_id == upload.blob_id))
                self.app.audit.by(principal, db, work, "transfer.file_added", target=row.id, file=fid, size=upload.size)
            return TransferFileView(fid, name, upload.size, digest)

        def abort(upload: Upload) -> None:
            with self.app.db.write() as db:
                db.execute(delete(FileUpload).where(FileUpload.blob_id == upload.blob_id))

        return Upload(blob_id, writer, fmt.Sealer(cipher, header), limit, message, finish, abort)

    def add_from_vault(self, principal: Principal, transfer_id: str, file_id: Any) -> TransferFileView:
        """Copy a vault file the sender can read into the transfer (decrypted and
        sealed again chunk by chunk, never whole, never in clear on disk)."""
        if not isinstance(file_id, str):
            raise ValidationFailed("file_id must be a file id")
        self._draft(principal, transfer_id)  # before reading anything
        source = self.app.files.open_download(principal, file_id)
        try:
            source.prepare()
            upload = self.begin_upload(principal, transfer_id, source.name, source.size)
        except BaseException:
            source.close()
            raise
        try:
            for piece in source.chunks():
                upload.write(piece)
        except BaseException:
            upload.abort()
            raise
        view: TransferFileView = upload.finish()
        return view

    def draft_files(self, principal: Principal, transfer_id: str) -> list[TransferFileView]:
        """The files of a draft (names opened with the draft's key), for the sender's page."""
        row, tkey = self._draft(principal, transfer_id)
        with self.app.db.read() as db:
            files = list(db.execute(select(TransferFile).where(TransferFile.transfer_id == row.id)).scalars())
        out = []
        for f in sorted(files, key=lambda f: f.created_at):
            meta = json.loads(keys.open_(tkey, f.meta_ct, keys.file_context(row.id, f.id, "file-meta")))
            out.append(TransferFileView(f.id, str(meta["name"]), f.size, str(meta["sha256"])))
        return out

    def get(self, principal: Principal, transfer_id: str) -> TransferView:
        for t in self.list_mine(principal):
            if t.id == transfer_id:
                return t
        raise NotFound("no such transfer")

    # -- send ----------------------------------------------------------------------------

    def send(self, principal: Principal, transfer_id: str, base_url: str) -> list[tuple[str, str]]:
        """Links for every recipient; e-mailed when ``[mail]`` is set (links from its
        ``base_url``), each recipient's code in a second e-mail when the transfer has codes."""
        row, _ = self._draft(principal, transfer_id)
        if row.file_count == 0:
            raise Conflict("add at least one file before sending")
        with self.app.keystore.work() as work:
            draft = work.unseal(row.draft_blob or b"", keys.draft_context(row.id))
        code_share = draft[32:64]
        mail = self.app.mail
        base = mail.link("") if mail.enabled else base_url
        with self.app.db.read() as db:
            people = list(
                db.execute(
                    select(TransferRecipient)
                    .where(TransferRecipient.transfer_id == row.id)
                    .order_by(TransferRecipient.email)
                ).scalars()
            )
        # Codes are stretched (pepper + Argon2id) outside any transaction.
        prepared = []
        for person in people:
            token = secrets.token_urlsafe(32)
            code = wrapped = salt = label = kdf = None
            if row.email_codes:
                code, salt = keys.new_code(), os.urandom(16)
                label, wrapping, kdf = keys.password_key(
                    self.app.keystore, self.app.settings.crypto, row.id, code, salt, None, keys.code_purpose(person.id)
                )
                wrapped = keys.seal(wrapping, code_share, keys.code_context(row.id, person.id))
            prepared.append((person.id, person.email, token, code, salt, label, kdf, wrapped))
        links = []
        with self.app.keystore.work() as work, self.app.db.write() as db:
            current = db.get(Transfer, row.id, with_for_update=True)
            if current is None or current.status != "draft":
                raise Conflict("the transfer was already sent")
            me = principal.email
            for rid, email, token, code, salt, label, kdf, wrapped in prepared:
                recipient = db.get(TransferRecipient, rid)
                assert recipient is not None
                recipient.token_hash = keys.token_hash(token)
                recipient.code_salt, recipient.code_pepper, recipient.code_kdf = salt, label, kdf
                recipient.code_wrapped = wrapped
                url = f"{base.rstrip('/')}/t/{token}"
                links.append((email, url))
                context = {"sender": me, "link": url, "expires": _when(current.expires_at), "files": current.file_count}
                mail.enqueue(db, to=email, template="transfer_link", context=context, work=work)
                if code is not None:
                    mail.enqueue(
                        db, to=email, template="transfer_code", context={"sender": me, "code": code}, work=work
                    )
            current.status, current.sent_at = "sent", self.app.clock()
            # From now on only the password (and/or the e-mailed codes) open the transfer key.
            current.draft_blob, current.kek_label = None, None
            self.app.audit.by(
                principal, db, work, "transfer.sent", target=row.id, recipients=len(links), mailed=mail.enabled
            )
        return links

    # -- list, revoke ------------------------------------------------------------------------

    def list_mine(self, principal: Principal) -> list[TransferView]:
        with self.app.db.read() as db:
            rows = list(
                db.execute(
                    select(Transfer).where(Transfer.owner_id == principal.user_id).order_by(Transfer.created_at.desc())
                ).scalars()
            )
            ids = [r.id for r in rows]
            recipients = (
                list(db.execute(select(TransferRecipient).where(TransferRecipient.transfer_id.in_(ids))).scalars())
                if ids
                else []
            )
            events = (
                list(
                    db.execute(
                        select(TransferEvent).where(TransferEvent.transfer_id.in_(ids)).order_by(TransferEvent.id)
                    ).scalars()
                )
                if ids
                else []
            )
        by_recipient: dict[str | None, list[ReceiptView]] = {}
        for e in events:
            by_recipient.setdefault(e.recipient_id, []).append(ReceiptView(e.kind, e.at, e.client_addr))
        out = []
        for r in rows:
            people = [
                RecipientView(p.email, p.downloads, by_recipient.get(p.id, []))
                for p in sorted(recipients, key=lambda p: p.email)
                if p.transfer_id == r.id
            ]
            status = (
                "expired" if r.status in ("draft", "sent", "locked") and r.expires_at <= self.app.clock() else r.status
            )
            out.append(
                TransferView(
                    r.id,
                    status,
                    r.created_at,
                    r.sent_at,
                    r.expires_at,
                    r.max_downloads,
                    r.file_count,
                    r.total_bytes,
                    r.failed_passwords,
                    people,
                )
            )
        return out

    def revoke(self, principal: Principal, transfer_id: str) -> None:
        with self.app.db.read() as db:
            row = db.get(Transfer, transfer_id) if is_id(transfer_id) else None
        if row is None or row.owner_id != principal.user_id:
            raise NotFound("no such transfer")
        with self.app.db.write() as db:
            db.execute(
                update(Transfer)
                .where(Transfer.id == row.id, Transfer.status.in_(("draft", "sent", "locked")))
                .values(status="revoked")
            )
        shred(self.app, row.id, None, "transfer.revoked")
