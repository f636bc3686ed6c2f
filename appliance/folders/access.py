"""The access model of folders, as pure data: who may do what where, and which
folders need their own key.

- A member's level in a folder is the nearest setting at or above it (full,
  read or none); with no setting on the way up, their vault role (admin and
  write: full, read: read). Vault administrators are always full.
- A folder needs its own key when the set of members who may read it differs
  from the readers of the nearest key above it (the vault key's readers are all
  members). Everything under a key is sealed with it, so a member who holds no
  wrapped copy of that key cannot open anything there.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import ValidationFailed
from appliance.folders.sealing import KeyRef

MAX_DEPTH = 8


class Level(enum.IntEnum):
    NONE = 0
    READ = 1
    FULL = 2

    @classmethod
    def parse(cls, value: Any) -> Level:
        if not isinstance(value, str) or value not in ("full", "read", "none"):
            raise ValidationFailed("access must be one of: full, read, none")
        return cls[value.upper()]

    @property
    def wire(self) -> str:
        return self.name.lower()


def settings_digest(settings: dict[str, Level]) -> str:
    """SHA-256 over one folder's settings ({user id: level}); "" when there are none.
    Kept in the folder's row (under its MAC): a setting deleted behind the
    appliance's back no longer matches and the folder is refused."""
    if not settings:
        return ""
    canonical = json.dumps(sorted((user, level.wire) for user, level in settings.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def role_level(role: str) -> Level:
    return Level.READ if role == "read" else Level.FULL


@dataclass
class Node:
    id: str
    parent_id: str | None
    name: str
    keyed: bool
    key_version: int


@dataclass
class Tree:
    """One vault's folders, settings and members (rows whose MACs verified)."""

    vault_id: str
    vault_version: int
    nodes: dict[str, Node] = field(default_factory=dict)
    settings: dict[tuple[str, str], Level] = field(default_factory=dict)  # (folder, user)
    roles: dict[str, str] = field(default_factory=dict)  # user -> vault role

    def children(self) -> dict[str | None, list[str]]:
        out: dict[str | None, list[str]] = {}
        for node in sorted(self.nodes.values(), key=lambda n: (n.name.lower(), n.id)):
            out.setdefault(node.parent_id, []).append(node.id)
        return out

    def chain(self, folder_id: str | None) -> Iterator[str]:
        """The folder and its ancestors, nearest first."""
        seen = 0
        while folder_id is not None and seen <= MAX_DEPTH + 1:
            yield folder_id
            folder_id = self.nodes[folder_id].parent_id
            seen += 1

    def depth(self, folder_id: str | None) -> int:
        return sum(1 for _ in self.chain(folder_id))

    def subtree_height(self, folder_id: str) -> int:
        kids = self.children().get(folder_id, [])
        return 1 + max((self.subtree_height(k) for k in kids), default=0)

    def is_under(self, folder_id: str | None, ancestor: str) -> bool:
        return ancestor in self.chain(folder_id)

    def level(self, user_id: str, folder_id: str | None) -> Level:
        role = self.roles.get(user_id)
        if role is None:
            return Level.NONE
        if role == "admin":
            return Level.FULL
        for fid in self.chain(folder_id):
            setting = self.settings.get((fid, user_id))
            if setting is not None:
                return setting
        return role_level(role)

    def levels(self, user_id: str) -> dict[str | None, Level]:
        """The user's level in every folder (and the root, ``None``), top-down."""
        out: dict[str | None, Level] = {None: self.level(user_id, None)}
        kids = self.children()
        admin = self.roles.get(user_id) == "admin"
        stack: list[str | None] = [None]
        while stack:
            parent = stack.pop()
            for child in kids.get(parent, []):
                setting = None if admin else self.settings.get((child, user_id))
                out[child] = setting if setting is not None else out[parent]
                stack.append(child)
        return out

    def settings_of(self, folder_id: str) -> dict[str, Level]:
        return {user: level for (fid, user), level in self.settings.items() if fid == folder_id}

    def key_ref(self, folder_id: str | None) -> KeyRef:
        """The key that seals items in ``folder_id``, as the tree stands."""
        for fid in self.chain(folder_id):
            node = self.nodes[fid]
            if node.keyed:
                return KeyRef(fid, node.key_version)
        return KeyRef(None, self.vault_version)

    def desired_readers(self) -> dict[str, frozenset[str]]:
        """Folders that need their own key, with the members who may read each."""
        per_user = {user: self.levels(user) for user in self.roles}
        out: dict[str, frozenset[str]] = {}
        kids = self.children()
        stack: list[tuple[str | None, frozenset[str]]] = [(None, frozenset(self.roles))]
        while stack:
            parent, context = stack.pop()
            for child in kids.get(parent, []):
                readers = frozenset(u for u, levels in per_user.items() if levels[child] >= Level.READ)
                if readers != context:
                    out[child] = readers
                    stack.append((child, readers))
                else:
                    stack.append((child, context))
        return out
