"""Rendering and queueing (see the package docstring for the contract)."""

from __future__ import annotations

import json
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from appliance.mail.models import MailMessage
from appliance.tokens import new_id
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

TEMPLATES = Path(__file__).parent / "templates"


class TemplateError(Exception):
    """A template is missing or its context lacks a placeholder (a programming error)."""


def when(ts: float) -> str:
    """A time as written in e-mails (UTC, to the minute)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def body_context(message_id: str, to_address: str, template: str) -> bytes:
    """The body's associated data: the message, its recipient and its template, so a
    database writer who re-addresses a queued message (to receive its links) makes
    its body fail to open; the sender then fails the message instead of sending it."""
    return f"coffre/mail-body/v2|message={message_id}|to={to_address}|template={template}".encode()


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None

    def encode(self) -> bytes:
        return json.dumps({"s": self.subject, "t": self.text, "h": self.html}).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> Rendered:
        value = json.loads(raw.decode("utf-8"))
        return cls(value["s"], value["t"], value["h"])


def render(template: str, context: dict[str, Any]) -> Rendered:
    if not template.replace("_", "").isalnum():
        raise TemplateError(f"bad template name {template!r}")
    path = TEMPLATES / f"{template}.txt"
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"no mail template {template!r}") from None
    first, _, body = raw.partition("\n")
    if not first.startswith("Subject: "):
        raise TemplateError(f"mail template {template!r} must start with 'Subject: '")
    values = {k: str(v) for k, v in context.items()}
    try:
        subject = string.Template(first[len("Subject: ") :]).substitute(values)
        text = string.Template(body).substitute(values)
        html_path = TEMPLATES / f"{template}.html"
        html = None
        if html_path.exists():
            from html import escape

            html = string.Template(html_path.read_text(encoding="utf-8")).substitute(
                {k: escape(v) for k, v in values.items()}
            )
    except (KeyError, ValueError) as exc:
        raise TemplateError(f"mail template {template!r}: missing or bad placeholder {exc}") from None
    if "\n" in subject or "\r" in subject:
        raise TemplateError("a subject is one line")
    return Rendered(subject, text.strip() + "\n", html)


class Mailer:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.settings = app.settings.mail

    @property
    def enabled(self) -> bool:
        return self.settings is not None

    def link(self, path: str) -> str:
        assert self.settings is not None, "links from [mail] base_url need [mail]"
        return self.settings.base_url + path

    def enqueue(self, db: Any, *, to: str, template: str, context: dict[str, Any], work: Work | None = None) -> bool:
        """Queue one message in ``db``'s transaction; False when mail is off."""
        if self.settings is None:
            return False
        rendered = render(template, context)
        if work is None:
            with self.app.keystore.work() as own:
                return self._add(db, own, to, template, rendered)
        return self._add(db, work, to, template, rendered)

    def _add(self, db: Any, work: Work, to: str, template: str, rendered: Rendered) -> bool:
        message_id = new_id()
        blob = work.seal(rendered.encode(), body_context(message_id, to, template))
        now = self.app.clock()
        db.add(
            MailMessage(
                id=message_id,
                to_address=to,
                template=template,
                state="pending",
                body_blob=blob,
                kek_label=work.sealed_under(blob),
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )
        return True


@dataclass(frozen=True)
class OutboxState:
    configured: bool
    pending: int
    failed: int
    sent: int
    oldest_pending_age: float | None
    last_error: str | None
    last_error_at: float | None


def outbox_state(app: Appliance) -> OutboxState:
    now = app.clock()
    with app.db.read() as db:
        counts = dict(db.execute(select(MailMessage.state, func.count()).group_by(MailMessage.state)).tuples().all())
        oldest = db.execute(select(func.min(MailMessage.created_at)).where(MailMessage.state == "pending")).scalar_one()
        last = db.execute(
            select(MailMessage.last_error, MailMessage.last_error_at)
            .where(MailMessage.last_error_at.is_not(None))
            .order_by(MailMessage.last_error_at.desc())
            .limit(1)
        ).one_or_none()
    return OutboxState(
        configured=app.settings.mail is not None,
        pending=int(counts.get("pending", 0)),
        failed=int(counts.get("failed", 0)),
        sent=int(counts.get("sent", 0)),
        oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
        last_error=last[0] if last else None,
        last_error_at=last[1] if last else None,
    )
