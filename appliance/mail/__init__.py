"""E-mail: an outbox in the database and a background sender.

The contract (kept small and stable; other packages depend on it):

- ``app.mail.enabled`` is True when coffre.toml has a ``[mail]`` section. Without
  it nothing is ever e-mailed: callers hand the links to the person who asked
  (API answer, page) instead.
- ``app.mail.enqueue(db, to=..., template=..., context={...}, work=None) -> bool``
  renders ``appliance/mail/templates/<template>.txt`` (first line ``Subject: ...``,
  then the body; ``$name`` placeholders from ``context``, every one required; an
  optional ``<template>.html`` beside it is sent as the HTML alternative) and adds
  the message to the outbox **inside the caller's transaction** ``db``: a request
  that rolls back sends nothing, one that commits sends it. Returns False (and
  queues nothing) when mail is not configured. ``work`` is the caller's HSM unit of
  work if it has one (the body is sealed under the KEK; one is opened otherwise).
- ``app.mail.link(path)`` builds an absolute link from ``[mail] base_url`` (never
  from a request's Host header).
- The sender (``MailTask``, started by the web server) delivers due messages with
  smtplib off the request path, retries with a doubling delay from
  ``[mail] retry_seconds`` up to ``max_attempts``, then marks the message failed.
  A dead SMTP server never fails or slows a request; failures are logged
  (``coffre.mail``) and shown to administrators (``coffre status``, the admin
  status page, ``coffre_mail_*`` metrics) through ``outbox_state``.

What a message may hold: links and one-time codes, never a secret (a password, a
key, an item field), and never a one-time code in the same message as its link.
A body holds one-time links until it is sent, so it is stored sealed under the
KEK (``mail_outbox.body_blob``, ``kek_label``; the associated data names the message
id, ``to_address`` and ``template``, so a re-addressed message fails to open and is
marked failed, never sent) and erased once sent or given up.
"""

from __future__ import annotations

from appliance.mail.outbox import Mailer, OutboxState, outbox_state, when
from appliance.mail.task import MailTask

__all__ = ["MailTask", "Mailer", "OutboxState", "outbox_state", "when"]
