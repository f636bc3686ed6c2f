"""Tables of the file store. Names, content types and digests are sealed under
the vault key (``meta_ct``); the data key is wrapped under it (``wrapped_key``);
sizes and times are in clear (quotas and Content-Length need them)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models import Base


class StoredFile(Base):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id", ondelete="CASCADE"), index=True)
    # Wired once folders land: the folder the file sits in (None: the vault's root).
    folder_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(32))


class FileVersion(Base):
    __tablename__ = "file_versions"

    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    vault_id: Mapped[str] = mapped_column(String(32), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    # The key that wraps ``wrapped_key`` and seals ``meta_ct``: the vault key (``key_folder_id``
    # None) or the key of the nearest keyed folder above the file, at ``key_version``.
    key_folder_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_version: Mapped[int] = mapped_column(Integer)
    # Data key (32 bytes from the token's RNG): AES-256-GCM under the vault key in
    # the token, associated data naming vault, file, version and vault-key version.
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    # {"name", "content_type", "sha256"} as JSON, sealed the same way.
    meta_ct: Mapped[bytes] = mapped_column(LargeBinary)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    store: Mapped[str] = mapped_column(String(16))  # filesystem | database
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(32), index=True)


class FileChunk(Base):
    """The database store: seq 0 is the header, seq i+1 is chunk i."""

    __tablename__ = "file_chunks"

    blob_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class FileUpload(Base):
    """A blob being written: removed in the transaction that makes it visible.
    One left behind (a killed upload) is an orphan for ``coffre files gc``."""

    __tablename__ = "file_uploads"

    blob_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    store: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float] = mapped_column(Float)


Index("ix_file_uploads_started", FileUpload.started_at)
