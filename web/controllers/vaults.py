"""Vaults and their members (role checks live in ``appliance.vaults``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from appliance.core import Appliance
from appliance.vaults import MemberView, VaultView
from web import schemas
from web.deps import principal, serialized


def _vault(v: VaultView) -> schemas.VaultOut:
    return schemas.VaultOut(id=v.id, name=v.name, role=v.role)


def _member(m: MemberView) -> schemas.MemberOut:
    return schemas.MemberOut(user_id=m.user_id, email=m.email, role=m.role)


class VaultsController(Controller):
    path = "/api/v1/vaults"
    tags = ["vaults"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createVault", sync_to_thread=True)
    def create(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], data: JSONBody[schemas.VaultIn]
    ) -> schemas.VaultOut:
        with serialized(request):
            caller = principal(request)
            return _vault(appliance.vaults.create(caller, data.name))

    @get("/", operation_id="listVaults", sync_to_thread=True)
    def list_vaults(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]
    ) -> list[schemas.VaultOut]:
        with serialized(request):
            caller = principal(request)
            return [_vault(v) for v in appliance.vaults.list_vaults(caller)]

    @post(
        "/{vault_id:str}/rotate",
        status_code=HTTP_200_OK,
        operation_id="rotateVaultKey",
        sync_to_thread=True,
        responses={202: ResponseSpec(schemas.KeyJobOut, description="scheduled for a vault administrator")},
    )
    def rotate_key(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], vault_id: FromPath[str]
    ) -> Response[schemas.KeyJobOut]:
        """Rotate the vault key now (a vault administrator: 200, job done) or schedule
        it for the vault's administrators (an appliance administrator: 202, job waiting)."""
        with serialized(request):
            caller = principal(request)
            view = appliance.keyops.vault_rotation(caller, vault_id, caller.user_id)
            body = schemas.KeyJobOut(
                id=view.id,
                kind=view.kind,
                target=view.target,
                state=view.state,
                phase=view.phase,
                total=view.total,
                done=view.done,
                failed=view.failed,
                started_by=view.started_by,
                started_at=view.started_at,
                finished_at=view.finished_at,
            )
            return Response(body, status_code=HTTP_200_OK if view.state == "done" else HTTP_202_ACCEPTED)

    @get("/{vault_id:str}", operation_id="getVault", sync_to_thread=True)
    def get_vault(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], vault_id: FromPath[str]
    ) -> schemas.VaultOut:
        with serialized(request):
            caller = principal(request)
            return _vault(appliance.vaults.get(caller, vault_id))

    @patch("/{vault_id:str}", operation_id="renameVault", sync_to_thread=True)
    def rename(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        vault_id: FromPath[str],
        data: JSONBody[schemas.VaultIn],
    ) -> schemas.VaultOut:
        with serialized(request):
            caller = principal(request)
            return _vault(appliance.vaults.rename(caller, vault_id, data.name))

    @delete("/{vault_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="deleteVault", sync_to_thread=True)
    def delete_vault(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], vault_id: FromPath[str]
    ) -> None:
        with serialized(request):
            caller = principal(request)
            appliance.vaults.delete(caller, vault_id)

    @get("/{vault_id:str}/members", operation_id="listMembers", sync_to_thread=True)
    def members(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], vault_id: FromPath[str]
    ) -> list[schemas.MemberOut]:
        with serialized(request):
            caller = principal(request)
            return [_member(m) for m in appliance.vaults.members(caller, vault_id)]

    @post("/{vault_id:str}/members", status_code=HTTP_201_CREATED, operation_id="addMember", sync_to_thread=True)
    def add_member(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        vault_id: FromPath[str],
        data: JSONBody[schemas.MemberIn],
    ) -> schemas.MemberOut:
        with serialized(request):
            caller = principal(request)
            return _member(appliance.vaults.add_member(caller, vault_id, data.email, data.role))

    @patch(
        "/{vault_id:str}/members/{user_id:str}",
        status_code=HTTP_200_OK,
        operation_id="changeMemberRole",
        sync_to_thread=True,
    )
    def change_role(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        vault_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[schemas.MemberPatch],
    ) -> schemas.MemberOut:
        with serialized(request):
            caller = principal(request)
            return _member(appliance.vaults.change_role(caller, vault_id, user_id, data.role))

    @delete(
        "/{vault_id:str}/members/{user_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="removeMember",
        sync_to_thread=True,
    )
    def remove_member(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        vault_id: FromPath[str],
        user_id: FromPath[str],
    ) -> None:
        with serialized(request):
            caller = principal(request)
            appliance.vaults.remove_member(caller, vault_id, user_id)
