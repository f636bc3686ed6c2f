"""English and French: every message in the sources has a French translation, the
main pages render in French with no English left, and the footer's switch is remembered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.ui.support import PASSWORD, PIN, new_context, shot
from web.locales import sync
from web.ui import i18n

PLACEHOLDER = re.compile(r"%\(\w+\)s")


def _po(locale: str):
    with (i18n.LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=locale)


def test_catalogs_are_complete(tmp_path: Path):
    pot = tmp_path / "messages.pot"
    sync.extract(pot)
    with pot.open("rb") as fh:
        wanted = {str(m.id) for m in read_po(fh) if m.id}
    assert len(wanted) > 200, "extraction found the sources"
    for locale in i18n.LOCALES:
        catalog = {str(m.id): m for m in _po(locale) if m.id}
        missing = sorted(wanted - set(catalog))
        assert missing == [], f"{locale}: not in the catalog (run `make i18n`): {missing[:5]}"
        for msgid in wanted:
            message = catalog[msgid]
            assert message.string and not message.fuzzy, f"{locale}: {msgid!r} is not translated"
            assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(str(message.string))), msgid


def _english_only() -> list[str]:
    """Messages whose French differs, short enough to be whole labels or sentences."""
    fr = i18n.catalog("fr")
    return [m for m, s in fr.items() if s != m and not PLACEHOLDER.search(m) and "<" not in m and len(m) >= 4]


@pytest.mark.slow
def test_main_pages_in_french_leave_no_english(lab, browser):
    context = new_context(browser, locale="fr-FR")
    page = context.new_page()
    page.goto(f"{lab.url}/enroll#token={lab.invite('francais@example.com', admin=True)}")
    assert page.locator("html").get_attribute("lang") == "fr"
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_label("PIN", exact=True).fill(PIN)
    page.get_by_label("Confirmer le PIN", exact=True).fill(PIN)
    page.get_by_role("button", name="M\u2019enrôler", exact=True).click()
    page.wait_for_url("**/login")
    page.goto(lab.url + "/login")
    page.get_by_label("E-mail", exact=True).fill("francais@example.com")
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Se connecter", exact=True).click()
    page.get_by_label("PIN", exact=True).fill(PIN)
    page.get_by_role("button", name="Déverrouiller", exact=True).click()
    page.wait_for_url("**/vaults")
    page.get_by_role("link", name="Nouveau coffre").click()
    page.get_by_label("Nom", exact=True).fill("Réseau")
    page.get_by_role("button", name="Créer", exact=True).click()
    vault = page.url
    page.get_by_role("link", name="Nouvel élément").click()
    page.get_by_label("Titre", exact=True).fill("Pare-feu")
    page.get_by_label("Mot de passe", exact=True).fill("pare-feu-secret-1")
    page.get_by_role("button", name="Enregistrer", exact=True).click()
    item = page.url
    english = _english_only()
    leftovers = {}
    pages = [
        "/login",
        "/enroll",
        "/vaults",
        "/vaults/new",
        vault,
        vault + "/items/new",
        item,
        item + "/edit",
        vault + "/members",
        vault + "/settings",
        "/account",
        "/admin/users",
        "/admin/audit?verify=1",
        "/admin/keys",
        "/admin/status",
        "/no/such/page",
    ]
    for path in pages:
        page.goto(path if path.startswith("http") else lab.url + path)
        text = page.evaluate("document.body.innerText")
        # Data is not interface text: e-mail addresses and the audit entries' JSON details.
        text = re.sub(r"\S+@\S+|\{.*?\}", " ", text)
        found = [m for m in english if re.search(r"(?<![\w.-])" + re.escape(m) + r"(?![\w.-])", text)]
        if found:
            leftovers[path] = found
        if path == item:
            shot(page, "fr-item")
        if path == "/admin/users":
            shot(page, "fr-admin-users")
    assert leftovers == {}
    context.close()


@pytest.mark.slow
def test_footer_switch_is_remembered(lab, browser):
    context = new_context(browser, locale="en-US")
    page = context.new_page()
    page.goto(lab.url + "/login")
    assert page.get_by_role("button", name="Log in", exact=True).count() == 1
    page.get_by_label("Language").select_option("fr")
    page.wait_for_load_state()
    page.get_by_role("button", name="Se connecter", exact=True).wait_for()
    assert "__Host-coffre_lang" in {c["name"] for c in context.cookies()}
    page.goto(lab.url + "/enroll")
    assert page.get_by_role("button", name="M\u2019enrôler", exact=True).count() == 1
    context.close()
