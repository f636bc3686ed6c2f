"""Retiring a root version: destroy it in the token once nothing references it.

Refused for the newest version of its kind, while an unfinished job of its kind
runs (its sweep may still be moving rows), and while any row references it or
its references cannot be known (counted from the data: appliance/keyops/refs.py).
A retired version is gone for good: a backup that still needs it is refused at
restore, naming it (appliance/backup)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.errors import Conflict, NotFound
from appliance.keyops.refs import references
from hsm.labels import parse_label

if TYPE_CHECKING:
    from appliance.core import Appliance


@dataclass(frozen=True)
class Retirement:
    label: str
    references: dict[str, int] | None
    retired: bool
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "references": self.references, "retired": self.retired, "reason": self.reason}


class RetireRefused(Conflict):
    def __init__(self, message: str, result: Retirement) -> None:
        super().__init__(message)
        self.result = result


def retire(app: Appliance, label: str, actor: str, dry_run: bool = False) -> Retirement:
    parsed = parse_label(label)
    if parsed is None:
        raise NotFound(f"{label!r} is not a root key label (coffre-KIND-vN)")
    kind, _version = parsed
    versions = [r for r in app.keystore.list_roots() if r.kind is kind]
    if label not in {r.label for r in versions}:
        raise NotFound(f"{label} is not on the token (already retired?)")
    refs = references(app, label)

    def refuse(reason: str) -> Retirement:
        result = Retirement(label, refs, False, reason)
        if dry_run:
            return result
        raise RetireRefused(f"{label} cannot be retired: {reason}", result)

    if versions[-1].label == label:
        return refuse("it is the current version")
    job = app.keyops.store.unfinished(kind.value)
    if job is not None:
        return refuse(f"rotation job {job.id} of kind {kind.value} is unfinished")
    if refs is None:
        return refuse("what references it cannot be counted (no rotation job recorded when it was replaced)")
    if any(refs.values()):
        listed = ", ".join(f"{k} {v}" for k, v in sorted(refs.items()))
        return refuse(f"still referenced: {listed}")
    if dry_run:
        return Retirement(label, refs, False, None)
    # The audit entry is committed first: a version is never gone without its record (a
    # failed destroy leaves an entry for a version still on the token, and retire runs again).
    with app.keystore.work() as work, app.db.write() as db:
        app.audit.append(db, work, "key.retired", actor=actor, target=label)
    app.keystore.destroy_root(label)
    return Retirement(label, refs, True, None)
