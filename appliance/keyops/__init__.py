"""Key operations: rotations of the HSM roots and of vault keys as resumable jobs
recorded in the database, retirement of old root versions, and what references
each version (``coffre keys``, ``coffre status``, the admin console)."""

from appliance.keyops.engine import Options
from appliance.keyops.jobs import JobView, LeaseLost
from appliance.keyops.registry import SEALED, SealedColumn
from appliance.keyops.service import KeyOps, Plan

__all__ = ["SEALED", "JobView", "KeyOps", "LeaseLost", "Options", "Plan", "SealedColumn"]
