"""Reading HTML form posts."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar.enums import RequestEncodingType
from litestar.params import Body

Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]


def text(data: dict[str, Any], name: str, limit: int = 70000) -> str:
    """One field as text (the last value when repeated), cut at ``limit`` characters."""
    value = data.get(name, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return value[:limit] if isinstance(value, str) else ""


def checked(data: dict[str, Any], name: str) -> bool:
    return text(data, name) in ("on", "1", "true", "yes")


def local_path(value: str, default: str = "/") -> str:
    """A path on this site only (no scheme, no `//host`), for redirects after a form."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value and "\n" not in value:
        return value
    return default


def digits(raw: str, most: int = 6) -> bool:
    """ASCII digits only, at most ``most`` of them: "²" passes ``str.isdigit()`` and
    ``int()`` refuses it (a 500), and "٣" would be read as 3."""
    return re.fullmatch(rf"[0-9]{{1,{most}}}", raw) is not None
