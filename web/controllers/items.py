"""Items (credentials) in vaults."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from appliance.core import Appliance
from appliance.items import ItemSummary, ItemView
from web import schemas
from web.deps import iso, principal, serialized, strict_body


def _item(item: ItemView) -> schemas.ItemOut:
    f = item.fields
    return schemas.ItemOut(
        id=item.id,
        vault_id=item.vault_id,
        version=item.version,
        title=f.title,
        username=f.username,
        password=f.password,
        url=f.url,
        notes=f.notes,
        totp=f.totp,
        folder_id=item.folder_id,
        created_at=iso(item.created_at),
        updated_at=iso(item.updated_at),
    )


def _summary(s: ItemSummary) -> schemas.ItemSummaryOut:
    return schemas.ItemSummaryOut(
        id=s.id,
        vault_id=s.vault_id,
        version=s.version,
        title=s.title,
        username=s.username,
        url=s.url,
        updated_at=iso(s.updated_at),
        folder_id=s.folder_id,
    )


class ItemsController(Controller):
    path = "/api/v1"
    tags = ["items"]

    @post("/vaults/{vault_id:str}/items", status_code=HTTP_201_CREATED, operation_id="createItem", sync_to_thread=True)
    def create(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        vault_id: FromPath[str],
        data: JSONBody[schemas.ItemIn],
    ) -> schemas.ItemOut:
        with serialized(request):
            caller = principal(request)
            return _item(appliance.items.create(caller, vault_id, msgspec.structs.asdict(data)))

    @get("/vaults/{vault_id:str}/items", operation_id="listItems", sync_to_thread=True)
    def list_items(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        vault_id: FromPath[str],
        folder_id: FromQuery[str | None] = None,
    ) -> list[schemas.ItemSummaryOut]:
        """Every item the caller may see in the vault; with ``folder_id``, those directly in that folder."""
        with serialized(request):
            caller = principal(request)
            return [_summary(s) for s in appliance.items.list_items(caller, vault_id, folder_id)]

    @get("/items/{item_id:str}", operation_id="getItem", sync_to_thread=True)
    def get_item(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], item_id: FromPath[str]
    ) -> schemas.ItemOut:
        with serialized(request):
            caller = principal(request)
            return _item(appliance.items.get(caller, item_id))

    @put("/items/{item_id:str}", status_code=HTTP_200_OK, operation_id="updateItem", sync_to_thread=True)
    def update(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        item_id: FromPath[str],
        data: JSONBody[schemas.ItemUpdateIn],
    ) -> schemas.ItemOut:
        """Replace the whole item: a field left out is cleared (PATCH changes only the fields given)."""
        with serialized(request):
            caller = principal(request)
            values = msgspec.structs.asdict(strict_body(request, schemas.ItemUpdateIn))
            version = values.pop("version")
            if values.get("folder_id") is msgspec.UNSET:
                values.pop("folder_id")
            return _item(appliance.items.update(caller, item_id, values, version))

    @patch("/items/{item_id:str}", status_code=HTTP_200_OK, operation_id="patchItem", sync_to_thread=True)
    def patch_item(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        item_id: FromPath[str],
        data: JSONBody[schemas.ItemPatchIn],
    ) -> schemas.ItemOut:
        """Change only the fields given; PUT replaces the whole item."""
        with serialized(request):
            caller = principal(request)
            body = strict_body(request, schemas.ItemPatchIn)
            return _item(appliance.items.patch(caller, item_id, body.changes(), body.version))

    @delete("/items/{item_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="deleteItem", sync_to_thread=True)
    def delete_item(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], item_id: FromPath[str]
    ) -> None:
        with serialized(request):
            caller = principal(request)
            appliance.items.delete(caller, item_id)
