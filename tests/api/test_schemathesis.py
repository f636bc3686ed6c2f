"""Schemathesis against the real app (in-process ASGI, real SoftHSM2 token, SQLite):
every operation of /schema/openapi.json, in the examples, coverage and fuzzing phases,
with every response check (a 5xx, a status, content type, header or body the document
does not describe, schema-valid data refused, schema-invalid data accepted, auth ignored).

Two enrolled users (an administrator who owns a vault with an item, and a member with
the read role) make the authenticated operations reach their real code: path ids are
the real ones for most positive cases, and what a case destroys (a session logged out,
the vault deleted, the member removed or disabled) is put back before the next one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from appliance.core import Appliance
from appliance.errors import Unauthorized
from appliance.models import Folder, Item, User, Vault, VaultMember
from tests.conftest import build_app
from tests.support import PIN, STRONG_PASSWORD, FakeClock
from web.app import create_app

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25
ADMIN, MEMBER = "owner@example.com", "reader@example.com"

# Schema-valid data may still be refused for what a JSON schema cannot say: a weak
# password, an e-mail address the API does not take, a PIN that is not 6 digits (422),
# a locked account (423). Enrollment and reset tokens that are unknown, used or expired
# are a 400 (documented). Nothing else is tolerated.
ACCEPTANCE = ["2xx", "401", "403", "404", "409", "422", "423", "429"]
CONFIG = {
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTANCE}},
    "operations": [
        {
            "include-operation-id": op,
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTANCE, "400"]}},
        }
        for op in ("enroll", "completePasswordReset")
    ]
    + [
        # A share is given once: every pickup after the first is a 410 (documented).
        {
            "include-operation-id": "pickUpRecoveryShare",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTANCE, "410"]}},
        }
    ],
}


class World:
    """The two users, their sessions, the vault and the item; repaired between cases."""

    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        for email, admin in ((ADMIN, True), (MEMBER, False)):
            _, token = app.accounts.invite(email, admin)
            self.ids[email] = app.accounts.enroll(token, STRONG_PASSWORD, PIN).id
        app.recovery.init([ADMIN, MEMBER], 2)  # so that the recovery operations reach their code
        self.vault_id = ""
        self.item_id = ""
        self.folder_id = ""
        self.files = FilesWorld(app)
        self.counter = itertools.count()
        self.seen: dict[str, set[int]] = {}
        self.logins = itertools.count()

    def token(self, email: str) -> str:
        with self.app.db.read() as db:
            user = db.get(User, self.ids[email])
            disabled, locked = user.status != "active", user.locked
        if disabled:
            self.app.accounts.enable(None, self.ids[email])
        if locked:
            self.app.accounts.admin_unlock(None, self.ids[email])
        token = self.tokens.get(email)
        if token is not None:
            try:
                self.app.sessions.authenticate(token, None)
                return token
            except Unauthorized:
                pass
        addr = self.address()
        ticket = self.app.accounts.login(email, STRONG_PASSWORD, addr)
        self.tokens[email] = self.app.accounts.unlock(ticket, PIN, addr)[0]
        return self.tokens[email]

    def address(self) -> str:
        """A new documentation address (RFC 5737) per login made here, so the per-address
        login limit applies to the generated requests only, not to this repair work."""
        n = next(self.logins)
        return f"198.51.100.{n % 250}" if n < 250 else f"203.0.113.{n % 250}"

    def repair(self) -> None:
        admin = self.app.sessions.authenticate(self.token(ADMIN), None)
        self.token(MEMBER)
        with self.app.db.read() as db:
            owner = db.get(VaultMember, (self.vault_id, admin.user_id)) if self.vault_id else None
            vault_ok = db.get(Vault, self.vault_id) is not None and owner is not None and owner.role == "admin"
            member_ok = vault_ok and db.get(VaultMember, (self.vault_id, self.ids[MEMBER])) is not None
            item_ok = vault_ok and db.get(Item, self.item_id) is not None
            folder_ok = vault_ok and db.get(Folder, self.folder_id) is not None
        if not vault_ok:
            self.vault_id = self.app.vaults.create(admin, "Infrastructure").id
        if not member_ok:
            self.app.vaults.add_member(admin, self.vault_id, MEMBER, "read")
        if not item_ok:
            values = {
                "title": "Primary DB",
                "username": "postgres",
                "password": "s3cr3t",
                "url": "https://db",
                "totp": "JBSWY3DPEHPK3PXP",
            }
            self.item_id = self.app.items.create(admin, self.vault_id, values).id
        if not folder_ok:  # left empty, so that deleting it can succeed
            self.folder_id = self.app.folders.create(admin, self.vault_id, "Production").id
        self.files.repair(admin, self.vault_id)

    def item_version(self) -> int:
        with self.app.db.read() as db:
            item = db.get(Item, self.item_id)
            return int(item.version) if item is not None else 1

    def _real_credentials(self, case: Any, n: int) -> None:
        """Now and then, credentials that work, so the unauthenticated operations succeed too."""
        op = case.operation.definition.raw.get("operationId")
        if n % 3 or not isinstance(case.body, dict):
            return
        if op == "login":
            case.body.update(email=MEMBER, password=STRONG_PASSWORD)
        elif op == "unlock":
            case.body.update(login_ticket=self.app.accounts.login(MEMBER, STRONG_PASSWORD, self.address()), pin=PIN)
        elif op == "enroll":
            _, token = self.app.accounts.invite(f"new{n}@example.com", False)
            case.body.update(token=token, password=STRONG_PASSWORD, pin=PIN)
        elif op == "createRecoveryRequest":
            case.body["email"] = MEMBER
        elif op == "inviteUser":
            case.body["email"] = f"invited{n}@example.com"
        elif op == "createSend":
            case.body.clear()
            case.body.update(mode="link", secret=f"s{n}")
        elif op in FILE_BODIES:
            case.body.update(self.files.body(op))
        elif op == "addMember":
            _, token = self.app.accounts.invite(f"joiner{n}@example.com", False)
            self.app.accounts.enroll(token, STRONG_PASSWORD, PIN)
            case.body["email"] = f"joiner{n}@example.com"

    def _sends(self, op: str | None) -> dict[str, str]:
        """A fresh send for the operations that act on one: the admin's own (revoke),
        one the admin received (save, discard), a link's token (reveal)."""
        admin = self.app.sessions.authenticate(self.token(ADMIN), None)
        if op == "revokeSend":
            return {"send_id": self.app.sends.create(admin, mode="link", secret="x").id}
        if op in ("saveReceived", "discardReceived"):
            member = self.app.sessions.authenticate(self.token(MEMBER), None)
            return {"send_id": self.app.sends.create(member, mode="user", secret="x", recipient_email=ADMIN).id}
        if op == "revealSend":
            path = self.app.sends.create(admin, mode="link", secret="x").path
            assert path is not None
            return {"token": path.rsplit("/", 1)[1]}
        return {}

    def _throwaway(self, n: int) -> str:
        _, token = self.app.accounts.invite(f"leaver{n}@example.com", False)
        return self.app.accounts.enroll(token, STRONG_PASSWORD, PIN).id

    def prepare(self, case: Any) -> dict[str, str]:
        """Real ids and versions in most positive cases; the headers to send."""
        self.repair()
        n = next(self.counter)
        positive = case.meta is None or not case.meta.generation.mode.is_negative
        if positive and n % 4:
            real: dict[str, Any] = {
                "vault_id": self.vault_id,
                "item_id": self.item_id,
                "user_id": self.ids[MEMBER],
                "folder_id": self.folder_id,
                "n": self.item_version(),
            }
            real.update(self.files.path_ids(case))
            if case.operation.definition.raw.get("operationId") == "deleteUser":
                real["user_id"] = self._throwaway(n)  # deleting MEMBER would end the run's world
            real.update(self._sends(case.operation.definition.raw.get("operationId")))
            for name in list(case.path_parameters or {}):
                if name in real:
                    case.path_parameters[name] = real[name]
            if isinstance(case.body, dict) and "version" in case.body and n % 2:
                case.body["version"] = self.item_version()
            self._real_credentials(case, n)
        if not case.operation.definition.raw.get("security"):
            return {}
        who = MEMBER if n % 5 == 0 else ADMIN
        return {"Authorization": f"Bearer {self.token(who)}"}


