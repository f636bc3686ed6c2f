"""Languages: English and French, from Babel catalogs (``web/locales/<lang>/LC_MESSAGES/messages.po``).

The catalogs are read from their ``.po`` files once per process (no compile step
to forget); the language comes from the ``__Host-coffre_lang`` cookie set by the
footer's switch, else from Accept-Language, else English.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po
from jinja2 import pass_context
from litestar import Request

LOCALES = ("en", "fr")
DEFAULT = "en"
LANG_COOKIE = "__Host-coffre_lang"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locales"
NAMES = {"en": "English", "fr": "Français"}


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return message


@lru_cache(maxsize=len(LOCALES))
def catalog(locale: str) -> dict[str, str]:
    """msgid -> msgstr for every translated, non-fuzzy message of ``locale``."""
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fh:
        po = read_po(fh, locale=locale)
    return {
        str(m.id): str(m.string)
        for m in po
        if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string and not m.fuzzy
    }


def _from_accept_language(header: str) -> str | None:
    best: tuple[float, str] | None = None
    for part in header.split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if lang in LOCALES and quality > 0 and (best is None or quality > best[0]):
            best = (quality, lang)
    return best[1] if best else None


def locale_of(request: Request[Any, Any, Any]) -> str:
    cached = request.scope.get("coffre_locale")
    if isinstance(cached, str):
        return cached
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen not in LOCALES:
        chosen = _from_accept_language(request.headers.get("accept-language", "")) or DEFAULT
    request.scope["coffre_locale"] = chosen  # type: ignore[typeddict-unknown-key]
    return chosen


def translate(locale: str, message: str, **values: Any) -> str:
    text = catalog(locale).get(message, message)
    return text % values if values else text


def t(request: Request[Any, Any, Any], message: str, **values: Any) -> str:
    """gettext for controllers: ``t(request, "Vault %(name)s created", name=...)``."""
    return translate(locale_of(request), message, **values)


@pass_context
def jinja_gettext(context: Any, message: str) -> str:
    return catalog(locale_of(context["request"])).get(message, message)


@pass_context
def jinja_ngettext(context: Any, singular: str, plural: str, n: int) -> str:
    chosen = singular if n == 1 else plural
    return catalog(locale_of(context["request"])).get(chosen, chosen)
