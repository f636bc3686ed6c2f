"""Wire types of files (and transfers): explicit Structs, never ORM rows."""

from __future__ import annotations

import msgspec


class FileOut(msgspec.Struct):
    id: str
    name: str
    size: int
    sha256: str
    version: int
    vault_id: str
    folder_id: str | None
    content_type: str
    created_at: str
    updated_at: str
