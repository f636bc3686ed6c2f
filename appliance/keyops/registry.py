"""Every column holding a blob sealed under the KEK, in one list.

The KEK rotation job, ``coffre keys retire`` and ``coffre status`` find sealed
blobs only through ``SEALED``: a new table with a KEK-sealed column adds one
``SealedColumn`` here and nothing else. Each entry names the table, its id column,
the blob column, the column recording the KEK label (``None`` when the table has
none: the label is then read from the blob's header) and how the blob's
associated data (``context``) is built from the row. ``also`` computes other
columns that must change with the blob (a MAC that covers it), after checking the
old one: a rotation never re-blesses a row a database writer changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.integrity import macs

if TYPE_CHECKING:
    from appliance.core import Appliance
    from hsm.keystore import Work

Row = Mapping[str, Any]


class RowRefused(Exception):
    """A row the job must not touch (its MAC does not verify): recorded as a failure."""


@dataclass(frozen=True)
class SealedColumn:
    table: str
    id_column: str
    blob_column: str
    label_column: str | None
    context: Callable[[Row], bytes]
    # Other columns the context builder or ``extra`` reads.
    reads: tuple[str, ...] = ()
    also: Callable[[Appliance, Work, Row, bytes], dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        return f"{self.table}.{self.blob_column}"


def _user_key(row: Row) -> bytes:
    from appliance.sessions import user_key_context

    return user_key_context(row["id"])


def _session_key(row: Row) -> bytes:
    from appliance.sessions import session_context

    return session_context(row["id"], row["user_id"])


def _recovery_config(row: Row) -> bytes:
    from appliance.recovery.ceremony import config_context

    return config_context(int(row["version"]))


def _recovery_config_mac(app: Appliance, work: Work, row: Row, new_blob: bytes) -> dict[str, Any]:
    """The configuration's MAC covers the sealed private key: check it, then re-make it."""
    from appliance.recovery.ceremony import _h

    def parts(blob: bytes) -> tuple[Any, ...]:
        return (row["version"], row["active"], _h(row["public_key"]), _h(blob), row["officers"], row["threshold"])

    deployment = app.integrity.deployment()
    if not macs.check(work, row["mac"], "recovery-config", deployment, *parts(row["private_blob"])):
        raise RowRefused("the recovery configuration's MAC does not verify")
    return {"mac": macs.make(work, "recovery-config", deployment, *parts(new_blob))}


def _recovery_request(row: Row) -> bytes:
    from appliance.recovery.requests import _request_context

    return _request_context(row["id"])


def _mail_body(row: Row) -> bytes:
    from appliance.mail.outbox import body_context

    return body_context(row["id"], row["to_address"], row["template"])


def _send_payload(row: Row) -> bytes:
    """A send's KEK layer: code and link sends, and user sends waiting for the recipient's
    enrollment (stage "kek"); a user send under its own key has no KEK label."""
    from types import SimpleNamespace

    from appliance.sends.crypto import payload_context

    send = SimpleNamespace(**{k: row[k] for k in ("id", "mode", "sender_id", "recipient_id", "token_hash")})
    return payload_context(send, "kek" if row["mode"] == "user" else row["mode"])  # type: ignore[arg-type]


def _transfer_draft(row: Row) -> bytes:
    from appliance.transfers.keys import draft_context

    return draft_context(row["id"])


def _deposit_box(row: Row) -> bytes:
    from appliance.transfers.deposits import sealed_context

    return sealed_context(row["id"])


SEALED: tuple[SealedColumn, ...] = (
    SealedColumn("users", "id", "private_key_blob", "kek_label", _user_key),
    SealedColumn("sessions", "id", "key_blob", "kek_label", _session_key, reads=("user_id",)),
    SealedColumn(
        "recovery_config",
        "version",
        "private_blob",
        None,
        _recovery_config,
        reads=("active", "public_key", "officers", "threshold", "mac"),
        also=_recovery_config_mac,
    ),
    SealedColumn("recovery_requests", "id", "private_blob", None, _recovery_request),
    SealedColumn("mail_outbox", "id", "body_blob", "kek_label", _mail_body, reads=("to_address", "template")),
    SealedColumn(
        "sends", "id", "payload", "kek_label", _send_payload, reads=("mode", "sender_id", "recipient_id", "token_hash")
    ),
    # A draft transfer's key (erased at send) and an open deposit box's key (erased at close).
    SealedColumn("transfers", "id", "draft_blob", "kek_label", _transfer_draft),
    SealedColumn("deposit_boxes", "id", "sealed_key", "kek_label", _deposit_box),
)
