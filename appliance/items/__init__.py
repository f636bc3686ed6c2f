"""Credentials stored in vaults: each field sealed with AES-256-GCM inside the
token under the key of its place (the vault key, or the nearest keyed folder's:
appliance/folders), its associated data naming vault, folder, key, item, field,
item version and key version, so a ciphertext moved to any other place fails to
open. Every update keeps the previous version (appliance/history)."""

from appliance.folders.sealing import FIELDS, field_context
from appliance.items.fields import LIMITS, ItemFields, ItemSummary, ItemView
from appliance.items.service import Items

__all__ = ["FIELDS", "LIMITS", "ItemFields", "ItemSummary", "ItemView", "Items", "field_context"]
