"""The attacker who can write the database but has no token (docs/security.md,
threat model row "write access to the database"). Each test attacks one claim with
real SQL on the real database and the real SoftHSM token, and checks that the
attack is refused, audited, and changes nothing it should not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import delete, func, insert, select, update

from appliance.models import AuditEntry, Item, LoginTicket, OneTimeToken, Session, User, Vault, VaultMember
from appliance.tokens import TICKET_PREFIX, new_opaque, opaque_hash
from tests.support import PIN, STRONG_PASSWORD, login, new_user


def _integrity_failures(app) -> int:
    with app.db.read() as db:
        return db.execute(select(func.count()).where(AuditEntry.event == "integrity.failed")).scalar_one()


def _pin_failures(app) -> int:
    with app.db.read() as db:
        return db.execute(select(func.count()).where(AuditEntry.event == "login.pin_failed")).scalar_one()


def _user(app, email) -> User:
    with app.db.read() as db:
        return db.execute(select(User).where(User.email == email)).scalar_one()


def _ticket(client, email, password=STRONG_PASSWORD):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def _unlock(client, ticket, pin):
    return client.post("/api/v1/auth/unlock", json={"login_ticket": ticket, "pin": pin})


def _row(db, model, *key):
    obj = db.get(model, key if len(key) > 1 else key[0])
    return {c.name: getattr(obj, c.name) for c in model.__table__.columns}


# -- PIN guessing without the password step ------------------------------------------


def test_a_ticket_row_inserted_without_the_password_step_does_not_unlock(client, app):
    new_user(client, app, "victim@example.com")
    victim = _user(app, "victim@example.com")
    ticket = new_opaque(TICKET_PREFIX)
    with app.db.write() as db:
        db.execute(
            insert(LoginTicket).values(
                token_hash=opaque_hash(ticket), user_id=victim.id, expires_at=app.clock() + 60, mac=None
            )
        )
    before = _pin_failures(app)
    r = _unlock(client, ticket, PIN)  # even the right PIN: the ticket is not ours
    assert r.status_code == 401
    assert _pin_failures(app) == before  # no PIN was tried


def test_a_ticket_mac_copied_from_another_ticket_does_not_unlock(client, app):
    new_user(client, app, "victim@example.com")
    new_user(client, app, "mallory@example.com")
    victim = _user(app, "victim@example.com")
    real = _ticket(client, "mallory@example.com").json()["login_ticket"]
    with app.db.write() as db:  # re-point mallory's genuine ticket (and its MAC) at the victim
        db.execute(update(LoginTicket).where(LoginTicket.token_hash == opaque_hash(real)).values(user_id=victim.id))
    assert _unlock(client, real, PIN).status_code == 401


def test_lowering_the_pin_failure_counts_is_refused(client, app):
    new_user(client, app, "victim@example.com")
    for _ in range(3):
        assert (
            _unlock(client, _ticket(client, "victim@example.com").json()["login_ticket"], "000000").status_code == 401
        )
    with app.db.write() as db:  # the review's attack: a large negative counter
        db.execute(
            update(User)
            .where(User.email == "victim@example.com")
            .values(failed_pin_count=-1_000_000, pin_failures_since_success=-1_000_000)
        )
    before, tried = _integrity_failures(app), _pin_failures(app)
    r = _ticket(client, "victim@example.com")
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"
    assert _integrity_failures(app) == before + 1
    assert _pin_failures(app) == tried


def test_rolling_the_user_row_back_to_before_the_failures_is_refused(client, app):
    """The row is restored whole, with its genuine MAC from before the wrong PINs:
    the users anchor moved at each failure, so that MAC no longer verifies."""
    new_user(client, app, "victim@example.com")
    victim = _user(app, "victim@example.com")
    with app.db.read() as db:
        snapshot = _row(db, User, victim.id)
    for _ in range(4):
        _unlock(client, _ticket(client, "victim@example.com").json()["login_ticket"], "000000")
    with app.db.write() as db:
        db.execute(update(User).where(User.id == victim.id).values(**snapshot))
    r = _ticket(client, "victim@example.com")
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"


def test_a_planted_password_hash_does_not_log_in(client, app):
    """Mallory copies her own password hash onto the victim's row to get tickets."""
    new_user(client, app, "victim@example.com")
    new_user(client, app, "mallory@example.com", password="mallory's own long passphrase 77")
    mallory = _user(app, "mallory@example.com")
    with app.db.write() as db:
        db.execute(
            update(User)
            .where(User.email == "victim@example.com")
            .values(password_hash=mallory.password_hash, password_pepper=mallory.password_pepper)
        )
    r = _ticket(client, "victim@example.com", "mallory's own long passphrase 77")
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"


