"""The background sender: delivers due outbox messages with smtplib.

A daemon thread per web process (the work is blocking socket and database
calls) that wakes every second. Each message is claimed for a while before it is
sent, so several nodes sharing one outbox do not send it twice. A failure pushes
the message's next attempt back (doubling from ``[mail] retry_seconds``) and is
logged; after ``max_attempts`` the message is marked failed and its body erased.
Nothing here runs inside a request.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from appliance.config import ConfigError, MailSettings
from appliance.mail.models import MailMessage
from appliance.mail.outbox import Rendered, body_context
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("coffre.mail")
POLL_SECONDS = 1.0
BATCH = 20
CLAIM_SECONDS = 300.0
MAX_DELAY_SECONDS = 6 * 3600.0


def _smtp(settings: MailSettings) -> smtplib.SMTP:
    context = ssl.create_default_context(cafile=settings.ca_file)
    client: smtplib.SMTP
    if settings.security == "tls":
        client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout_seconds, context=context)
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds)
        if settings.security == "starttls":
            client.starttls(context=context)
    if settings.user:
        client.login(settings.user, settings.password() or "")
    return client


def build(settings: MailSettings, to: str, rendered: Rendered) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.from_address
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.from_address.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    return message


class MailTask:
    def __init__(self, app: Appliance, poll: float = POLL_SECONDS) -> None:
        self.app = app
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one round at a time in this process

    def start(self) -> None:
        if self.app.settings.mail is not None and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="coffre-mail", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.round()
            except Exception:
                log.exception("mail sender round failed; retrying")

    def _claim(self) -> list[MailMessage]:
        now = self.app.clock()
        with self.app.db.write() as db:
            rows = list(
                db.execute(
                    select(MailMessage)
                    .where(
                        MailMessage.state == "pending",
                        MailMessage.next_attempt_at <= now,
                        or_(MailMessage.claimed_until.is_(None), MailMessage.claimed_until < now),
                    )
                    .order_by(MailMessage.next_attempt_at)
                    .limit(BATCH)
                ).scalars()
            )
            for row in rows:
                row.claimed_until = now + CLAIM_SECONDS
        return rows

    def round(self) -> int:
        """Send what is due; return how many messages went out."""
        settings = self.app.settings.mail
        if settings is None:
            return 0
        with self._lock:
            rows = self._claim()
            if not rows:
                return 0
            sent = 0
            client: smtplib.SMTP | None = None
            try:
                for row in rows:
                    rendered = self._open(row)
                    if rendered is None:
                        continue
                    try:
                        if client is None:
                            client = _smtp(settings)
                        self._deliver(client, settings, row, rendered)
                        sent += 1
                    except (smtplib.SMTPException, OSError, ConfigError) as exc:  # Config: a password file gone
                        self._failed(settings, row, f"{type(exc).__name__}: {exc}"[:500])
                        if client is not None and not isinstance(exc, smtplib.SMTPRecipientsRefused):
                            self._quit(client)
                            client = None
            finally:
                if client is not None:
                    self._quit(client)
            return sent

    @staticmethod
    def _quit(client: smtplib.SMTP) -> None:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()

    def _open(self, row: MailMessage) -> Rendered | None:
        """The message's body, or None when it does not open under its envelope (the
        address or template was changed in the database): the message is then failed,
        never sent, its body erased, and the event audited."""
        with self.app.keystore.work() as work:
            try:
                if row.body_blob is None:
                    raise DecryptionFailed()
                return Rendered.decode(work.unseal(row.body_blob, body_context(row.id, row.to_address, row.template)))
            except DecryptionFailed:
                error = "integrity: the message's body does not match its address or template; not sent"
                log.error("mail %s (%s): %s", row.id, row.template, error)
                with self.app.db.write() as db:
                    db.execute(
                        update(MailMessage)
                        .where(MailMessage.id == row.id)
                        .values(
                            state="failed",
                            attempts=row.attempts + 1,
                            last_error=error,
                            last_error_at=self.app.clock(),
                            body_blob=None,
                            kek_label=None,
                            claimed_until=None,
                        )
                    )
                    self.app.audit.append(db, work, "integrity.failed", actor=None, target=row.id, what="mail")
                return None

    def _deliver(self, client: smtplib.SMTP, settings: MailSettings, row: MailMessage, rendered: Rendered) -> None:
        client.send_message(build(settings, row.to_address, rendered))
        with self.app.db.write() as db:
            db.execute(
                update(MailMessage)
                .where(MailMessage.id == row.id)
                .values(
                    state="sent",
                    sent_at=self.app.clock(),
                    attempts=row.attempts + 1,
                    body_blob=None,
                    kek_label=None,
                    claimed_until=None,
                )
            )

    def _failed(self, settings: MailSettings, row: MailMessage, error: str) -> None:
        now = self.app.clock()
        attempts = row.attempts + 1
        final = attempts >= settings.max_attempts
        log.warning(
            "mail %s (%s) attempt %d failed%s: %s",
            row.id,
            row.template,
            attempts,
            "; giving up" if final else "",
            error,
        )
        values: dict[str, object] = {
            "attempts": attempts,
            "last_error": error,
            "last_error_at": now,
            "claimed_until": None,
            "next_attempt_at": now + min(settings.retry_seconds * 2 ** (attempts - 1), MAX_DELAY_SECONDS),
        }
        if final:
            values.update(state="failed", body_blob=None, kek_label=None)
        with self.app.db.write() as db:
            db.execute(update(MailMessage).where(MailMessage.id == row.id).values(**values))
