"""M-of-N recovery (appliance/recovery): status, share pickup, requests, shares."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from appliance.core import Appliance
from web import schemas
from web.deps import iso, principal, serialized, strict_body


class RecoveryController(Controller):
    path = "/api/v1/recovery"
    tags = ["recovery"]

    @get("/", operation_id="recoveryStatus", sync_to_thread=True)
    def status(self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]) -> schemas.RecoveryOut:
        """Whether recovery is enabled, by whom and with which threshold (every user may know)."""
        with serialized(request):
            principal(request)
            s = appliance.recovery.status()
            return schemas.RecoveryOut(enabled=s.enabled, threshold=s.threshold, officers=list(s.officers))

    @post("/my-share", status_code=HTTP_200_OK, operation_id="pickUpRecoveryShare", sync_to_thread=True)
    def my_share(self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]) -> schemas.ShareOut:
        """An officer's share, once: write it down; a second pickup answers 410."""
        with serialized(request):
            caller = principal(request)
            return schemas.ShareOut(share=appliance.recovery.pickup(caller))

    @post("/requests", status_code=HTTP_201_CREATED, operation_id="createRecoveryRequest", sync_to_thread=True)
    def create(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        data: JSONBody[schemas.RecoveryRequestIn],
    ) -> schemas.RecoveryRequestCreated:
        with serialized(request):
            caller = principal(request)
            data = strict_body(request, schemas.RecoveryRequestIn)
            request_id, token = appliance.recovery_requests.open(caller, data.email, caller.client_addr)
            return schemas.RecoveryRequestCreated(id=request_id, reset_token=token)

    @get("/requests", operation_id="listRecoveryRequests", sync_to_thread=True)
    def list_requests(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]
    ) -> list[schemas.RecoveryRequestOut]:
        with serialized(request):
            caller = principal(request)
            return [
                schemas.RecoveryRequestOut(
                    id=r.id,
                    email=r.email,
                    status=r.status,
                    shares_received=r.shares_received,
                    threshold=r.threshold,
                    expires_at=iso(r.expires_at),
                )
                for r in appliance.recovery_requests.list_requests(caller)
            ]

    @post(
        "/requests/{request_id:str}/shares",
        status_code=HTTP_202_ACCEPTED,
        operation_id="submitRecoveryShare",
        sync_to_thread=True,
    )
    def submit(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        request_id: FromPath[str],
        data: JSONBody[schemas.ShareIn],
    ) -> schemas.ShareAccepted:
        with serialized(request):
            caller = principal(request)
            data = strict_body(request, schemas.ShareIn)
            received, threshold = appliance.recovery_requests.submit(caller, request_id, data.share)
            return schemas.ShareAccepted(shares_received=received, threshold=threshold)
