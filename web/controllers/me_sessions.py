"""The caller's own sessions: list and revoke (`GET/DELETE /api/v1/me/sessions`)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_204_NO_CONTENT

from appliance import my_sessions
from appliance.core import Appliance
from web import schemas
from web.deps import iso, principal, serialized


class MySessionsController(Controller):
    path = "/api/v1/me/sessions"
    tags = ["auth"]

    @get("/", operation_id="listMySessions", sync_to_thread=True)
    def list_sessions(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]
    ) -> list[schemas.SessionOut]:
        with serialized(request):
            caller = principal(request)
            return [
                schemas.SessionOut(
                    id=s.id,
                    created_at=iso(s.created_at),
                    last_seen_at=iso(s.last_seen_at),
                    expires_at=iso(s.expires_at),
                    client_addr=s.client_addr,
                    current=s.current,
                )
                for s in my_sessions.list_sessions(appliance, caller)
            ]

    @delete("/{session_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="revokeMySession", sync_to_thread=True)
    def revoke(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], session_id: FromPath[str]
    ) -> None:
        with serialized(request):
            caller = principal(request)
            my_sessions.revoke_session(appliance, caller, session_id)
