"""What callers see of a file, and the checks of names and content types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from appliance.errors import ValidationFailed

_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class FileView:
    id: str
    vault_id: str
    folder_id: str | None
    name: str
    content_type: str
    size: int
    sha256: str
    version: int
    created_at: float
    created_by: str
    updated_at: float
    updated_by: str


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise ValidationFailed("name must be 1 to 255 characters")
    if _BAD_NAME.search(name) or name.strip() in (".", ".."):
        raise ValidationFailed("name must not contain control characters, / or \\")
    return name.strip()


def check_content_type(value: Any) -> str:
    if value is None or value == "":
        return "application/octet-stream"
    if not isinstance(value, str) or len(value) > 200 or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", value.split(";")[0]):
        return "application/octet-stream"
    return value.split(";")[0].strip().lower()
