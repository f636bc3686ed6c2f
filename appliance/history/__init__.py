"""What an item keeps besides its live version: earlier versions (history) and a
TOTP secret whose codes the appliance computes."""

from appliance.history.retention import archive
from appliance.history.service import History, VersionInfo
from appliance.history.totp import TotpCode
from appliance.history.totp import check as check_totp

__all__ = ["History", "TotpCode", "VersionInfo", "archive", "check_totp"]
