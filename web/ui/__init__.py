"""The web portal: server-rendered pages over the same appliance services as the API."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from web.ui.account import AccountPages
from web.ui.admin import AdminPages
from web.ui.auth import AuthPages
from web.ui.errors import HANDLERS
from web.ui.files import FilePages
from web.ui.folders import FolderPages
from web.ui.history import HistoryPages
from web.ui.i18n import jinja_gettext, jinja_ngettext
from web.ui.items import ItemPages
from web.ui.members import MemberPages
from web.ui.recovery import RecoveryPages
from web.ui.sends import SendPages
from web.ui.session import csrf_guard
from web.ui.transfers import TransferPages
from web.ui.vaults import VaultPages

WEB = Path(__file__).resolve().parent.parent
TEMPLATES = WEB / "templates"
STATIC = WEB / "static"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(jinja_gettext, jinja_ngettext, newstyle=True)  # type: ignore[attr-defined]
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


def routers() -> list[Router]:
    pages = Router(
        path="/",
        route_handlers=[
            AuthPages,
            VaultPages,
            ItemPages,
            FolderPages,
            HistoryPages,
            MemberPages,
            AccountPages,
            AdminPages,
            RecoveryPages,
            SendPages,
            FilePages,
            TransferPages,
        ],
        guards=[csrf_guard],
        include_in_schema=False,
    )
    static = create_static_files_router(
        path="/static", directories=[STATIC], cache_control=CacheControlHeader(max_age=300, private=True)
    )
    return [pages, static]


__all__ = ["HANDLERS", "routers", "template_config"]