def test_an_admin_loop_of_unlocks_and_resets_gets_exactly_the_stated_guesses(client, app, clock):
    """max_pin_failures_total (20) is exact: reset + unlock never gives a 21st guess."""
    admin = new_user(client, app, "admin@example.com", admin=True)
    new_user(client, app, "u@example.com")
    user_id = _user(app, "u@example.com").id
    password = STRONG_PASSWORD
    for round_ in range(10):
        clock.advance(app.settings.security.account_window_seconds + 1)  # stay under the password rate limits
        for _ in range(6):
            ticket = _ticket(client, "u@example.com", password)
            if ticket.status_code != 200:
                break
            _unlock(client, ticket.json()["login_ticket"], "000000")
        client.post(f"/api/v1/users/{user_id}/unlock", headers=admin)
        token = client.post(f"/api/v1/users/{user_id}/reset-password", headers=admin).json().get("reset_token")
        if token:
            password = f"another long passphrase number {round_}"
            client.post("/api/v1/auth/password-reset", json={"token": token, "new_password": password})
    assert _pin_failures(app) == app.settings.security.max_pin_failures_total == 20
    clock.advance(app.settings.security.account_window_seconds + 1)
    r = _ticket(client, "u@example.com", password)  # the right PIN is no use now
    assert r.status_code == 423


# -- columns that grant or limit access ----------------------------------------------


