"""The web UI review's findings, each with the test that would have caught it."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update

from appliance.audit_view import verify_chain
from appliance.item_secrets import reveal
from appliance.models import AuditEntry, AuditHead, User, VaultMember
from tests.support import new_user
from web.ui.session import CSRF_COOKIE, SESSION_COOKIE, csrf_for_session

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Content-Type": "application/x-www-form-urlencoded"}


def _token(headers):
    return headers["Authorization"].split()[1]


def test_a_csrf_cookie_planted_by_another_port_does_not_pass_for_the_session(client, app):
    """Browsers share cookies across ports: a planted double-submit cookie must not do."""
    admin = new_user(client, app, "admin@example.com")
    session = _token(admin)
    planted = "A" * 43
    cookies = f"{SESSION_COOKIE}={session}; {CSRF_COOKIE}={planted}"
    r = client.post("/vaults/", content=f"name=planted&_csrf={planted}", headers={**SAME_ORIGIN, "Cookie": cookies})
    assert r.status_code == 403
    assert client.get("/api/v1/vaults", headers=admin).json() == []
    good = csrf_for_session(session)
    r = client.post(
        "/vaults/",
        content=f"name=mine&_csrf={good}",
        headers={**SAME_ORIGIN, "Cookie": f"{SESSION_COOKIE}={session}"},
        follow_redirects=False,
    )
    assert r.status_code in (200, 303), r.text[:200]
    assert [v["name"] for v in client.get("/api/v1/vaults", headers=admin).json()] == ["mine"]


def test_the_lock_page_changes_nothing(client, app):
    admin = new_user(client, app, "admin@example.com")
    r = client.get("/locked", headers={"Cookie": f"{SESSION_COOKIE}={_token(admin)}"})
    assert r.status_code == 200
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert client.get("/api/v1/me", headers=admin).status_code == 200


def test_the_console_verify_checks_the_head_like_the_cli(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    principal = app.sessions.authenticate(_token(admin), None)
    assert verify_chain(app, principal).ok
    with app.db.write() as db:
        db.execute(delete(AuditHead))
    result = verify_chain(app, principal)
    assert not result.ok and "head row is missing" in (result.reason or "")


def test_an_integrity_failure_met_by_reveal_is_audited(client, app):
    admin = new_user(client, app, "admin@example.com")
    reader = new_user(client, app, "reader@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=admin).json()["id"]
    client.post(f"/api/v1/vaults/{vault}/members", json={"email": "reader@example.com", "role": "read"}, headers=admin)
    item = client.post(f"/api/v1/vaults/{vault}/items", json={"title": "t", "password": "p"}, headers=admin)
    with app.db.read() as db:
        reader_id = db.execute(select(User.id).where(User.email == "reader@example.com")).scalar_one()
    with app.db.write() as db:  # a forged role
        db.execute(update(VaultMember).where(VaultMember.user_id == reader_id).values(role="admin"))

    def failures() -> int:
        with app.db.read() as db:
            return db.execute(select(func.count()).where(AuditEntry.event == "integrity.failed")).scalar_one()

    before = failures()
    principal = app.sessions.authenticate(_token(reader), None)
    try:
        reveal(app, principal, item.json()["id"], "reveal")
    except Exception as exc:
        assert type(exc).__name__ == "BrokenRow"
    else:
        raise AssertionError("a forged membership revealed a password")
    assert failures() == before + 1


def test_one_time_links_are_https_behind_apache():
    from litestar import Request

    from web.ui.admin import _link

    scope = {
        "type": "http",
        "scheme": "http",
        "server": ("/run/coffre/coffre.sock", None),
        "client": None,
        "path": "/admin/users",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"coffre.example")],
        "method": "POST",
    }
    link = _link(Request(scope), "/enroll", "cfe_x")  # type: ignore[arg-type]
    assert link == "https://coffre.example/enroll#token=cfe_x"
