"""What an item holds (validated fields) and how it is shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.errors import ValidationFailed
from appliance.folders.sealing import FIELDS
from appliance.history.totp import check as check_totp

LIMITS = {"title": 200, "username": 500, "password": 4096, "url": 2048, "notes": 65536, "totp": 2048}


@dataclass(frozen=True)
class ItemFields:
    title: str
    username: str | None = None
    password: str | None = None
    url: str | None = None
    notes: str | None = None
    totp: str | None = None

    @classmethod
    def validate(cls, values: dict[str, Any]) -> ItemFields:
        clean: dict[str, str | None] = {}
        for name in FIELDS:
            value = values.get(name)
            if value is None:
                if name == "title":
                    raise ValidationFailed("title is required")
                clean[name] = None
                continue
            if not isinstance(value, str):
                raise ValidationFailed(f"{name} must be a string")
            if len(value) > LIMITS[name]:
                raise ValidationFailed(f"{name} is longer than {LIMITS[name]} characters")
            clean[name] = value
        if not (clean["title"] or "").strip():
            raise ValidationFailed("title must not be empty")
        if clean["totp"] is not None:
            clean["totp"] = check_totp(clean["totp"])
        return cls(**clean)  # type: ignore[arg-type]

    def values(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in FIELDS}


@dataclass(frozen=True)
class ItemView:
    id: str
    vault_id: str
    version: int
    fields: ItemFields
    created_at: float
    updated_at: float
    folder_id: str | None = None


@dataclass(frozen=True)
class ItemSummary:
    id: str
    vault_id: str
    version: int
    title: str
    username: str | None
    url: str | None
    updated_at: float
    folder_id: str | None = None
