"""Sends: one copy of a secret on its way to a recipient."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models import Base


class Send(Base):
    """A send. ``payload`` is the copy (JSON of the item fields):

    - mode ``user``: AES-256-GCM under a send key generated in the token, the key
      wrapped to the recipient's public key (``wrapped_key``, bound by
      ``wrapped_key_mac``); before the recipient enrolls, sealed under the KEK;
    - mode ``code``: AES-256-GCM under Argon2id(HMAC(pepper, code)), then sealed
      under the KEK;
    - mode ``link``: sealed under the KEK.

    ``payload``/``wrapped_key`` become NULL when the send is used up, expires, is
    revoked or destroyed (crypto-shredding); the row stays as the sender's record.
    ``mac`` (bind root) covers every column that says who may open it and how often.
    """

    __tablename__ = "sends"
    __table_args__ = (Index("ix_sends_state_expires", "state", "expires_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    mode: Mapped[str] = mapped_column(String(8))
    sender_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    recipient_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # SHA-256 of the link token (code and link modes); the token itself is never kept.
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    # pending -> viewed | saved | discarded | expired | revoked | destroyed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    wrapped_key_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    code_pepper: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_kdf: Mapped[str | None] = mapped_column(String(128), nullable=True)
    max_views: Mapped[int] = mapped_column(Integer, default=1)
    views_used: Mapped[int] = mapped_column(Integer, default=0)
    failed_codes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    viewed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    viewed_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
