"""The outbox: e-mails queued in the transaction of the event that causes them."""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.models import Base


class MailMessage(Base):
    """One e-mail. Its rendered body holds links (one-time tokens), so it is sealed
    under the KEK (``body_blob``, context names the message id, its address and template)
    and erased once sent
    or given up on; only the envelope stays as a record."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    to_address: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(64))
    # pending -> sent | failed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    body_blob: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    # A sender on some node holds the message until then (several nodes, one outbox).
    claimed_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[float | None] = mapped_column(Float, nullable=True)
