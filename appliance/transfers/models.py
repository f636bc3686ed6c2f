"""Tables of transfers to outsiders. The transfer key exists at rest only wrapped
under the sender's password (HSM pepper + Argon2id), and while the transfer is a
draft, sealed under the KEK (``draft_blob``/``kek_label``, erased at send)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models import Base


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # draft | sent | locked | completed | expired | revoked
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    max_downloads: Mapped[int] = mapped_column(Integer)
    failed_passwords: Mapped[int] = mapped_column(Integer, default=0)
    active_downloads: Mapped[int] = mapped_column(Integer, default=0)
    notify_downloads: Mapped[bool] = mapped_column(Boolean, default=False)
    # Each recipient also needs the code e-mailed to them (per-recipient wrapping below).
    email_codes: Mapped[bool] = mapped_column(Boolean, default=False)
    # Password wrapping: Argon2id(HMAC(pepper, "transfer" || id || password), salt) -> AES-256-GCM.
    pw_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    pepper_label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kdf: Mapped[str | None] = mapped_column(String(128), nullable=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The draft's copy of the transfer key, sealed under the KEK; None once sent.
    draft_blob: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The sender's message, AES-256-GCM under the transfer key.
    message_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    shredded_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class TransferFile(Base):
    __tablename__ = "transfer_files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    # Data key under the transfer key; {"name", "sha256"} under the transfer key.
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    meta_ct: Mapped[bytes] = mapped_column(LargeBinary)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    store: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)


class TransferRecipient(Base):
    __tablename__ = "transfer_recipients"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    # SHA-256 of the link's token (the token itself is only in the link).
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    # With e-mailed codes: the recipient's share of the transfer key, AES-256-GCM under
    # Argon2id(HMAC(pepper, "transfer-code" || transfer || recipient || code), code_salt).
    code_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    code_pepper: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_kdf: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class TransferGrant(Base):
    """An unlock's short-lived download token: the transfer key sealed under a
    key derived (HKDF) from the token, which only the recipient holds."""

    __tablename__ = "transfer_grants"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[float] = mapped_column(Float)
    key_blob: Mapped[bytes] = mapped_column(LargeBinary)


class TransferEvent(Base):
    """Receipts: what each recipient did, when, from which address."""

    __tablename__ = "transfer_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))  # opened | unlocked | downloaded | failed_password
    at: Mapped[float] = mapped_column(Float)
    client_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class DepositBox(Base):
    """An upload link for outsiders into a vault. Its deposit key K (token RNG) is
    wrapped under the vault key (``vault_wrapped_key``, for members) and, while the
    box is open, sealed under the KEK (``sealed_key``/``kek_label``, so the server can
    seal what arrives without any member present); closing erases the KEK copy."""

    __tablename__ = "deposit_boxes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id", ondelete="CASCADE"), index=True)
    folder_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # open | closed
    created_at: Mapped[float] = mapped_column(Float)
    closes_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    password_pepper: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failed_passwords: Mapped[int] = mapped_column(Integer, default=0)
    key_version: Mapped[int] = mapped_column(Integer)
    vault_wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_label: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DepositFile(Base):
    """A deposited file not yet adopted into the vault: its data key is sealed under
    the box's deposit key. The first member to list the vault's files moves the key
    under the vault key (the content is not touched) and this row goes."""

    __tablename__ = "deposit_files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the file id it will have
    box_id: Mapped[str] = mapped_column(ForeignKey("deposit_boxes.id", ondelete="CASCADE"), index=True)
    vault_id: Mapped[str] = mapped_column(String(32), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    meta_ct: Mapped[bytes] = mapped_column(LargeBinary)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    store: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    client_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
