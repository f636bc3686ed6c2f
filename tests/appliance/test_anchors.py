"""Anchors in the token: a counter that moved without its commit (a rolled-back
transaction, or a crash) never leaves live rows failing by accident, and an
operator can tell and repair what a crash left."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from appliance.integrity import USER, Domain, bucket_of
from appliance.models import User
from hsm import state
from tests.support import login, new_user


def _alice(app) -> User:
    with app.db.read() as db:
        return db.execute(select(User).where(User.email == "alice@example.com")).scalar_one()


def test_a_rolled_back_change_re_anchors_its_bucket(client, app):
    new_user(client, app, "alice@example.com")
    alice = _alice(app)
    with pytest.raises(RuntimeError), app.keystore.work() as work, app.db.write() as db:
        with app.integrity.changing(db, work, Domain.USERS, alice.id):
            db.get(User, alice.id).is_admin = True
        raise RuntimeError("the commit never happens")  # the counter moved in the token
    with app.keystore.work() as work:
        assert app.integrity.valid(work, USER, _alice(app))  # re-MACed under the new counter
    assert not _alice(app).is_admin
    login(client, "alice@example.com")


def test_a_crash_after_the_counter_moved_fails_closed_until_an_operator_repairs(client, app):
    new_user(client, app, "alice@example.com")
    alice = _alice(app)
    with app.keystore.work() as work:  # what a kill -9 between the token write and the commit leaves
        name = app.integrity.table_name(Domain.USERS)
        counters = state.read_counters(work, name, 1024)
        counters[bucket_of(alice.id)] += 1
        state.write_counters(work, name, counters)
    r = client.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": "x" * 20})
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"
    assert app.integrity.scan() == {"users": [alice.id]}
    assert app.integrity.repair_all("test") >= 1
    assert app.integrity.scan() == {}
    login(client, "alice@example.com")


def test_counters_never_move_backwards(app):
    from hsm.errors import OperationFailed

    with app.keystore.work() as work:
        name = app.integrity.table_name(Domain.SESSIONS)
        counters = state.read_counters(work, name, 1024)
        counters[0] += 1
        state.write_counters(work, name, counters)
        counters[0] -= 1
        with pytest.raises(OperationFailed):
            state.write_counters(work, name, counters)


def test_one_counter_reads_as_the_table_does(app):
    with app.keystore.work() as work:
        name = app.integrity.table_name(Domain.VAULTS)
        counters = state.read_counters(work, name, 1024)
        counters[7] += 3
        state.write_counters(work, name, counters)
        assert state.read_counter(work, name, 1024, 7) == counters[7]
        assert state.read_counter(work, name, 1024, 8) == counters[8]
        with pytest.raises(ValueError):
            state.read_counter(work, name, 1024, 1024)
