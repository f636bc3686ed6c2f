"""What the admin console's "Key jobs" screen shows (administrators only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.accounts import Accounts
from appliance.keyops.jobs import JobView
from appliance.keyops.refs import root_versions

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.sessions import Principal


@dataclass(frozen=True)
class KeysScreen:
    jobs: list[JobView]
    failures: dict[str, list[dict[str, Any]]]
    roots: list[dict[str, Any]]


def key_screen(app: Appliance, principal: Principal) -> KeysScreen:
    Accounts.require_admin(principal)
    jobs = app.keyops.jobs(50, refresh=False)  # a GET changes nothing
    failures = {j.id: app.keyops.failures(j.id)[:20] for j in jobs if j.failed}
    return KeysScreen(jobs=jobs, failures=failures, roots=root_versions(app))
