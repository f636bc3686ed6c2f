"""The admin console: users, the audit log, key jobs, system status.

The domain refuses non-administrators (Forbidden); the console answers them 404
so it does not show that it exists."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from appliance import admin_status, audit_view
from appliance.errors import ClientError, Forbidden, NotFound
from web.deps import over_unix_socket, serialized
from web.ui.forms import Form, checked, text
from web.ui.i18n import N_, t
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller, cookie, expired

LINK_COOKIE = "__Host-coffre_link"

ACTIONS = ("unlock", "disable", "enable", "reset")
# The names `coffre status` gives its lines, in the reader's language.
STATUS_KEYS = {
    "config": N_("Configuration"),
    "HSM module": N_("HSM module"),
    "token label": N_("Token label"),
    "token": N_("Token"),
    "HSM": N_("HSM"),
    "database": N_("Database"),
    "schema": N_("Schema"),
    "counts": N_("Counts"),
    "root kek": N_("Root key: KEK"),
    "root pepper": N_("Root key: pepper"),
    "root audit": N_("Root key: audit"),
    "root bind": N_("Root key: binding"),
    "root ukw": N_("Root key: user-key wrapping"),
    "unwrap templates": N_("Unwrap templates"),
}
_COUNTS = re.compile(
    r"^users (?P<users>\d+), vaults (?P<vaults>\d+), memberships (?P<memberships>\d+), items (?P<items>\d+), "
    r"sessions (?P<sessions>\d+), audit entries (?P<entries>\d+)$"
)
_PROTECTS = re.compile(r"protects (?P<n>\d+) sealed blobs")
_REFERENCES = re.compile(r"(?P<n>\d+) references")
_STATUS_LINE = re.compile(r"^(?:(?P<a>[^:]+?):|(?P<b>root \S+))\s+(?P<value>.*)$")


def _status_pairs(request: Request[Any, Any, Any], lines: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for line in lines:
        match = _STATUS_LINE.match(line)
        if match is None:
            pairs.append(("", line))
            continue
        key = match.group("a") or match.group("b") or ""
        pairs.append(
            (t(request, STATUS_KEYS[key]) if key in STATUS_KEYS else key, _status_value(request, match.group("value")))
        )
    return pairs


def _status_value(request: Request[Any, Any, Any], value: str) -> str:
    counts = _COUNTS.match(value)
    if counts:
        return t(
            request,
            "users %(users)s, vaults %(vaults)s, memberships %(memberships)s, items %(items)s, "
            "sessions %(sessions)s, audit entries %(entries)s",
            **counts.groupdict(),
        )
    value = value.replace("(current)", t(request, "(current)"))
    value = value.replace("(old)", t(request, "(old)")).replace("(retired)", t(request, "(retired)"))
    value = _REFERENCES.sub(lambda m: t(request, "%(n)s references", n=m.group("n")), value)
    return _PROTECTS.sub(lambda m: t(request, "protects %(n)s sealed blobs", n=m.group("n")), value)


@contextmanager
def console(request: Request[Any, Any, Any]) -> Iterator[None]:
    try:
        with serialized(request):
            yield
    except Forbidden:
        raise NotFound("no such page") from None


def _link(request: Request[Any, Any, Any], path: str, token: str) -> str:
    """A one-time link: the token in the fragment, which never reaches a server log or a
    Referer. Behind Apache (requests over the Unix socket) the public URL is https: a
    plain-http link would let a network attacker answer the invitee's first request."""
    scheme = "https" if over_unix_socket(request.scope) else request.base_url.scheme
    return f"{scheme}://{request.base_url.netloc}{path}#token={token}"


def _show_once(kind: str, email: str, token: str) -> Redirect:
    """Post/redirect/get without a second invitation on reload: the next page shows the
    link from a short-lived `__Host-` cookie and clears it, so it is shown once."""
    value = json.dumps([kind, email, token], separators=(",", ":"))
    return see_other("/admin/users", cookies=[cookie(LINK_COOKIE, quote(value), max_age=120)])


def _take_link(request: Request[Any, Any, Any]) -> dict[str, str]:
    raw = request.cookies.get(LINK_COOKIE)
    if not raw:
        return {}
    try:
        kind, email, token = json.loads(unquote(raw))
    except ValueError:
        return {}
    if kind not in ("enroll", "reset") or not isinstance(token, str) or not isinstance(email, str):
        return {}
    return {"link": _link(request, f"/{kind}", token), "link_for": email, "link_kind": kind}


