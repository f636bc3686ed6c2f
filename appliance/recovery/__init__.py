"""M-of-N recovery of a forgotten PIN by security officers (docs/security.md,
"Recovery"; docs/operations.md, "The recovery ceremony").

- ``ceremony.py``: set-up (the recovery key pair, SLIP-39 shares sealed to the
  officers), share pickup, escrow of users' private keys, status;
- ``requests.py``: a request, the officers' shares, the user's completion.
"""

from appliance.recovery.ceremony import Recovery, RecoveryStatus
from appliance.recovery.requests import RecoveryRequests, RequestView

__all__ = ["Recovery", "RecoveryRequests", "RecoveryStatus", "RequestView"]
