"""Enrollment, two-step login, logout, the caller's own account."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from appliance.core import Appliance
from appliance.pin_policy import pin_weakness
from web import schemas
from web.deps import client_addr, iso, principal, serialized


class AuthController(Controller):
    path = "/api/v1"
    tags = ["auth"]

    @post("/enroll", status_code=HTTP_201_CREATED, operation_id="enroll", sync_to_thread=True)
    def enroll(
        self,
        request: Request[Any, Any, State],
        appliance: NamedDependency[Appliance],
        data: JSONBody[schemas.EnrollIn],
    ) -> schemas.UserRef:
        user = appliance.accounts.enroll(data.token, data.password, data.pin, client_addr(request))
        return schemas.UserRef(id=user.id, email=user.email)

    @post("/auth/login", status_code=HTTP_200_OK, operation_id="login", sync_to_thread=True)
    def login(
        self,
        request: Request[Any, Any, State],
        appliance: NamedDependency[Appliance],
        data: JSONBody[schemas.LoginIn],
    ) -> schemas.LoginOut:
        ticket = appliance.accounts.login(data.email, data.password, client_addr(request))
        return schemas.LoginOut(login_ticket=ticket)

    @post("/auth/unlock", status_code=HTTP_200_OK, operation_id="unlock", sync_to_thread=True)
    def unlock(
        self,
        request: Request[Any, Any, State],
        appliance: NamedDependency[Appliance],
        data: JSONBody[schemas.UnlockIn],
    ) -> schemas.UnlockOut:
        token, expires = appliance.accounts.unlock(data.login_ticket, data.pin, client_addr(request))
        return schemas.UnlockOut(token=token, expires_at=iso(expires), pin_weak=pin_weakness(data.pin) is not None)

    @post(
        "/auth/logout",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="logout",
        sync_to_thread=True,
    )
    def logout(self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]) -> None:
        with serialized(request):
            caller = principal(request)
            appliance.accounts.logout(caller)

    @post(
        "/auth/password",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="changePassword",
        sync_to_thread=True,
    )
    def change_password(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        data: JSONBody[schemas.PasswordChangeIn],
    ) -> None:
        """This session stays open; the account's other sessions end unless
        ``end_other_sessions`` is false."""
        with serialized(request):
            caller = principal(request)
            appliance.accounts.change_password(
                caller, data.current_password, data.new_password, data.end_other_sessions
            )

    @post(
        "/me/pin",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="changePin",
        sync_to_thread=True,
    )
    def change_pin(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        data: JSONBody[schemas.PinChangeIn],
    ) -> None:
        """A new key pair under the new PIN; this session stays open, the others end."""
        with serialized(request):
            caller = principal(request)
            appliance.userkeys.change_pin(caller, data.current_pin, data.new_pin)

    @post(
        "/auth/password-reset",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="completePasswordReset",
        sync_to_thread=True,
    )
    def complete_reset(
        self,
        request: Request[Any, Any, State],
        appliance: NamedDependency[Appliance],
        data: JSONBody[schemas.PasswordResetIn],
    ) -> None:
        """With ``new_pin``, the end of a recovery: 409 ("waiting for the officers")
        until M shares are in."""
        if data.new_pin is not None:
            appliance.recovery_requests.complete(data.token, data.new_password, data.new_pin, client_addr(request))
        else:
            appliance.accounts.complete_reset(data.token, data.new_password, client_addr(request))

    @get("/me", operation_id="me", sync_to_thread=True)
    def me(self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]) -> schemas.MeOut:
        with serialized(request):
            caller = principal(request)
            user = appliance.accounts.me(caller)
            return schemas.MeOut(id=user.id, email=user.email, is_admin=user.is_admin)

    @get("/ping", operation_id="ping", sync_to_thread=True)
    def ping(self, request: Request[Any, Any, State]) -> schemas.MeOut:
        """A trivial authenticated endpoint (the session check only), for benchmarks."""
        with serialized(request):
            caller = principal(request)
            return schemas.MeOut(id=caller.user_id, email=caller.email, is_admin=caller.is_admin)
