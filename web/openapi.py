"""The OpenAPI document at /schema/openapi.json, and the small page at /schema.

Litestar documents each operation's success and a generic 400. This module adds
what the API really answers: every error status each operation returns (with the
one error body, ``{status_code, error, detail}``), the bearer scheme and which
operations need it, and ``additionalProperties: false`` on every body, since
unknown fields are refused (400) and responses carry no others. The page at
/schema loads nothing: no script, no style sheet, no external URL (the
provisioned CSP allows none, and an appliance must work offline).
"""

from __future__ import annotations

import copy
import html
from typing import Any

from litestar import Request
from litestar.enums import MediaType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin

# Every operation, with the error statuses it can answer besides 500 and 503
# (which any operation can: an internal or integrity failure, an unavailable HSM
# or database). Authenticated operations also answer 401; operations with a JSON
# body also answer 400 and 413. A test checks this table names every operation.
ERRORS: dict[str, tuple[bool, tuple[int, ...]]] = {
    # operation id: (needs a session token, statuses beyond 400/401/413/500/503)
    # (raw-body and query-parameter operations list their own 400: a missing or bad parameter)
    "health": (False, ()),
    "enroll": (False, (422,)),
    "login": (False, (401, 423, 429)),
    "unlock": (False, (401, 422, 423, 429)),
    "logout": (True, ()),
    "changePassword": (True, (403, 422, 429)),
    "completePasswordReset": (False, (409, 422, 429)),
    "changePin": (True, (401, 422, 423)),
    "me": (True, ()),
    "listMySessions": (True, ()),
    "revokeMySession": (True, (404,)),
    "ping": (True, ()),
    "inviteUser": (True, (403, 409, 422)),
    "listUsers": (True, (403,)),
    "unlockUser": (True, (403, 404, 409)),
    "disableUser": (True, (403, 404, 409)),
    "enableUser": (True, (403, 404, 409)),
    "resetUserPassword": (True, (403, 404, 409)),
    "rotateUserKey": (True, (403, 404)),
    "deleteUser": (True, (403, 404, 409, 422)),
    "recoveryStatus": (True, ()),
    "pickUpRecoveryShare": (True, (403, 409, 410)),
    "createRecoveryRequest": (True, (403, 404, 409, 422)),
    "listRecoveryRequests": (True, (403, 409)),
    "submitRecoveryShare": (True, (403, 404, 409, 422)),
    "createFolder": (True, (403, 404, 422)),
    "listFolders": (True, (404,)),
    "updateFolder": (True, (403, 404, 409, 422)),
    "deleteFolder": (True, (403, 404, 409)),
    "listFolderAccess": (True, (403, 404)),
    "setFolderAccess": (True, (403, 404, 409, 422)),
    "clearFolderAccess": (True, (403, 404, 409)),
    "listItemVersions": (True, (404, 409)),
    "getItemVersion": (True, (404, 409, 422)),
    "restoreItemVersion": (True, (403, 404, 409, 422)),
    "getItemTotp": (True, (404, 409)),
    "generatePassword": (True, (422,)),
    "createVault": (True, (422,)),
    "listVaults": (True, ()),
    "getVault": (True, (404,)),
    "renameVault": (True, (403, 404, 422)),
    "deleteVault": (True, (403, 404)),
    "rotateVaultKey": (True, (403, 404, 409)),
    "listMembers": (True, (404,)),
    "addMember": (True, (403, 404, 409, 422)),
    "changeMemberRole": (True, (403, 404, 409, 422)),
    "removeMember": (True, (403, 404, 409)),
    "createItem": (True, (403, 404, 409, 422)),
    "listItems": (True, (404,)),
    "getItem": (True, (404, 409)),
    "updateItem": (True, (403, 404, 409, 422)),
    "patchItem": (True, (403, 404, 409, 422)),
    "deleteItem": (True, (403, 404)),
    "createSend": (True, (403, 404, 409, 422, 429)),
    "listSends": (True, ()),
    "revokeSend": (True, (404, 409)),
    "listReceived": (True, ()),
    "saveReceived": (True, (403, 404, 409, 422)),
    "discardReceived": (True, (404,)),
    "revealSend": (False, (403, 404, 429)),
    "uploadFile": (True, (400, 403, 404, 409, 413, 422)),
    "replaceFileContent": (True, (400, 403, 404, 409, 413, 422)),
    "listFiles": (True, (404,)),
    "getFile": (True, (404, 409)),
    "downloadFile": (True, (400, 404, 409, 416)),
    "deleteFile": (True, (403, 404)),
    "createTransfer": (True, (422,)),
    "uploadTransferFile": (True, (400, 404, 409, 413, 422)),
    "addTransferFileFromVault": (True, (403, 404, 409, 413, 422)),
    "sendTransfer": (True, (404, 409)),
    "listTransfers": (True, ()),
    "revokeTransfer": (True, (404,)),
    "unlockTransfer": (False, (404,)),
    "downloadTransferFile": (False, (400, 404)),
    "createDeposit": (True, (403, 404, 422)),
    "listDeposits": (True, ()),
    "closeDeposit": (True, (404,)),
    "uploadDeposit": (False, (400, 404, 413, 422)),
}

