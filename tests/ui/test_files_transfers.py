"""Files and a transfer in the browser: upload into a vault (streamed by the page's
script), download, a transfer built from the vault file and sent, the recipient's
link page (password, download), revocation; a deposit link; axe on the new pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.ui.support import AXE, enroll, have_axe, login, new_context

TRANSFER_PASSWORD = "orange kayak below the bridge"


def _axe(page, url: str) -> list:
    page.evaluate(AXE.read_text())
    violations = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', "
        "'wcag22aa', 'best-practice']}}).then(r => r.violations.map(v => [v.id, v.impact]))"
    )
    return [(url, *v) for v in violations if v[1] in ("serious", "critical")]


@pytest.mark.slow
def test_file_upload_transfer_and_deposit(lab, browser, tmp_path: Path):
    assert have_axe()
    problems: list = []
    context = new_context(browser, accept_downloads=True)
    page = context.new_page()
    enroll(page, f"{lab.url}/enroll#token={lab.invite('transfer-sender@example.com')}")
    login(page, lab.url, "transfer-sender@example.com")
    page.get_by_role("link", name="New vault").click()
    page.get_by_label("Name", exact=True).fill("Supplier contracts")
    page.get_by_role("button", name="Create", exact=True).click()
    page.get_by_role("link", name="Files", exact=True).click()
    source = tmp_path / "contrat-2031.txt"
    source.write_bytes(b"FOURNISSEUR-MARKER " * 20000)
    page.get_by_label("File", exact=True).set_input_files(str(source))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("link", name="contrat-2031.txt (download)")).to_be_visible()
    problems += _axe(page, "files")
    with page.expect_download() as got:
        page.get_by_role("link", name="contrat-2031.txt (download)").click()
    assert Path(got.value.path()).read_bytes() == source.read_bytes()

    # A deposit link: an outsider drops a file; it appears in the vault's files.
    page.get_by_role("button", name="Create deposit link").click()
    deposit_url = page.get_by_label("Deposit link (shown once)").input_value()
    outsider_ctx = new_context(browser, accept_downloads=True)
    outsider = outsider_ctx.new_page()
    outsider.goto(deposit_url)
    problems += _axe(outsider, "deposit")
    dropped = tmp_path / "facture.txt"
    dropped.write_bytes(b"invoice 42")
    outsider.get_by_label("File", exact=True).set_input_files(str(dropped))
    outsider.get_by_role("button", name="Deposit", exact=True).click()
    expect(outsider.get_by_role("status")).to_contain_text("Received")
    page.reload()
    expect(page.get_by_role("link", name="facture.txt (download)")).to_be_visible()

    # A transfer of the vault file.
    page.get_by_role("link", name="Transfers", exact=True).click()
    page.get_by_role("link", name="New transfer").click()
    page.get_by_label("Recipients", exact=True).fill("buyer@supplier.example")
    page.get_by_label("Transfer password", exact=True).fill(TRANSFER_PASSWORD)
    page.get_by_label("Message", exact=True).fill("Le contrat signé")
    page.get_by_role("button", name="Create transfer").click()
    page.get_by_label("File from a vault").select_option(label="Supplier contracts / contrat-2031.txt")
    page.get_by_role("button", name="Add from vault").click()
    expect(page.get_by_role("listitem").filter(has_text="contrat-2031.txt")).to_be_visible()
    problems += _axe(page, "transfer draft")
    transfer_page = page.url
    page.get_by_role("button", name="Send", exact=True).click()
    link = page.get_by_label("buyer@supplier.example").input_value()
    assert "/t/" in link

    # The recipient: the page asks for the password; a wrong one is refused like an unknown link.
    outsider.goto(link)
    problems += _axe(outsider, "transfer public")
    outsider.get_by_label("Password", exact=True).fill("not the password")
    outsider.get_by_role("button", name="Open", exact=True).click()
    expect(outsider.get_by_role("heading", level=1)).not_to_have_text("Files for you")
    outsider.goto(link)
    outsider.get_by_label("Password", exact=True).fill(TRANSFER_PASSWORD)
    outsider.get_by_role("button", name="Open", exact=True).click()
    expect(outsider.get_by_text("Le contrat signé")).to_be_visible()
    with outsider.expect_download() as got:
        outsider.get_by_role("link", name="Download contrat-2031.txt").click()
    assert Path(got.value.path()).read_bytes() == source.read_bytes()

    # Receipts for the sender, then revocation: the link no longer opens.
    page.goto(transfer_page)
    expect(page.get_by_text("downloaded", exact=False).first).to_be_visible()
    page.get_by_role("button", name="Revoke transfer").click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    assert outsider.goto(link).status == 404
    assert problems == []
    outsider_ctx.close()
    context.close()