TRANSFER_PASSWORD = "schemathesis transfer password"
FILE_BODIES = ("createTransfer", "createDeposit", "addTransferFileFromVault", "unlockTransfer")


class FilesWorld:
    """A vault file, a draft transfer with a file, a sent transfer, a deposit box: the
    real ids the file, transfer and deposit operations need to reach their success."""

    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.file_id = self.draft_id = self.sent_token = self.sent_file = self.box_id = self.box_token = ""
        self.sent_id = ""

    def _upload(self, upload: Any) -> Any:
        upload.write(b"schemathesis file content")
        return upload.finish()

    def repair(self, admin: Any, vault_id: str) -> None:
        from appliance.files.models import StoredFile
        from appliance.transfers.models import DepositBox, Transfer

        with self.app.db.read() as db:
            file_ok = (
                bool(self.file_id) and (f := db.get(StoredFile, self.file_id)) is not None and f.vault_id == vault_id
            )
            draft = db.get(Transfer, self.draft_id) if self.draft_id else None
            sent = db.get(Transfer, self.sent_id) if self.sent_id else None
            box = db.get(DepositBox, self.box_id) if self.box_id else None
        if not file_ok:
            self.file_id = self._upload(self.app.files.begin_upload(admin, vault_id, "report.pdf")).id
        if draft is None or draft.status != "draft":
            self.draft_id = self._new_transfer(admin)
        if sent is None or sent.status != "sent" or sent.shredded_at is not None:
            tid = self.sent_id = self._new_transfer(admin)
            self.sent_file = self._upload(self.app.transfers.begin_upload(admin, tid, "b.bin")).id
            links = self.app.transfers.send(admin, tid, "http://testserver")
            self.sent_token = links[0][1].rsplit("/t/", 1)[1]
        if box is None or box.status != "open" or box.vault_id != vault_id:
            self.box_id, url = self.app.deposits.create(admin, vault_id, None, None, None, None, "http://testserver")
            self.box_token = url.rsplit("/d/", 1)[1]

    def _new_transfer(self, admin: Any) -> str:
        tid = self.app.transfers.create(admin, ["buyer@example.com"], None, TRANSFER_PASSWORD, None, None, 100)
        self._upload(self.app.transfers.begin_upload(admin, tid, "a.bin"))
        return tid

    def path_ids(self, case: Any) -> dict[str, str]:
        op = case.operation.definition.raw.get("operationId")
        real = {"file_id": self.file_id, "transfer_id": self.draft_id, "deposit_id": self.box_id}
        if op == "uploadDeposit":
            real["token"] = self.box_token
        elif op in ("unlockTransfer", "downloadTransferFile"):
            real["token"] = self.sent_token
        if op == "downloadTransferFile":
            real["file_id"] = self.sent_file
            unlocked = self.app.transfer_access.unlock(self.sent_token, TRANSFER_PASSWORD, None, None)
            if isinstance(case.query, dict):
                case.query["download_token"] = unlocked.download_token
        return real

    def body(self, op: str) -> dict[str, Any]:
        if op == "createTransfer":
            return {
                "recipients": ["someone@example.com"],
                "password": TRANSFER_PASSWORD,
                "email_codes": None,
                "expires_in_hours": None,
                "max_downloads": None,
                "message": None,
                "notify_downloads": None,
            }
        if op == "createDeposit":
            return {
                "vault_id": self.app_vault,
                "folder_id": None,
                "password": None,
                "closes_at": None,
                "max_bytes": None,
            }
        if op == "addTransferFileFromVault":
            return {"file_id": self.file_id}
        return {"password": TRANSFER_PASSWORD, "code": None}

    @property
    def app_vault(self) -> str:
        from appliance.files.models import StoredFile

        with self.app.db.read() as db:
            f = db.get(StoredFile, self.file_id)
        return f.vault_id if f is not None else ""


