"""Folders inside a vault: a tree of up to 8 levels, per-member access settings
(full, read, none) that override the vault role, and a key per access boundary
so that "none" is cryptographic (see docs/security.md, "Folder keys")."""

from appliance.folders.access import MAX_DEPTH, Level, Tree
from appliance.folders.keys import FolderKeys
from appliance.folders.sealing import FIELDS, KeyRef
from appliance.folders.service import Folders, FolderView, Place
from appliance.folders.settings import AccessView

__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "AccessView",
    "FolderKeys",
    "FolderView",
    "Folders",
    "KeyRef",
    "Level",
    "Place",
    "Tree",
]
