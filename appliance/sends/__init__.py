"""Sending a copy of a secret: to a user (wrapped to their public key), under a
one-time code (HSM pepper + Argon2id, then the KEK), or by link (the KEK).

``app.sends`` is the facade the web layer calls:

- ``create(principal, mode=..., item_id=... | secret=..., recipient_email=...,
  expires_in_hours=..., max_views=...)`` -> ``Created`` (``service.py``);
- ``list_sent``, ``revoke`` (the sender);
- ``list_received``, ``save``, ``discard`` (a user recipient, ``received.py``);
- ``open_page`` (GET, consumes nothing) and ``reveal`` (POST) for code and link
  sends (``public.py``);
- ``sweep()`` shreds expired sends (``sweeper.py``; ``SendSweeper`` runs it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.sends.models import Send
from appliance.sends.public import PublicSends
from appliance.sends.received import ReceivedSends, ReceivedView
from appliance.sends.service import Created, SendsService, SentView
from appliance.sends.sweeper import SendSweeper, sweep

if TYPE_CHECKING:
    from appliance.core import Appliance


class Sends:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.service = SendsService(app)
        self.public = PublicSends(app, self.service)
        self.received = ReceivedSends(app, self.service)
        self.create = self.service.create
        self.list_sent = self.service.list_sent
        self.revoke = self.service.revoke
        self.list_received = self.received.list_received
        self.save = self.received.save
        self.discard = self.received.discard
        self.open_page = self.public.open_page
        self.reveal = self.public.reveal

    def sweep(self) -> int:
        return sweep(self.app)


__all__ = ["Created", "ReceivedView", "Send", "SendSweeper", "Sends", "SentView"]
