"""Every MAC column of the schema is known to the bind/audit rotation and to
retirement: a table added later with a MAC it forgets to register fails here,
before a retired root version leaves its rows unverifiable."""

from __future__ import annotations

import appliance.core  # noqa: F401  (imports every feature's models)
from appliance.keyops.refs import AUDIT_MACS, BIND_MACS
from appliance.models import Base

# MACs made under the audit root, whose label sits in another column (key_label) or in
# the head row: counted by refs.references() for the audit kind, never retired.
AUDIT_CHAIN = {("audit_log", "mac"), ("audit_log", "prev_mac"), ("audit_head", "mac")}


def test_every_mac_column_is_registered() -> None:
    known = set(BIND_MACS) | set(AUDIT_MACS) | AUDIT_CHAIN
    every = {(table.name, column.name) for table in Base.metadata.tables.values() for column in table.c}
    macs = {(t, c) for (t, c) in every if c == "mac" or c.endswith("_mac")}
    assert macs - known == set(), "register these MAC columns in appliance/keyops/refs.py (and bind.py)"
    assert known - every == set(), "registered MAC columns that do not exist"
