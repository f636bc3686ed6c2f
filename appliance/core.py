"""The appliance: settings, database, token and the domain services, wired once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from appliance.accounts import Accounts
from appliance.audit import AuditLog
from appliance.config import Settings
from appliance.db import Database
from appliance.files import Files
from appliance.folders import Folders
from appliance.history import History
from appliance.integrity import Integrity
from appliance.items import Items
from appliance.keyops import KeyOps
from appliance.login import Login
from appliance.mail import Mailer
from appliance.offboarding import Offboarding
from appliance.passwords import PasswordHasher
from appliance.ratelimit import RateLimiter
from appliance.recovery import Recovery, RecoveryRequests
from appliance.sends import Sends
from appliance.sessions import Sessions
from appliance.transfers import TransferAccess, Transfers
from appliance.transfers.deposits import Deposits
from appliance.userkeys import UserKeys
from appliance.vaults import Vaults
from hsm.keystore import Keystore


class Appliance:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.database_url)
        self.keystore = Keystore(settings.hsm)
        self.hasher = PasswordHasher(settings.crypto)
        self.integrity = Integrity(self)
        self.audit = AuditLog(self.keystore, self.db, clock, self.integrity.deployment)
        self.ratelimit = RateLimiter(clock)
        self.mail = Mailer(self)
        self.sessions = Sessions(self)
        self.accounts = Accounts(self)
        self.login = Login(self)
        self.userkeys = UserKeys(self)
        self.vaults = Vaults(self)
        self.items = Items(self)
        self.folders = Folders(self)
        self.history = History(self)
        self.files = Files(self)
        self.transfers = Transfers(self)
        self.transfer_access = TransferAccess(self)
        self.deposits = Deposits(self)
        self.offboarding = Offboarding(self)
        self.recovery = Recovery(self)
        self.recovery_requests = RecoveryRequests(self)
        self.sends = Sends(self)
        self.keyops = KeyOps(self)

    def recovery_rotate(self, shares: list[str], officers: list[str] | None, threshold: int | None) -> Any:
        from appliance.recovery.rotation import rotate

        return rotate(self, shares, officers, threshold)

    def health(self) -> None:
        """Raise DatabaseUnavailable or HsmUnavailable when either does not answer."""
        self.db.ping()
        self.keystore.ping()

    def close(self) -> None:
        self.keystore.close()
        self.db.dispose()