def test_a_role_raised_in_the_database_is_refused(client, app):
    admin = new_user(client, app, "admin@example.com")
    reader = new_user(client, app, "reader@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=admin).json()["id"]
    client.post(f"/api/v1/vaults/{vault}/members", json={"email": "reader@example.com", "role": "read"}, headers=admin)
    reader_id = _user(app, "reader@example.com").id
    with app.db.write() as db:
        db.execute(update(VaultMember).where(VaultMember.user_id == reader_id).values(role="admin"))
    before = _integrity_failures(app)
    r = client.post(f"/api/v1/vaults/{vault}/items", json={"title": "t"}, headers=reader)
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"
    assert _integrity_failures(app) == before + 1
    with app.db.read() as db:
        assert db.execute(select(func.count()).select_from(Item)).scalar_one() == 0


def test_a_membership_row_planted_in_the_database_is_refused(client, app):
    admin = new_user(client, app, "admin@example.com")
    mallory = new_user(client, app, "mallory@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=admin).json()["id"]
    admin_id, mallory_id = _user(app, "admin@example.com").id, _user(app, "mallory@example.com").id
    with app.db.write() as db:  # a copy of the admin's row, genuine MACs and all
        row = _row(db, VaultMember, vault, admin_id)
        row["user_id"] = mallory_id
        db.execute(insert(VaultMember).values(**row))
    assert client.get(f"/api/v1/vaults/{vault}/items", headers=mallory).status_code == 500


def test_the_admin_flag_set_in_the_database_is_refused(client, app):
    new_user(client, app, "admin@example.com", admin=True)
    mallory = new_user(client, app, "mallory@example.com")
    with app.db.write() as db:
        db.execute(update(User).where(User.email == "mallory@example.com").values(is_admin=True))
    r = client.get("/api/v1/users", headers=mallory)
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"


def test_disabled_and_locked_flags_cleared_in_the_database_are_refused(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    new_user(client, app, "u@example.com")
    user_id = _user(app, "u@example.com").id
    assert client.post(f"/api/v1/users/{user_id}/disable", headers=admin).status_code == 200
    with app.db.write() as db:
        db.execute(update(User).where(User.id == user_id).values(status="active", locked=False))
    assert _ticket(client, "u@example.com").status_code == 500


def test_a_session_expiry_extended_in_the_database_is_refused(client, app, clock):
    headers = new_user(client, app, "u@example.com")
    with app.db.write() as db:
        db.execute(update(Session).values(expires_at=Session.expires_at + 365 * 86400))
    r = client.get("/api/v1/me", headers=headers)
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"


def test_the_idle_clock_moved_forward_in_the_database_is_refused(client, app, clock):
    headers = new_user(client, app, "u@example.com")
    clock.advance(app.settings.security.session_idle_seconds + 1)
    with app.db.write() as db:  # keep an idle session alive
        db.execute(update(Session).values(last_seen_at=clock.now))
    assert client.get("/api/v1/me", headers=headers).status_code == 500


def test_a_logged_out_session_restored_in_the_database_stays_dead(client, app):
    headers = new_user(client, app, "u@example.com")
    with app.db.read() as db:
        saved = [{c.name: getattr(s, c.name) for c in Session.__table__.columns} for s in db.query(Session)]
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    with app.db.write() as db:  # the row comes back exactly as it was, genuine MAC included
        db.execute(insert(Session), saved)
    r = client.get("/api/v1/me", headers=headers)
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"


def test_a_session_row_written_for_someone_else_is_refused(client, app):
    """A session row needs no private key for admin actions: a writer pointing their
    own session at an administrator must not become that administrator."""
    new_user(client, app, "admin@example.com", admin=True)
    mallory = new_user(client, app, "mallory@example.com")
    admin_id = _user(app, "admin@example.com").id
    with app.db.write() as db:
        db.execute(
            update(Session).where(Session.user_id == _user(app, "mallory@example.com").id).values(user_id=admin_id)
        )
    assert client.get("/api/v1/users", headers=mallory).status_code == 500


# -- rollback of membership and key state ----------------------------------------------


def test_a_removed_member_restored_from_an_older_copy_reads_nothing_new(client, app):
    """The review's rollback: restore the vault's key version, its member rows and its
    item rows from before the removal. The vaults anchor moved at the removal, so the
    restored rows' MACs are stale: refused, and the item written after the removal
    was never wrapped for the removed member anyway."""
    admin = new_user(client, app, "admin@example.com")
    bob = new_user(client, app, "bob@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=admin).json()["id"]
    client.post(f"/api/v1/vaults/{vault}/members", json={"email": "bob@example.com", "role": "read"}, headers=admin)
    client.post(f"/api/v1/vaults/{vault}/items", json={"title": "old", "password": "before"}, headers=admin)
    bob_id = _user(app, "bob@example.com").id
    with app.db.read() as db:  # the attacker's older copy
        old_vault = _row(db, Vault, vault)
        old_members = [
            {c.name: getattr(m, c.name) for c in VaultMember.__table__.columns} for m in db.query(VaultMember)
        ]
        old_items = [{c.name: getattr(i, c.name) for c in Item.__table__.columns} for i in db.query(Item)]
    assert client.delete(f"/api/v1/vaults/{vault}/members/{bob_id}", headers=admin).status_code == 204
    new = client.post(f"/api/v1/vaults/{vault}/items", json={"title": "new", "password": "after"}, headers=admin)
    with app.db.write() as db:
        db.execute(delete(Item).where(Item.vault_id == vault, Item.id != new.json()["id"]))
        db.execute(delete(VaultMember).where(VaultMember.vault_id == vault))
        db.execute(update(Vault).where(Vault.id == vault).values(**old_vault))
        db.execute(insert(VaultMember), old_members)
        db.execute(insert(Item), old_items)
    app.keystore.cache.clear()
    listing = client.get(f"/api/v1/vaults/{vault}/items", headers=bob)
    assert listing.status_code == 500 and listing.json()["error"] == "integrity_failure"
    assert client.get(f"/api/v1/items/{new.json()['id']}", headers=bob).status_code in (404, 500)
    assert "after" not in client.get(f"/api/v1/items/{new.json()['id']}", headers=bob).text


def test_a_role_rolled_back_after_a_demotion_is_refused(client, app):
    admin = new_user(client, app, "admin@example.com")
    bob = new_user(client, app, "bob@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=admin).json()["id"]
    client.post(f"/api/v1/vaults/{vault}/members", json={"email": "bob@example.com", "role": "write"}, headers=admin)
    bob_id = _user(app, "bob@example.com").id
    with app.db.read() as db:
        old = _row(db, VaultMember, vault, bob_id)
    r = client.patch(f"/api/v1/vaults/{vault}/members/{bob_id}", json={"role": "read"}, headers=admin)
    assert r.status_code == 200
    with app.db.write() as db:
        db.execute(update(VaultMember).where(VaultMember.user_id == bob_id).values(**old))
    assert client.post(f"/api/v1/vaults/{vault}/items", json={"title": "t"}, headers=bob).status_code == 500


# -- tickets and reset tokens die with the password ---------------------------------------


def test_a_ticket_issued_before_a_password_change_does_not_unlock(client, app):
    headers = new_user(client, app, "u@example.com")
    pending = _ticket(client, "u@example.com").json()["login_ticket"]
    r = client.post(
        "/api/v1/auth/password",
        json={"current_password": STRONG_PASSWORD, "new_password": "a brand new long passphrase 99"},
        headers=headers,
    )
    assert r.status_code == 204
    assert _unlock(client, pending, PIN).status_code == 401


def test_a_ticket_issued_before_an_admin_reset_does_not_unlock(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    new_user(client, app, "u@example.com")
    pending = _ticket(client, "u@example.com").json()["login_ticket"]
    user_id = _user(app, "u@example.com").id
    assert client.post(f"/api/v1/users/{user_id}/reset-password", headers=admin).status_code == 200
    assert _unlock(client, pending, PIN).status_code == 401


def test_a_pending_reset_token_dies_when_the_user_changes_the_password(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    new_user(client, app, "u@example.com")
    user_id = _user(app, "u@example.com").id
    token = client.post(f"/api/v1/users/{user_id}/reset-password", headers=admin).json()["reset_token"]
    headers = login(client, "u@example.com")  # the reset ended the sessions; log in again
    r = client.post(
        "/api/v1/auth/password",
        json={"current_password": STRONG_PASSWORD, "new_password": "a brand new long passphrase 99"},
        headers=headers,
    )
    assert r.status_code == 204
    r = client.post("/api/v1/auth/password-reset", json={"token": token, "new_password": "mallory sets this one 123"})
    assert r.status_code == 400


def test_a_reset_token_row_inserted_in_the_database_does_not_reset(client, app):
    new_user(client, app, "u@example.com")
    user = _user(app, "u@example.com")
    token = "cfr_" + "A" * 43
    with app.db.write() as db:
        db.execute(
            insert(OneTimeToken).values(
                token_hash=opaque_hash(token), purpose="reset", user_id=user.id, expires_at=app.clock() + 3600
            )
        )
    r = client.post("/api/v1/auth/password-reset", json={"token": token, "new_password": "mallory sets this one 123"})
    assert r.status_code in (400, 500)
    assert _user(app, "u@example.com").password_hash == user.password_hash


def test_concurrent_logouts_in_one_bucket_leave_other_sessions_valid(client, app):
    """Anchors move under a lock: many revocations at once never make a bystander's
    row stale (each change re-MACs its bucket's live rows)."""
    bystander = new_user(client, app, "bystander@example.com")
    sessions = [new_user(client, app, f"u{i}@example.com") for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda h: client.post("/api/v1/auth/logout", headers=h).status_code, sessions))
    assert codes == [204] * 6
    assert client.get("/api/v1/me", headers=bystander).status_code == 200
