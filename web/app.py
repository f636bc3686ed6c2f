"""The Litestar application: JSON API under /api/v1, /healthz, OpenAPI at /schema."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.routes import HTTPRoute

from appliance.auditops import AuditTask
from appliance.core import Appliance
from appliance.files.task import FilesTask
from appliance.mail import MailTask
from appliance.sends import SendSweeper
from web.controllers.auth import AuthController
from web.controllers.deposits import DepositsController, PublicDepositsController
from web.controllers.files import FilesController
from web.controllers.folders import FoldersController
from web.controllers.health import healthz
from web.controllers.history import HistoryController
from web.controllers.items import ItemsController
from web.controllers.me_sessions import MySessionsController
from web.controllers.metrics import metrics
from web.controllers.recovery import RecoveryController
from web.controllers.sends import SendsController
from web.controllers.transfers import PublicTransfersController, TransfersController
from web.controllers.users import UsersController
from web.controllers.vaults import VaultsController
from web.deps import appliance as appliance_dep
from web.gate import FairGate
from web.jsonbody import JsonRequest
from web.observability import RequestObserver, install
from web.openapi import openapi_config
from web.ui import HANDLERS, routers, template_config

# The browser's rules for every response (the pages' own scripts and styles only;
# nothing inline, no framing, no referrer, no powerful feature but the clipboard).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
PERMISSIONS_POLICY = ", ".join(
    [
        *(
            f"{feature}=()"
            for feature in (
                "accelerometer",
                "autoplay",
                "camera",
                "display-capture",
                "encrypted-media",
                "fullscreen",
                "geolocation",
                "gyroscope",
                "magnetometer",
                "microphone",
                "midi",
                "payment",
                "picture-in-picture",
                "publickey-credentials-get",
                "screen-wake-lock",
                "serial",
                "usb",
                "xr-spatial-tracking",
            )
        ),
        "clipboard-read=(self)",
        "clipboard-write=(self)",
    ]
)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CSP,
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


async def _security_headers(message: Any, scope: Any) -> None:
    if message["type"] == "http.response.start":
        headers = message.setdefault("headers", [])
        present = {k.lower() for k, _ in headers}
        for name, value in SECURITY_HEADERS.items():
            if name.lower().encode() not in present:
                headers.append((name.lower().encode(), value.encode()))


async def _options_allow(message: Any, scope: Any) -> None:
    """Litestar builds a path's automatic OPTIONS answer before the path's last handler
    is registered, so its Allow header misses methods; list the route's real ones."""
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    template = scope.get("path_template")
    for route in scope["app"].routes:
        if isinstance(route, HTTPRoute) and route.path_format == template:
            allow = ", ".join(sorted(route.methods)).encode()
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
            message["headers"] = [*headers, (b"allow", allow)]
            return


def create_app(appliance: Appliance) -> Litestar:
    # Audit forwarding and hourly anchors, off the request path (one per process;
    # a lease in the database lets only one of them send).
    audit_task = AuditTask(appliance)
    # E-mail delivery and the sweeper that destroys expired sends, off the request path.
    mail_task = MailTask(appliance)
    sweeper = SendSweeper(appliance)
    files_task = FilesTask(appliance)
    watch = install(appliance)
    observer = RequestObserver(watch)
    app = Litestar(
        route_handlers=[
            healthz,
            metrics,
            AuthController,
            UsersController,
            VaultsController,
            FoldersController,
            HistoryController,
            ItemsController,
            FilesController,
            TransfersController,
            PublicTransfersController,
            DepositsController,
            PublicDepositsController,
            MySessionsController,
            RecoveryController,
            SendsController,
            *routers(),
        ],
        dependencies={"appliance": Provide(appliance_dep, sync_to_thread=False)},
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
        template_config=template_config(),
        state=State(
            {
                "appliance": appliance,
                "work_gate": FairGate(appliance.settings.server.concurrent_operations),
                "audit_task": audit_task,
                "mail_task": mail_task,
                "send_sweeper": sweeper,
                "pool_watch": watch,
                "metrics_token": appliance.settings.metrics.token(),
            }
        ),
        request_class=JsonRequest,
        request_max_body_size=appliance.settings.server.max_body_bytes,
        openapi_config=openapi_config(),
        middleware=[observer.middleware],
        before_send=[_security_headers, _options_allow, observer.unmatched],
        on_startup=[audit_task.start, mail_task.start, sweeper.start, files_task.start],
        on_shutdown=[audit_task.stop, mail_task.stop, sweeper.stop, files_task.stop, appliance.close],
        logging_config=None,
        debug=False,
    )
    logging.getLogger("coffre").setLevel(logging.INFO)
    return app
