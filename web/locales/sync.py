"""Refresh the catalogs from the sources: `python -m web.locales.sync` (see `make i18n`).

Extracts every message (templates, `t(request, ...)`, `N_(...)`) into
messages.pot, then updates en (msgstr = msgid) and fr (new messages left empty:
tests/ui/test_i18n.py fails until they are translated)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def extract(out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(HERE / "babel.cfg"),
            "-k",
            "t:2",
            "-k",
            "N_",
            "--no-location",
            "--omit-header",
            "--sort-output",
            "-o",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


def update(locale: str) -> None:
    with (HERE / "messages.pot").open("rb") as fh:
        template = read_po(fh)
    path = HERE / locale / "LC_MESSAGES" / "messages.po"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
    else:
        from babel.messages.catalog import Catalog

        catalog = Catalog(locale=locale, project="Coffre")
    catalog.update(template, no_fuzzy_matching=True)
    catalog.obsolete.clear()
    if locale == "en":
        for message in catalog:
            if message.id and not message.string:
                message.string = message.id
    with path.open("wb") as fh:
        write_po(fh, catalog, omit_header=False, no_location=True, sort_output=True, width=120)


def main() -> None:
    extract(HERE / "messages.pot")
    for locale in ("en", "fr"):
        update(locale)


if __name__ == "__main__":
    main()
