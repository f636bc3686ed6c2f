"""Dependencies shared by the controllers: the appliance, the caller, the address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.utils.scope.state import ScopeState

from appliance.core import Appliance
from appliance.errors import ServiceUnavailable, Unauthorized
from appliance.sessions import Principal
from web.gate import FairGate
from web.observability import set_user

T = TypeVar("T")


def appliance(state: State) -> Appliance:
    app: Appliance = state.appliance
    return app


UNIX_PEER = "unix"


def over_unix_socket(scope: Any) -> bool:
    """The request came in over a Unix socket: uvicorn gives it no client address
    and a server address with no port (the socket's path)."""
    server = scope.get("server")
    return scope.get("client") is None and isinstance(server, tuple | list) and len(server) == 2 and server[1] is None


def client_addr(request: Request[Any, Any, State]) -> str | None:
    """The client's address.

    X-Forwarded-For is believed only from a trusted proxy: "unix" in
    ``[server] trusted_proxies`` trusts requests that came in over the Unix socket
    (which only the local Apache can open), an IP address trusts that TCP peer.
    By default nothing is trusted, so a local process talking to a loopback port
    is seen as itself whatever header it sends. A Unix-socket peer whose header is
    not believed is "unix".
    """
    app: Appliance = request.app.state.appliance
    trusted = set(app.settings.server.trusted_proxies)
    if over_unix_socket(request.scope):
        peer: str | None = UNIX_PEER
        believe = UNIX_PEER in trusted
    else:
        peer = request.client.host if request.client else None
        believe = peer is not None and peer != UNIX_PEER and peer in trusted
    forwarded = request.headers.get("x-forwarded-for")
    if believe and forwarded:
        for hop in reversed([h.strip() for h in forwarded.split(",")]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break
            if hop not in trusted:
                return hop
    return peer


def principal(request: Request[Any, Any, State]) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("send the session token as `Authorization: Bearer <token>`")
    app: Appliance = request.app.state.appliance
    found = app.sessions.authenticate(value, client_addr(request))
    set_user(found.user_id)
    return found


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def strict_body(request: Request[Any, Any, State], model: type[T]) -> T:
    """Decode the JSON body again in strict mode.

    Litestar converts bodies leniently (the string "1" becomes the integer 1, "true"
    a boolean); fields that are not strings are checked again here so a wrong type
    is a 400, not a guess.
    """
    raw = ScopeState.from_scope(request.scope).body
    if not isinstance(raw, bytes):
        raise ValidationException("the request body could not be read again")
    try:
        return msgspec.json.decode(raw, type=model, strict=True)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValidationException(f"Validation failed: {exc}") from None


@contextmanager
def serialized(request: Request[Any, Any, State]) -> Iterator[None]:
    """Run a request's appliance work through the process's work gate.

    The hot path is many short calls that each release the GIL for a few
    microseconds (SQLite, PKCS#11); with several threads doing that at once they
    convoy on the GIL and throughput halves (docs/performance.md). One request at a
    time per process is faster; `coffre serve --workers N` scales across cores.
    Slow calls that spend their time outside Python (Argon2id, RSA key generation:
    login, unlock, enrollment, password changes) do not take the gate.
    """
    gate: FairGate = request.app.state.work_gate
    if not gate.acquire(timeout=30):
        raise ServiceUnavailable("the server is overloaded; try again shortly")
    try:
        yield
    finally:
        gate.release()
