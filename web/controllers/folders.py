"""Folders inside vaults and the access vault administrators set on them."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from appliance.core import Appliance
from appliance.folders import AccessView, FolderView
from appliance.folders.service import UNSET
from web import schemas
from web.deps import principal, serialized, strict_body


def _folder(f: FolderView) -> schemas.FolderOut:
    return schemas.FolderOut(
        id=f.id, name=f.name, parent_id=f.parent_id, access=f.access, depth=f.depth, item_count=f.item_count
    )


def _access(a: AccessView) -> schemas.AccessOut:
    return schemas.AccessOut(user_id=a.user_id, email=a.email, role=a.role, setting=a.setting, effective=a.effective)


class FoldersController(Controller):
    path = "/api/v1"
    tags = ["folders"]

    @post(
        "/vaults/{vault_id:str}/folders", status_code=HTTP_201_CREATED, operation_id="createFolder", sync_to_thread=True
    )
    def create(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        vault_id: FromPath[str],
        data: JSONBody[schemas.FolderIn],
    ) -> schemas.FolderCreated:
        with serialized(request):
            caller = principal(request)
            body = strict_body(request, schemas.FolderIn)
            f = appliance.folders.create(caller, vault_id, body.name, body.parent_id)
            return schemas.FolderCreated(id=f.id, name=f.name, parent_id=f.parent_id)

    @get("/vaults/{vault_id:str}/folders", operation_id="listFolders", sync_to_thread=True)
    def list_folders(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], vault_id: FromPath[str]
    ) -> list[schemas.FolderOut]:
        """The folders the caller may see, parents first."""
        with serialized(request):
            caller = principal(request)
            return [_folder(f) for f in appliance.folders.list_folders(caller, vault_id)]

    @patch("/folders/{folder_id:str}", status_code=HTTP_200_OK, operation_id="updateFolder", sync_to_thread=True)
    def update(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        folder_id: FromPath[str],
        data: JSONBody[schemas.FolderPatch],
    ) -> schemas.FolderOut:
        """Rename and/or move (``parent_id``: null for the vault root; vault administrators)."""
        with serialized(request):
            caller = principal(request)
            body = strict_body(request, schemas.FolderPatch)
            name = UNSET if body.name is msgspec.UNSET else body.name
            parent = UNSET if body.parent_id is msgspec.UNSET else body.parent_id
            return _folder(appliance.folders.update(caller, folder_id, name, parent))

    @delete(
        "/folders/{folder_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="deleteFolder", sync_to_thread=True
    )
    def delete_folder(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], folder_id: FromPath[str]
    ) -> None:
        with serialized(request):
            caller = principal(request)
            appliance.folders.delete(caller, folder_id)

    @get("/folders/{folder_id:str}/access", operation_id="listFolderAccess", sync_to_thread=True)
    def list_access(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], folder_id: FromPath[str]
    ) -> list[schemas.AccessOut]:
        with serialized(request):
            caller = principal(request)
            return [_access(a) for a in appliance.folders.list_access(caller, folder_id)]

    @put(
        "/folders/{folder_id:str}/access/{user_id:str}",
        status_code=HTTP_200_OK,
        operation_id="setFolderAccess",
        sync_to_thread=True,
    )
    def set_access(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        folder_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[schemas.AccessIn],
    ) -> schemas.AccessOut:
        with serialized(request):
            caller = principal(request)
            body = strict_body(request, schemas.AccessIn)
            return _access(appliance.folders.set_access(caller, folder_id, user_id, body.access))

    @delete(
        "/folders/{folder_id:str}/access/{user_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="clearFolderAccess",
        sync_to_thread=True,
    )
    def clear_access(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        folder_id: FromPath[str],
        user_id: FromPath[str],
    ) -> None:
        with serialized(request):
            caller = principal(request)
            appliance.folders.clear_access(caller, folder_id, user_id)
