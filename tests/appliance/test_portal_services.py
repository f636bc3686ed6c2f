"""The services the web portal adds: reveal/copy (audited apart from item.read), the
edit that keeps the stored password, the audit view and status (admins only), the generator."""

from __future__ import annotations

import string

import pytest
from sqlalchemy import select

from appliance import admin_status, audit_view, generator, item_secrets
from appliance.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.models import AuditEntry
from tests.support import invite

PW, PIN_ = "correct horse battery staple 42", "480213"


def _principal(app, email: str, admin: bool = False):
    app.accounts.enroll(invite(app, email, admin), PW, PIN_)
    token, _ = app.accounts.unlock(app.accounts.login(email, PW, None), PIN_, None)
    return app.sessions.authenticate(token, None)


def _events(app) -> list[str]:
    with app.db.read() as db:
        return [e for (e,) in db.execute(select(AuditEntry.event).order_by(AuditEntry.seq))]


def test_reveal_and_copy_are_audited_apart_from_read(sqlite_app):
    app = sqlite_app
    owner = _principal(app, "owner@example.com")
    vault = app.vaults.create(owner, "V")
    item = app.items.create(owner, vault.id, {"title": "T", "password": "s3cret-value"})
    before = len(_events(app))
    assert item_secrets.reveal(app, owner, item.id, "reveal") == "s3cret-value"
    assert item_secrets.reveal(app, owner, item.id, "copy") == "s3cret-value"
    assert _events(app)[before:] == ["item.revealed", "item.copied"]
    with pytest.raises(ValidationFailed):
        item_secrets.reveal(app, owner, item.id, "print")
    stranger = _principal(app, "stranger@example.com")
    with pytest.raises(NotFound):
        item_secrets.reveal(app, stranger, item.id, "reveal")
    reader = _principal(app, "reader@example.com")
    app.vaults.add_member(owner, vault.id, "reader@example.com", "read")
    assert item_secrets.reveal(app, reader, item.id, "copy") == "s3cret-value"
    assert item_secrets.details(app, reader, item.id).updated_by == "owner@example.com"


def test_edit_keeps_the_password_and_checks_the_version(sqlite_app):
    app = sqlite_app
    owner = _principal(app, "editor@example.com")
    vault = app.vaults.create(owner, "V")
    item = app.items.create(owner, vault.id, {"title": "T", "password": "kept-password"})
    values = {"title": "T2", "username": "u", "password": None, "url": None, "notes": None}
    updated = item_secrets.update(app, owner, item.id, values, 1, keep_password=True)
    assert updated.fields.password == "kept-password" and updated.fields.title == "T2"
    with pytest.raises(Conflict):
        item_secrets.update(app, owner, item.id, values, 1, keep_password=True)
    reader = _principal(app, "ro@example.com")
    app.vaults.add_member(owner, vault.id, "ro@example.com", "read")
    with pytest.raises(Forbidden):
        item_secrets.update(app, reader, item.id, values, 2, keep_password=True)


def test_audit_view_and_status_are_for_administrators(sqlite_app):
    app = sqlite_app
    admin = _principal(app, "root@example.com", admin=True)
    user = _principal(app, "user@example.com")
    with pytest.raises(Forbidden):
        audit_view.page(app, user, audit_view.AuditFilters())
    with pytest.raises(Forbidden):
        audit_view.verify_chain(app, user)
    with pytest.raises(Forbidden):
        admin_status.status_lines(app, user)
    page = audit_view.page(app, admin, audit_view.AuditFilters(event="login.ok"))
    assert page.total == 2 and {r.event for r in page.rows} == {"login.ok"}
    mine = audit_view.page(app, admin, audit_view.AuditFilters(actor="user@"))
    assert mine.total >= 2 and {r.actor_email for r in mine.rows} == {"user@example.com"}
    assert audit_view.page(app, admin, audit_view.AuditFilters(since="2100-01-01")).total == 0
    with pytest.raises(ValidationFailed):
        audit_view.page(app, admin, audit_view.AuditFilters(since="yesterday"))
    result = audit_view.verify_chain(app, admin)
    assert result.ok and result.head_mac == page.head_mac
    assert not audit_view.verify_chain(app, admin, "f" * 64).ok
    assert any(line.startswith("counts:") for line in admin_status.status_lines(app, admin))


def test_generator_classes_length_and_passphrase():
    for _ in range(50):
        value = generator.generate(generator.GeneratorOptions(length=12, symbols=False))
        assert len(value) == 12
        assert any(c in string.ascii_lowercase for c in value)
        assert any(c in string.ascii_uppercase for c in value)
        assert any(c in string.digits for c in value)
        assert not any(c in generator.SYMBOLS for c in value)
    digits = generator.generate(generator.GeneratorOptions(length=8, lower=False, upper=False, symbols=False))
    assert digits.isdigit()
    phrase = generator.generate(generator.GeneratorOptions(passphrase=True, words=5)).split("-")
    assert len(phrase) == 5 and all(w.isalpha() for w in phrase)
    assert len(generator._wordlist()) == 8192
    for bad in (
        generator.GeneratorOptions(length=7),
        generator.GeneratorOptions(lower=False, upper=False, digits=False, symbols=False),
        generator.GeneratorOptions(passphrase=True, words=3),
    ):
        with pytest.raises(ValidationFailed):
            generator.generate(bad)
