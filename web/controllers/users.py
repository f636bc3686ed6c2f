"""User administration (administrators only; enforced in the domain layer)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.accounts import UserView
from appliance.core import Appliance
from web import schemas
from web.deps import principal, serialized, strict_body


def _out(user: UserView) -> schemas.UserOut:
    return schemas.UserOut(id=user.id, email=user.email, is_admin=user.is_admin, status=user.status, locked=user.locked)


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ["users"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="inviteUser", sync_to_thread=True)
    def invite(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        data: JSONBody[schemas.UserCreateIn],
    ) -> schemas.UserCreateOut:
        with serialized(request):
            caller = principal(request)
            data = strict_body(request, schemas.UserCreateIn)
            user, token = appliance.accounts.invite(data.email, data.is_admin, caller, caller.client_addr)
            return schemas.UserCreateOut(id=user.id, email=user.email, is_admin=user.is_admin, enrollment_token=token)

    @get("/", operation_id="listUsers", sync_to_thread=True)
    def list_users(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]
    ) -> list[schemas.UserOut]:
        with serialized(request):
            caller = principal(request)
            return [_out(u) for u in appliance.accounts.list_users(caller)]

    @post("/{user_id:str}/unlock", status_code=HTTP_200_OK, operation_id="unlockUser", sync_to_thread=True)
    def unlock(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], user_id: FromPath[str]
    ) -> schemas.UserOut:
        with serialized(request):
            caller = principal(request)
            return _out(appliance.accounts.admin_unlock(caller, user_id, caller.client_addr))

    @post("/{user_id:str}/disable", status_code=HTTP_200_OK, operation_id="disableUser", sync_to_thread=True)
    def disable(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], user_id: FromPath[str]
    ) -> schemas.UserOut:
        with serialized(request):
            caller = principal(request)
            return _out(appliance.accounts.disable(caller, user_id, caller.client_addr))

    @post("/{user_id:str}/enable", status_code=HTTP_200_OK, operation_id="enableUser", sync_to_thread=True)
    def enable(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], user_id: FromPath[str]
    ) -> schemas.UserOut:
        with serialized(request):
            caller = principal(request)
            return _out(appliance.accounts.enable(caller, user_id, caller.client_addr))

    @post(
        "/{user_id:str}/reset-password", status_code=HTTP_200_OK, operation_id="resetUserPassword", sync_to_thread=True
    )
    def reset_password(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], user_id: FromPath[str]
    ) -> schemas.ResetOut:
        with serialized(request):
            caller = principal(request)
            return schemas.ResetOut(reset_token=appliance.accounts.reset_password(caller, user_id, caller.client_addr))

    @post("/{user_id:str}/rotate-key", status_code=HTTP_200_OK, operation_id="rotateUserKey", sync_to_thread=True)
    def rotate_key(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], user_id: FromPath[str]
    ) -> schemas.UserOut:
        """The user's key pair is replaced at their next unlock (their PIN opens the old one)."""
        with serialized(request):
            caller = principal(request)
            appliance.userkeys.request_rotation(caller, user_id, caller.client_addr)
            return _out(next(u for u in appliance.accounts.list_users(caller) if u.id == user_id))

    @delete("/{user_id:str}", status_code=HTTP_200_OK, operation_id="deleteUser", sync_to_thread=True)
    def delete_user(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        user_id: FromPath[str],
        transfer_to: FromQuery[str | None] = None,
    ) -> schemas.DeletionOut:
        """Delete a user for good (disable is the reversible way). ``transfer_to``: the
        e-mail address of who becomes administrator where the user is the last one."""
        with serialized(request):
            caller = principal(request)
            done = appliance.offboarding.delete_user(caller, user_id, transfer_to, caller.client_addr)
            return schemas.DeletionOut(
                id=done.user_id,
                email=done.email,
                vaults=done.vaults,
                rotated=len(done.rotated),
                rotation_deferred=len(done.deferred),
                transferred=len(done.transferred),
            )
