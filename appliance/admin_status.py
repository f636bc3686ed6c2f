"""What `coffre status` prints, for the admin console (administrators only)."""

from __future__ import annotations

from appliance.accounts import Accounts
from appliance.core import Appliance
from appliance.sessions import Principal
from appliance.status import collect


def status_lines(app: Appliance, principal: Principal) -> list[str]:
    Accounts.require_admin(principal)
    return collect(app)
