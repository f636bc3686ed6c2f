"""/schema is a first-party page that loads nothing; /schema/openapi.json documents every
status each operation answers, the bearer scheme, and closed (additionalProperties:
false) bodies. (tests/api/test_schemathesis.py checks the document against the API.)"""

from __future__ import annotations

import re

import pytest

from web.openapi import ERRORS

VIEWERS = ["/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/rapidoc", "/schema/scalar"]


@pytest.mark.parametrize("path", ["/schema", "/schema/"])
def test_the_schema_page_loads_nothing_from_anywhere(sqlite_client, path):
    r = sqlite_client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    for banned in ("<script", "<link", "<style", "<img", "<iframe", "src=", "http:", "https:", "//", "@import"):
        assert banned not in page.lower(), banned
    assert 'href="/schema/openapi.json"' in page
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp


@pytest.mark.parametrize("path", [*VIEWERS, "/schema/openapi.yaml"])
def test_no_cdn_viewer_is_served(sqlite_client, path):
    r = sqlite_client.get(path)
    assert r.status_code == 404
    assert "cdn" not in r.text.lower() and "http" not in r.text.lower()


@pytest.fixture
def doc(sqlite_client):
    r = sqlite_client.get("/schema/openapi.json")
    assert r.status_code == 200
    assert not re.search(r"https?://", r.text)
    return r.json()


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                yield path, method, op


def test_every_operation_documents_its_errors_and_security(doc):
    ops = list(_operations(doc))
    assert {op["operationId"] for _, _, op in ops} == set(ERRORS)
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, method, op in ops:
        auth, extra = ERRORS[op["operationId"]]
        codes = {int(c) for c in op["responses"]}
        errors = {c for c in codes if c >= 400}
        assert {500, 503} <= errors, op["operationId"]
        assert set(extra) <= errors
        assert (401 in errors) == (auth or 401 in extra), op["operationId"]
        if "requestBody" in op:
            assert {400, 413} <= errors, op["operationId"]
        assert op["security"] == ([{"bearer": []}] if auth else []), op["operationId"]
        for code in errors:
            body = op["responses"][str(code)]
            assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            assert body["description"]
        if 401 in errors and auth:
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
    assert sum(1 for _, _, op in ops if op["security"]) >= 20
    unauthenticated = {op["operationId"] for _, _, op in ops if not op["security"]}
    public = {"unlockTransfer", "downloadTransferFile", "uploadDeposit", "revealSend"}  # links for outsiders
    assert unauthenticated == {"health", "enroll", "login", "unlock", "completePasswordReset"} | public


def test_error_body_and_closed_bodies(doc):
    schemas = doc["components"]["schemas"]
    error = schemas["Error"]
    assert error["required"] == ["status_code", "error", "detail"]
    assert error["additionalProperties"] is False
    for name, schema in schemas.items():
        assert schema.get("additionalProperties") is False, name
    patch = schemas["ItemPatchIn"]
    assert patch["required"] == ["version"]
    assert set(patch["properties"]) == {"version", "title", "username", "password", "url", "notes", "totp", "folder_id"}
    assert schemas["MemberIn"]["properties"]["role"]["enum"] == ["read", "write", "admin"]
    assert set(schemas["MemberOut"]["properties"]) == {"user_id", "email", "role"}


def test_an_unknown_field_is_refused_as_documented(sqlite_client, sqlite_app):
    # additionalProperties: false is a promise: an unknown field is a 400, not silently dropped.
    r = sqlite_client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "x", "remember": True})
    assert r.status_code == 400 and "remember" in r.text


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/v1/vaults", "GET, OPTIONS, POST"),
        ("/api/v1/vaults/" + "0" * 32, "DELETE, GET, OPTIONS, PATCH"),
        ("/api/v1/vaults/" + "0" * 32 + "/members/" + "1" * 32, "DELETE, OPTIONS, PATCH"),
        ("/api/v1/items/" + "0" * 32, "DELETE, GET, OPTIONS, PATCH, PUT"),
    ],
)
def test_options_lists_every_method_of_the_path(sqlite_client, path, methods):
    r = sqlite_client.options(path)
    assert r.status_code == 204
    assert r.headers["allow"] == methods
    r = sqlite_client.request("TRACE", path)
    assert r.status_code == 405
    assert sorted(m.strip() for m in r.headers["allow"].split(",")) == methods.split(", ")