DESCRIPTIONS = {
    400: "bad_request: the body is not strict JSON, has a wrong type, misses a field or names an unknown one; "
    "for enroll and password-reset also an unknown, used or expired token",
    401: "unauthorized: no, a malformed, an expired or a logged-out session token (WWW-Authenticate: Bearer); "
    "for login and unlock, a wrong password, PIN or ticket",
    403: "forbidden: the caller's vault role is too low, the operation is for administrators, "
    "or the current password is wrong; for a send's reveal, a wrong one-time code",
    404: "not_found: no such resource, or the caller is not a member (existence stays hidden); "
    "a send that is unknown, expired, used up, revoked or destroyed (all alike); for a public transfer "
    "or deposit link, every refusal (unknown, wrong password, locked, expired, used up, revoked)",
    409: "conflict: a stale item version, an existing user or member, the last vault administrator, "
    "or a key rotated meanwhile",
    410: "gone: a recovery share already picked up (it is given once)",
    413: "payload_too_large: the body is over [server] max_body_bytes; a file over [files] max_file_bytes "
    "or a quota ([files] user_quota_bytes, vault_quota_bytes)",
    416: "range_not_satisfiable: the Range starts past the end of the file (Content-Range: bytes */size)",
    422: "validation_failed: a value the API refuses (weak password, PIN not 6 digits, e-mail, name, length)",
    423: "locked: too many wrong PINs; an administrator unlocks the account",
    429: "rate_limited: too many attempts (Retry-After)",
    500: "internal_error, hsm_error, or integrity_failure (stored data failed its check; the event is audited)",
    503: "hsm_unavailable, database_unavailable or unavailable: try again shortly (Retry-After)",
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "description": "Every error answer.",
    "required": ["status_code", "error", "detail"],
    "properties": {
        "status_code": {"type": "integer", "description": "the HTTP status again"},
        "error": {"type": "string", "description": "a stable code, e.g. not_found, conflict, integrity_failure"},
        "detail": {"type": "string", "description": "what went wrong, for people"},
        "extra": {"type": "array", "items": {"type": "object"}, "description": "400 only: the fields at fault"},
    },
    "additionalProperties": False,
}

BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "the `cfs_...` session token from POST /api/v1/auth/unlock",
}

HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="coffre"'}},
    429: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait"}},
    503: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait"}},
}

METHODS = ("get", "put", "post", "patch", "delete")
# Request strings are refused (400) when they hold a NUL character.
NO_NUL = "^[^\\u0000]*$"


def statuses(operation_id: str, has_body: bool) -> list[int]:
    auth, extra = ERRORS[operation_id]
    found = {500, 503, *extra}
    if auth:
        found.add(401)
    if has_body:
        found |= {400, 413}
    return sorted(found)


