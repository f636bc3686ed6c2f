"""Transfers, the recipient's side (no account): the link page, unlock with the
sender's password, downloads against a per-recipient limit. Every refusal is
the same NotFound: an unknown link, a wrong password, a locked, expired,
revoked or used-up transfer all look alike from outside."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from appliance.errors import NotFound
from appliance.files import format as fmt
from appliance.files.crypto import chunk_cipher
from appliance.files.stream import Download
from appliance.transfers import keys
from appliance.transfers.models import Transfer, TransferEvent, TransferFile, TransferGrant, TransferRecipient
from appliance.transfers.service import _when, transfer_key_ref
from appliance.transfers.shred import shred

if TYPE_CHECKING:
    from appliance.core import Appliance

MAX_FAILED_PASSWORDS = 5
GRANT_SECONDS = 15 * 60
REFUSED = "this link does not open: it is unknown, expired, used up or revoked, or the password is wrong"


@dataclass(frozen=True)
class Unlocked:
    files: list[tuple[str, str, int]]  # id, name, size
    download_token: str
    expires_at: float
    message: str


class TransferAccess:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    def _recipient(self, db: Any, token: Any) -> tuple[Transfer, TransferRecipient]:
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            raise NotFound(REFUSED)
        recipient = db.execute(
            select(TransferRecipient).where(TransferRecipient.token_hash == keys.token_hash(token))
        ).scalar_one_or_none()
        transfer = db.get(Transfer, recipient.transfer_id) if recipient is not None else None
        if recipient is None or transfer is None:
            raise NotFound(REFUSED)
        return transfer, recipient

    def _usable(self, transfer: Transfer, recipient: TransferRecipient) -> bool:
        return (
            transfer.status == "sent"
            and transfer.shredded_at is None
            and transfer.expires_at > self.app.clock()
            and recipient.downloads < transfer.max_downloads
        )

    def _event(
        self, db: Any, work: Any, transfer: Transfer, recipient_id: str, kind: str, addr: str | None, detail: str = ""
    ) -> None:
        db.add(
            TransferEvent(
                transfer_id=transfer.id,
                recipient_id=recipient_id,
                kind=kind,
                at=self.app.clock(),
                client_addr=addr,
                detail=detail or None,
            )
        )
        self.app.audit.append(
            db, work, f"transfer.{kind}", actor=None, target=transfer.id, client_addr=addr, recipient=recipient_id
        )

    def _tell_sender(self, db: Any, work: Any, transfer: Transfer, template: str, **context: Any) -> None:
        """An e-mail to the sender (when ``[mail]`` is set): links and facts, never a secret."""
        mail = self.app.mail
        if not mail.enabled:
            return
        from appliance.models import User

        sender = db.get(User, transfer.owner_id)
        if sender is None:
            return
        people = db.execute(
            select(TransferRecipient.email).where(TransferRecipient.transfer_id == transfer.id)
        ).scalars()
        values = {
            "recipients": ", ".join(sorted(people)),
            "when": _when(self.app.clock()),
            "link": mail.link(f"/transfers/{transfer.id}"),
            **{k: ("unknown" if v is None else v) for k, v in context.items()},
        }
        mail.enqueue(db, to=sender.email, template=template, context=values, work=work)

    def needs(self, token: Any) -> tuple[bool, bool]:
        """(password needed, code needed) for the link page's form."""
        with self.app.db.read() as db:
            transfer, _ = self._recipient(db, token)
        return transfer.wrapped_key is not None, transfer.email_codes

    def open_page(self, token: Any, addr: str | None) -> str:
        """The link page was shown (a receipt; consumes nothing). Returns the
        recipient's e-mail address."""
        with self.app.db.read() as db:
            transfer, recipient = self._recipient(db, token)
        if not self._usable(transfer, recipient):
            raise NotFound(REFUSED)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self._event(db, work, transfer, recipient.id, "opened", addr)
        return recipient.email

    def unlock(self, token: Any, password: Any, code: Any, addr: str | None) -> Unlocked:
        with self.app.db.read() as db:
            transfer, recipient = self._recipient(db, token)
        needs_password = transfer.wrapped_key is not None
        needs_code = transfer.email_codes
        if not self._usable(transfer, recipient) or not (needs_password or needs_code):
            raise NotFound(REFUSED)
        for value, needed in ((password, needs_password), (code, needs_code)):
            if needed and (not isinstance(value, str) or not value or len(value) > 1024):
                raise NotFound(REFUSED)
        try:
            shares = []
            if needs_password:
                assert transfer.pw_salt is not None and transfer.pepper_label is not None and transfer.kdf is not None
                wrapping = keys.password_key_for(
                    self.app.keystore,
                    self.app.settings.crypto,
                    transfer.id,
                    password,
                    transfer.pw_salt,
                    transfer.pepper_label,
                    transfer.kdf,
                )
                shares.append(keys.open_(wrapping, transfer.wrapped_key or b"", keys.key_context(transfer.id)))
            if needs_code:
                if recipient.code_wrapped is None or recipient.code_salt is None:
                    raise keys.WrongKey()
                wrapping = keys.password_key_for(
                    self.app.keystore,
                    self.app.settings.crypto,
                    transfer.id,
                    keys.normalize_code(str(code)),
                    recipient.code_salt,
                    recipient.code_pepper or "",
                    recipient.code_kdf or "",
                    keys.code_purpose(recipient.id),
                )
                shares.append(
                    keys.open_(wrapping, recipient.code_wrapped, keys.code_context(transfer.id, recipient.id))
                )
        except keys.WrongKey:
            self._wrong_password(transfer, recipient, addr)
            raise NotFound(REFUSED) from None
        tkey = shares[0] if len(shares) == 1 else keys.xor(shares[0], shares[1])
        grant = secrets.token_bytes(32)
        download_token = base64.urlsafe_b64encode(grant).decode("ascii").rstrip("=")
        expires = min(self.app.clock() + GRANT_SECONDS, transfer.expires_at)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            current = db.get(Transfer, transfer.id, with_for_update=True)
            if current is None or current.status != "sent":
                raise NotFound(REFUSED)
            db.add(
                TransferGrant(
                    token_hash=keys.token_hash(download_token),
                    transfer_id=transfer.id,
                    recipient_id=recipient.id,
                    expires_at=expires,
                    key_blob=keys.seal(keys.grant_key(grant), tkey, keys.grant_context(transfer.id, recipient.id)),
                )
            )
            self._event(db, work, transfer, recipient.id, "unlocked", addr)
            files = list(db.execute(select(TransferFile).where(TransferFile.transfer_id == transfer.id)).scalars())
        listed = []
        for f in sorted(files, key=lambda f: f.created_at):
            meta = json.loads(keys.open_(tkey, f.meta_ct, keys.file_context(transfer.id, f.id, "file-meta")))
            listed.append((f.id, str(meta["name"]), f.size))
        message = keys.open_(tkey, transfer.message_ct or b"", keys.message_context(transfer.id)).decode("utf-8")
        return Unlocked(listed, download_token, expires, message)

    def _wrong_password(self, transfer: Transfer, recipient: TransferRecipient, addr: str | None) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            db.execute(
                update(Transfer)
                .where(Transfer.id == transfer.id)
                .values(failed_passwords=Transfer.failed_passwords + 1)
            )
            self._event(db, work, transfer, recipient.id, "failed_password", addr)
            current = db.get(Transfer, transfer.id)
            if current is not None and current.failed_passwords >= MAX_FAILED_PASSWORDS and current.status == "sent":
                current.status = "locked"
                self._tell_sender(db, work, current, "transfer_locked", failed=current.failed_passwords, address=addr)
                self.app.audit.append(
                    db,
                    work,
                    "transfer.locked",
                    actor=None,
                    target=transfer.id,
                    client_addr=addr,
                    failed=current.failed_passwords,
                )
                db.add(
                    TransferEvent(
                        transfer_id=transfer.id, recipient_id=None, kind="locked", at=self.app.clock(), client_addr=addr
                    )
                )

    # -- downloads ------------------------------------------------------------------------

    def _grant(self, token: Any, download_token: Any) -> tuple[Transfer, TransferRecipient, bytes]:
        if not isinstance(download_token, str) or len(download_token) > 100:
            raise NotFound(REFUSED)
        with self.app.db.read() as db:
            transfer, recipient = self._recipient(db, token)
            grant = db.get(TransferGrant, keys.token_hash(download_token))
        if (
            grant is None
            or grant.recipient_id != recipient.id
            or grant.expires_at <= self.app.clock()
            or not self._usable(transfer, recipient)
        ):
            raise NotFound(REFUSED)
        try:
            raw = base64.urlsafe_b64decode(download_token + "=" * (-len(download_token) % 4))
            tkey = keys.open_(keys.grant_key(raw), grant.key_blob, keys.grant_context(transfer.id, recipient.id))
        except (keys.WrongKey, binascii.Error, ValueError):
            raise NotFound(REFUSED) from None
        return transfer, recipient, tkey

    def _consume(self, transfer: Transfer, recipient: TransferRecipient, addr: str | None, what: str) -> None:
        """One download off the recipient's allowance, atomically: of N parallel
        requests at the limit exactly the allowed number pass."""
        with self.app.keystore.work() as work, self.app.db.write() as db:
            done = db.execute(
                update(TransferRecipient)
                .where(TransferRecipient.id == recipient.id, TransferRecipient.downloads < transfer.max_downloads)
                .values(downloads=TransferRecipient.downloads + 1)
                .execution_options(synchronize_session=False)
            )
            moved = db.execute(
                update(Transfer)
                .where(Transfer.id == transfer.id, Transfer.status == "sent", Transfer.expires_at > self.app.clock())
                .values(active_downloads=Transfer.active_downloads + 1)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1 or moved.rowcount != 1:  # type: ignore[attr-defined]
                db.rollback()
                raise NotFound(REFUSED)
            self._event(db, work, transfer, recipient.id, "downloaded", addr, what)
            if transfer.notify_downloads:
                left = transfer.max_downloads - recipient.downloads - 1
                self._tell_sender(
                    db,
                    work,
                    transfer,
                    "transfer_downloaded",
                    recipient=recipient.email,
                    what="every file (zip)" if what == "zip" else "a file",
                    address=addr,
                    left=max(left, 0),
                )

    def _finished(self, transfer_id: str) -> None:
        """A download ended: when every recipient has used their allowance and no
        download is running, the transfer is complete and shredded."""
        with self.app.db.write() as db:
            db.execute(
                update(Transfer)
                .where(Transfer.id == transfer_id)
                .values(active_downloads=Transfer.active_downloads - 1)
            )
            row = db.get(Transfer, transfer_id)
            left = db.execute(
                select(TransferRecipient.id).where(
                    TransferRecipient.transfer_id == transfer_id,
                    TransferRecipient.downloads < (row.max_downloads if row else 0),
                )
            ).first()
            complete = row is not None and left is None and row.status == "sent"
            if complete:
                assert row is not None
                row.status = "completed"
            idle = row is not None and row.active_downloads <= 0 and row.status == "completed"
        if idle:
            shred(self.app, transfer_id, None, "transfer.completed")

    def _open_file(self, transfer: Transfer, tkey: bytes, f: TransferFile) -> Download:
        dkey = keys.open_(tkey, f.wrapped_key, keys.file_context(transfer.id, f.id, "file-key"))
        meta = json.loads(keys.open_(tkey, f.meta_ct, keys.file_context(transfer.id, f.id, "file-meta")))
        reader = self.app.files.store(f.store).reader(f.blob_id)

        def failed() -> None:
            with self.app.keystore.work() as work, self.app.db.write() as db:
                self.app.audit.append(db, work, "integrity.failed", target=transfer.id, what="transfer_file", file=f.id)

        try:
            header = fmt.Header.decode(reader.header())
            if header.key_ref != transfer_key_ref(transfer.id, f.id) or header.chunk_size != f.chunk_size:
                raise fmt.StreamError()
        except fmt.StreamError:
            reader.close()
            failed()
            from appliance.errors import IntegrityFailure

            raise IntegrityFailure() from None
        cipher = chunk_cipher(self.app.settings.files.bulk_crypto, self.app.keystore, fmt.payload_key(dkey, header))
        return Download(
            f.id,
            1,
            str(meta["name"]),
            "application/octet-stream",
            str(meta["sha256"]),
            f.size,
            header,
            reader,
            cipher,
            failed,
        )

    def download(
        self, token: Any, file_id: Any, download_token: Any, addr: str | None
    ) -> tuple[Download, Iterator[bytes]]:
        """One file: (its Download, prepared, and the byte stream that ends the download)."""
        transfer, recipient, tkey = self._grant(token, download_token)
        with self.app.db.read() as db:
            f = db.get(TransferFile, file_id) if isinstance(file_id, str) else None
        if f is None or f.transfer_id != transfer.id:
            raise NotFound(REFUSED)
        # Opened (and its first chunk checked) before the allowance is spent: a file
        # that fails its integrity check costs the recipient no download.
        d = self._open_file(transfer, tkey, f)
        try:
            d.prepare()
        except BaseException:
            d.close()
            raise
        try:
            self._consume(transfer, recipient, addr, f.id)  # all or nothing: refused, nothing counted
        except BaseException:
            d.close()
            raise

        def stream() -> Iterator[bytes]:
            try:
                yield from d.chunks()
            finally:
                self._finished(transfer.id)

        return d, stream()

    def download_zip(self, token: Any, download_token: Any, addr: str | None) -> tuple[str, Iterator[bytes]]:
        """Every file as one zip stream (one download off the allowance)."""
        from appliance.transfers.zipstream import zip_stream

        transfer, recipient, tkey = self._grant(token, download_token)
        with self.app.db.read() as db:
            files = list(db.execute(select(TransferFile).where(TransferFile.transfer_id == transfer.id)).scalars())
        self._consume(transfer, recipient, addr, "zip")

        def entries() -> Iterator[tuple[str, Iterator[bytes]]]:
            for f in sorted(files, key=lambda f: f.created_at):
                d = self._open_file(transfer, tkey, f)
                d.prepare()
                yield d.name, d.chunks()

        def stream() -> Iterator[bytes]:
            try:
                yield from zip_stream(entries())
            finally:
                self._finished(transfer.id)

        return f"transfer-{transfer.id[:8]}.zip", stream()