@pytest.fixture(scope="module")
def world(hsm_config: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    app = build_app(f"sqlite:///{data_dir / 'coffre.db'}", hsm_config, data_dir, FakeClock())
    try:
        yield World(app)
    finally:
        app.close()


@pytest.fixture(scope="module")
def api_schema(world: World) -> Any:
    config = schemathesis.Config.from_dict(CONFIG)
    return schemathesis.openapi.from_asgi("/schema/openapi.json", create_app(world.app), config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_the_api_matches_its_document(case: Any, world: World) -> None:
    headers = world.prepare(case)
    response = case.call_and_validate(headers=headers)
    world.seen.setdefault(case.operation.definition.raw["operationId"], set()).add(response.status_code)


# Operations whose success needs a secret no generator can guess (a reset token, the
# caller's current password, an officer's recovery share) or that are meant to fail in this
# run (disabling an admin's self).
NO_SUCCESS_EXPECTED = {"completePasswordReset", "changePassword", "submitRecoveryShare"}


def test_every_operation_was_reached_and_succeeded(world: World) -> None:
    from web.openapi import ERRORS

    assert set(world.seen) == set(ERRORS), set(ERRORS) ^ set(world.seen)
    never_ok = {op for op, codes in world.seen.items() if not any(200 <= c < 300 for c in codes)}
    assert never_ok <= NO_SUCCESS_EXPECTED, {op: sorted(world.seen[op]) for op in never_ok}
    assert sum(len(c) for c in world.seen.values()) > 3 * len(ERRORS)