def _request_schemas(doc: dict[str, Any]) -> set[str]:
    names = set()
    for path_item in doc.get("paths", {}).values():
        for method in METHODS:
            body = path_item.get(method, {}).get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"].get("$ref", "")
                names.add(ref.rsplit("/", 1)[-1])
    return names


BINARY = {"type": "string", "format": "binary"}
# Operations whose body is the file's raw bytes, and those that answer bytes (status: media types).
RAW_BODIES = {"uploadFile", "replaceFileContent", "uploadTransferFile", "uploadDeposit"}
BINARY_ANSWERS: dict[str, dict[str, tuple[str, ...]]] = {
    "downloadFile": {"200": ("application/octet-stream",), "206": ("application/octet-stream",)},
    "downloadTransferFile": {"200": ("application/octet-stream", "application/zip")},
}


def _binary(op_id: str, operation: dict[str, Any]) -> None:
    if op_id in RAW_BODIES:
        operation["requestBody"] = {
            "required": False,
            "description": "the file's bytes, streamed",
            "content": {"application/octet-stream": {"schema": BINARY}},
        }
    for code, types in BINARY_ANSWERS.get(op_id, {}).items():
        operation.setdefault("responses", {})[code] = {
            "description": "the file's bytes" if code == "200" else "the requested byte range",
            "content": {t: {"schema": BINARY} for t in types},
        }


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Litestar's document with the error answers, security and closed bodies added."""
    doc = copy.deepcopy(document)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for schema in schemas.values():
        if schema.get("type") == "object":
            schema["additionalProperties"] = False
    for name in _request_schemas(doc):
        for prop in schemas[name].get("properties", {}).values():
            for variant in [prop, *prop.get("oneOf", [])]:
                if variant.get("type") == "string":
                    variant["pattern"] = NO_NUL
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {"bearer": BEARER}
    for path_item in doc.get("paths", {}).values():
        for method in METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            op_id = operation["operationId"]
            _binary(op_id, operation)
            auth, _ = ERRORS[op_id]
            operation["security"] = [{"bearer": []}] if auth else []
            responses = operation.setdefault("responses", {})
            for code in [c for c in responses if c.startswith(("4", "5"))]:
                del responses[code]
            for code in statuses(op_id, "requestBody" in operation):
                response: dict[str, Any] = {
                    "description": DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
                if code in HEADERS:
                    response["headers"] = HEADERS[code]
                responses[str(code)] = response
    return doc


class SpecPlugin(JsonRenderPlugin):
    """/schema/openapi.json: the completed document, computed once."""

    def __init__(self) -> None:
        super().__init__(path="/openapi.json")
        self._done: dict[str, Any] | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._done is None:
            self._done = complete(openapi_schema)
        return self.render_json(request, self._done)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}: API description</title>
</head>
<body>
<h1>{title} API</h1>
<p>The API is described by an OpenAPI 3.1 document at
<a href="{spec}">{spec}</a>. This appliance serves no viewer for it: it loads
nothing from other sites.</p>
<p>To read it, fetch it and open it in an OpenAPI viewer or editor you run yourself,
or read it with jq (with <code>C</code> set to this appliance's address, as in the README):</p>
<pre>curl -s $C{spec} -o openapi.json
jq '.paths | keys' openapi.json</pre>
<p>Every request and answer is JSON; authenticated operations take
<code>Authorization: Bearer cfs_...</code>, the session token from
<code>POST /api/v1/auth/unlock</code>; every error is
<code>{{"status_code", "error", "detail"}}</code>.</p>
</body>
</html>
"""


class PagePlugin(OpenAPIRenderPlugin):
    """/schema: a first-party page that says where the document is and how to read it."""

    def __init__(self) -> None:
        super().__init__(path="/", media_type=MediaType.HTML)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema.get("info", {}).get("title", "API")))
        spec = html.escape(self.get_openapi_json_route(request))
        return PAGE.format(title=title, spec=spec).encode("utf-8")


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Coffre",
        version="1.0.0",
        path="/schema",
        render_plugins=[PagePlugin(), SpecPlugin()],
    )
