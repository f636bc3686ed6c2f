"""Sends (a copy of a secret for a user, under a one-time code, or by link), what
the caller received, and the public reveal of code and link sends."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from appliance.core import Appliance
from appliance.sends import ReceivedView, SentView
from web import schemas
from web.deps import client_addr, iso, over_unix_socket, principal, serialized, strict_body


def public_link(request: Request[Any, Any, Any], path: str) -> str:
    """An absolute link: from ``[mail] base_url`` when set, else from the request
    (https behind Apache, which reaches us over the Unix socket)."""
    app: Appliance = request.app.state.appliance
    if app.mail.enabled:
        return app.mail.link(path)
    scheme = "https" if over_unix_socket(request.scope) else request.base_url.scheme
    return f"{scheme}://{request.base_url.netloc}{path}"


def sent_out(s: SentView) -> schemas.SentOut:
    return schemas.SentOut(
        id=s.id,
        mode=s.mode,
        recipient_email=s.recipient_email,
        status=s.status,
        created_at=iso(s.created_at),
        expires_at=iso(s.expires_at),
        max_views=s.max_views,
        views_used=s.views_used,
        viewed_at=None if s.viewed_at is None else iso(s.viewed_at),
        viewed_from=s.viewed_from,
    )


def received_out(r: ReceivedView) -> schemas.ReceivedOut:
    f = r.fields
    return schemas.ReceivedOut(
        id=r.id,
        sender_email=r.sender_email,
        title=f.title,
        username=f.username,
        password=f.password,
        url=f.url,
        notes=f.notes,
        created_at=iso(r.created_at),
        expires_at=iso(r.expires_at),
    )


class SendsController(Controller):
    path = "/api/v1"
    tags = ["sends"]

    @post("/sends", status_code=HTTP_201_CREATED, operation_id="createSend", sync_to_thread=True)
    def create(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], data: JSONBody[schemas.SendIn]
    ) -> schemas.SendCreatedOut:
        with serialized(request):
            caller = principal(request)
            data = strict_body(request, schemas.SendIn)
            created = appliance.sends.create(
                caller,
                mode=data.mode,
                item_id=data.item_id,
                secret=data.secret,
                recipient_email=data.recipient_email,
                expires_in_hours=None if data.expires_in_hours is msgspec.UNSET else data.expires_in_hours,
                max_views=None if data.max_views is msgspec.UNSET else data.max_views,
            )
            return schemas.SendCreatedOut(
                id=created.id,
                url=None if created.path is None else public_link(request, created.path),
                code=created.code,
                invitation_url=None
                if created.invitation_path is None
                else public_link(request, created.invitation_path),
                mailed=created.mailed,
            )

    @get("/sends", operation_id="listSends", sync_to_thread=True)
    def list_sends(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]
    ) -> list[schemas.SentOut]:
        with serialized(request):
            return [sent_out(s) for s in appliance.sends.list_sent(principal(request))]

    @delete("/sends/{send_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="revokeSend", sync_to_thread=True)
    def revoke(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], send_id: FromPath[str]
    ) -> None:
        with serialized(request):
            appliance.sends.revoke(principal(request), send_id)

    @get("/received", operation_id="listReceived", sync_to_thread=True)
    def list_received(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]
    ) -> list[schemas.ReceivedOut]:
        with serialized(request):
            return [received_out(r) for r in appliance.sends.list_received(principal(request))]

    @post(
        "/received/{send_id:str}/save", status_code=HTTP_201_CREATED, operation_id="saveReceived", sync_to_thread=True
    )
    def save(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        send_id: FromPath[str],
        data: JSONBody[schemas.SaveReceivedIn],
    ) -> schemas.ItemOut:
        from web.controllers.items import _item

        with serialized(request):
            caller = principal(request)
            data = strict_body(request, schemas.SaveReceivedIn)
            return _item(appliance.sends.save(caller, send_id, data.vault_id, data.folder_id))

    @delete(
        "/received/{send_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="discardReceived", sync_to_thread=True
    )
    def discard(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], send_id: FromPath[str]
    ) -> None:
        with serialized(request):
            appliance.sends.discard(principal(request), send_id)

    @post("/public/sends/{token:str}/reveal", status_code=HTTP_200_OK, operation_id="revealSend", sync_to_thread=True)
    def reveal(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        token: FromPath[str],
        data: JSONBody[schemas.RevealIn],
    ) -> schemas.RevealOut:
        """No session: the token in the path is the credential (and the code, for a
        code send). Not through the work gate: a code costs an Argon2id, like a login."""
        data = strict_body(request, schemas.RevealIn)
        fields = appliance.sends.reveal(token, data.code, client_addr(request))
        return schemas.RevealOut(
            title=fields.title,
            username=fields.username,
            password=fields.password,
            url=fields.url,
            notes=fields.notes,
        )
