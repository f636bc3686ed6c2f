"""`GET /api/v1/me/sessions` and `DELETE /api/v1/me/sessions/{id}`: one's own sessions only."""

from __future__ import annotations

from tests.support import login, new_user


def test_list_and_revoke_own_sessions(client, app):
    first = new_user(client, app, "me@example.com")
    second = login(client, "me@example.com")
    r = client.get("/api/v1/me/sessions", headers=first)
    assert r.status_code == 200
    sessions = r.json()
    assert len(sessions) == 2
    assert [s["current"] for s in sessions].count(True) == 1
    assert set(sessions[0]) == {"id", "created_at", "last_seen_at", "expires_at", "client_addr", "current"}
    other = next(s for s in sessions if not s["current"])

    assert client.delete(f"/api/v1/me/sessions/{other['id']}", headers=first).status_code == 204
    assert client.get("/api/v1/me", headers=second).status_code == 401
    assert client.get("/api/v1/me", headers=first).status_code == 200
    assert len(client.get("/api/v1/me/sessions", headers=first).json()) == 1


def test_another_users_session_is_not_found(client, app):
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    bobs = client.get("/api/v1/me/sessions", headers=bob).json()[0]["id"]
    assert client.delete(f"/api/v1/me/sessions/{bobs}", headers=alice).status_code == 404
    assert client.delete("/api/v1/me/sessions/not-an-id", headers=alice).status_code == 404
    assert client.get("/api/v1/me", headers=bob).status_code == 200
    assert client.get("/api/v1/me/sessions").status_code == 401


def test_revoking_is_audited(client, app):
    headers = new_user(client, app, "audit@example.com")
    own = client.get("/api/v1/me/sessions", headers=headers).json()[0]["id"]
    assert client.delete(f"/api/v1/me/sessions/{own}", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    from sqlalchemy import select

    from appliance.models import AuditEntry

    with app.db.read() as db:
        events = [e for (e,) in db.execute(select(AuditEntry.event))]
    assert "session.revoked" in events


def test_openapi_lists_the_api_not_the_pages(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert "/api/v1/me/sessions" in paths and "/api/v1/me/sessions/{session_id}" in paths
    assert all(p.startswith(("/api/", "/healthz")) for p in paths), sorted(paths)
