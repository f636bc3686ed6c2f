"""Transfers to outsiders (LockTransfer): password-wrapped transfer keys,
download limits, receipts, crypto-shredding."""

from appliance.transfers.public import TransferAccess, Unlocked
from appliance.transfers.service import TransferFileView, Transfers, TransferView

__all__ = ["TransferAccess", "TransferFileView", "TransferView", "Transfers", "Unlocked"]
