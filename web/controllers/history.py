"""Item history, TOTP codes and the password generator."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from appliance.core import Appliance
from appliance.generator import CLASSES, GeneratorOptions, generate
from web import schemas
from web.controllers.items import _item
from web.deps import iso, principal, serialized, strict_body


class HistoryController(Controller):
    path = "/api/v1"
    tags = ["items"]

    @get("/items/{item_id:str}/versions", operation_id="listItemVersions", sync_to_thread=True)
    def versions(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], item_id: FromPath[str]
    ) -> list[schemas.VersionOut]:
        """The current version and the earlier ones kept, newest first."""
        with serialized(request):
            caller = principal(request)
            return [
                schemas.VersionOut(
                    version=v.version, changed_by=v.changed_by, changed_at=iso(v.changed_at), current=v.current
                )
                for v in appliance.history.versions(caller, item_id)
            ]

    @get("/items/{item_id:str}/versions/{n:int}", operation_id="getItemVersion", sync_to_thread=True)
    def version(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        item_id: FromPath[str],
        n: FromPath[int],
    ) -> schemas.ItemOut:
        with serialized(request):
            caller = principal(request)
            return _item(appliance.history.version(caller, item_id, n))

    @post(
        "/items/{item_id:str}/versions/{n:int}/restore",
        status_code=HTTP_200_OK,
        operation_id="restoreItemVersion",
        sync_to_thread=True,
    )
    def restore(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        item_id: FromPath[str],
        n: FromPath[int],
    ) -> schemas.ItemOut:
        """Version ``n`` becomes the item's new current version."""
        with serialized(request):
            caller = principal(request)
            return _item(appliance.history.restore(caller, item_id, n))

    @get("/items/{item_id:str}/totp", operation_id="getItemTotp", sync_to_thread=True)
    def totp(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], item_id: FromPath[str]
    ) -> schemas.TotpOut:
        with serialized(request):
            caller = principal(request)
            code = appliance.history.totp(caller, item_id)
            return schemas.TotpOut(code=code.code, seconds_left=code.seconds_left)

    @post("/generator", status_code=HTTP_200_OK, operation_id="generatePassword", sync_to_thread=True)
    def generator(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        data: JSONBody[schemas.GeneratorIn],
    ) -> schemas.GeneratorOut:
        """A random password from the chosen classes, or a passphrase of ``passphrase_words`` words."""
        principal(request)
        body = strict_body(request, schemas.GeneratorIn)
        options = GeneratorOptions(
            length=body.length,
            passphrase=body.passphrase_words is not None,
            words=body.passphrase_words or 6,
            **{name: name in body.classes for name in CLASSES},
        )
        return schemas.GeneratorOut(password=generate(options))