class AdminPages(Controller):
    path = "/admin"
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def index(self) -> Redirect:
        return Redirect("/admin/users", status_code=303)

    def _users(self, request: Request[Any, Any, Any], status: int = 200, **extra: Any) -> Template:
        with console(request):
            users = appliance_of(request).accounts.list_users(caller(request))
        shown = _take_link(request)
        cookies = [expired(LINK_COOKIE)] if shown else []
        return page(request, "admin_users.html", status=status, users=users, cookies=cookies, **shown, **extra)

    @get("/users", sync_to_thread=True)
    def users(self, request: Request[Any, Any, Any]) -> Template:
        return self._users(request)

    @post("/users", status_code=200, sync_to_thread=True)
    def invite(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        email = text(data, "email", 320)
        try:
            with console(request):
                principal = caller(request)
                user, token = appliance_of(request).accounts.invite(
                    email, checked(data, "is_admin"), principal, principal.client_addr
                )
        except ClientError as exc:
            return self._users(request, exc.status, error=explain(request, exc), email=email)
        return _show_once("enroll", user.email, token)

    @get("/users/{user_id:str}/delete", sync_to_thread=True)
    def confirm_delete(self, request: Request[Any, Any, Any], user_id: FromPath[str]) -> Template:
        return self._delete_page(request, user_id)

    def _delete_page(self, request: Request[Any, Any, Any], user_id: str, status: int = 200, **extra: Any) -> Template:
        with console(request):
            users = appliance_of(request).accounts.list_users(caller(request))
        target = next((u for u in users if u.id == user_id), None)
        if target is None:
            raise NotFound("no such user")
        return page(request, "user_delete.html", status=status, target=target, **extra)

    @post("/users/{user_id:str}/delete", status_code=200, sync_to_thread=True)
    def delete(self, request: Request[Any, Any, Any], user_id: FromPath[str], data: Form) -> Response[Any]:
        transfer = text(data, "transfer_to", 320).strip() or None
        try:
            with console(request):
                principal = caller(request)
                appliance_of(request).offboarding.delete_user(principal, user_id, transfer, principal.client_addr)
        except ClientError as exc:
            if isinstance(exc, NotFound) and exc.message == "no such user":
                raise
            return self._delete_page(request, user_id, exc.status, error=explain(request, exc), transfer=transfer)
        return see_other("/admin/users", "user_delete")

    @post("/users/{user_id:str}/{action:str}", status_code=200, sync_to_thread=True)
    def act(self, request: Request[Any, Any, Any], user_id: FromPath[str], action: FromPath[str]) -> Response[Any]:
        if action not in ACTIONS:
            raise NotFound("no such page")
        accounts = appliance_of(request).accounts
        try:
            with console(request):
                principal = caller(request)
                addr = principal.client_addr
                if action == "reset":
                    token = accounts.reset_password(principal, user_id, addr)
                    users = {u.id: u.email for u in accounts.list_users(principal)}
                elif action == "unlock":
                    accounts.admin_unlock(principal, user_id, addr)
                elif action == "disable":
                    accounts.disable(principal, user_id, addr)
                else:
                    accounts.enable(principal, user_id, addr)
        except ClientError as exc:
            if isinstance(exc, NotFound):
                raise
            return self._users(request, exc.status, error=explain(request, exc))
        if action == "reset":
            return _show_once("reset", users.get(user_id, ""), token)
        return see_other("/admin/users", f"user_{action}")

    @get("/audit", sync_to_thread=True)
    def audit(self, request: Request[Any, Any, Any]) -> Template:
        q = request.query_params
        filters = audit_view.AuditFilters(
            event=(q.get("event") or "")[:64],
            actor=(q.get("actor") or "")[:320],
            since=(q.get("since") or "")[:10],
            until=(q.get("until") or "")[:10],
        )
        try:
            number = int(q.get("page") or "1")
        except ValueError:
            number = 1
        app = appliance_of(request)
        error = None
        verified = None
        with console(request):
            principal = caller(request)
            try:
                result = audit_view.page(app, principal, filters, number)
            except ClientError as exc:
                if isinstance(exc, Forbidden):
                    raise
                error = explain(request, exc)
                result = audit_view.page(app, principal, audit_view.AuditFilters(), 1)
            if q.get("verify"):
                verified = audit_view.verify_chain(app, principal, (q.get("head") or "").strip()[:64] or None)
        return page(request, "admin_audit.html", result=result, filters=filters, verified=verified, error=error)

    @get("/keys", sync_to_thread=True)
    def keys(self, request: Request[Any, Any, Any]) -> Template:
        from appliance.keyops.console import key_screen

        with console(request):
            screen = key_screen(appliance_of(request), caller(request))
        return page(request, "admin_keys.html", screen=screen)

    @get("/status", sync_to_thread=True)
    def status(self, request: Request[Any, Any, Any]) -> Template:
        with console(request):
            lines = admin_status.status_lines(appliance_of(request), caller(request))
        return page(request, "admin_status.html", lines=_status_pairs(request, lines))
