"""Audit operations: export (JSON lines, CEF, RFC 5424), forwarding to a syslog
receiver from a persistent cursor, hourly anchors, and verification from an entry."""

from appliance.auditops.destination import Destination, DestinationError, Sender, SendFailed, parse_destination
from appliance.auditops.export import FORMATS, FORMATTERS, iter_records, record
from appliance.auditops.forward import Forwarder, ForwardState, state
from appliance.auditops.task import AuditTask

__all__ = [
    "FORMATS",
    "FORMATTERS",
    "AuditTask",
    "Destination",
    "DestinationError",
    "ForwardState",
    "Forwarder",
    "SendFailed",
    "Sender",
    "iter_records",
    "parse_destination",
    "record",
    "state",
]
