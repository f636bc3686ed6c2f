"""Wire types of files (and transfers): explicit Structs, never ORM rows."""

from __future__ import annotations

import msgspec


class FileOut(msgspec.Struct):
    id: str
    name: str
    size: int
    sha256: str
    version: int
    vault_id: str
    folder_id: str | None
    content_type: str
    created_at: str
    updated_at: str


class In(msgspec.Struct, forbid_unknown_fields=True):
    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"{name} must not contain NUL characters")


class TransferIn(In):
    recipients: list[str]
    message: str | None = None
    password: str | None = None
    email_codes: bool | None = None
    expires_in_hours: int | None = None
    max_downloads: int | None = None
    notify_downloads: bool | None = None


class TransferCreated(msgspec.Struct):
    id: str


class TransferFileIn(In):
    file_id: str


class TransferFileOut(msgspec.Struct):
    id: str
    name: str
    size: int
    sha256: str


class LinkOut(msgspec.Struct):
    recipient: str
    url: str


class SendOut(msgspec.Struct):
    links: list[LinkOut]


class ReceiptOut(msgspec.Struct):
    kind: str
    at: str
    address: str | None


class RecipientOut(msgspec.Struct):
    email: str
    downloads: int
    receipts: list[ReceiptOut]


class TransferOut(msgspec.Struct):
    id: str
    status: str
    created_at: str
    sent_at: str | None
    expires_at: str
    max_downloads: int
    file_count: int
    total_bytes: int
    failed_passwords: int
    recipients: list[RecipientOut]


class UnlockIn(In):
    password: str | None = None
    code: str | None = None


class PublicFileOut(msgspec.Struct):
    id: str
    name: str
    size: int


class UnlockOut(msgspec.Struct):
    files: list[PublicFileOut]
    download_token: str
    expires_at: str
    message: str


class DepositIn(In):
    vault_id: str
    folder_id: str | None = None
    password: str | None = None
    closes_at: str | None = None
    max_bytes: int | None = None


class DepositCreated(msgspec.Struct):
    id: str
    url: str


class DepositOut(msgspec.Struct):
    id: str
    vault_id: str
    status: str
    created_at: str
    closes_at: str | None
    max_bytes: int | None
    used_bytes: int
    pending: int


class DepositedOut(msgspec.Struct):
    name: str
    size: int
