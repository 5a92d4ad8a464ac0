"""Import conversations from the web client: the sample ChatGPT export, its report in words
(imported, left out, the one that failed and why), the conversations in the list; the same file
again imports nothing new; a malformed file says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.web.browser.support import session_links, session_titles, sign_in
from tools.local.host import RunningHost

pytestmark = pytest.mark.browser
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "chatgpt-conversations.json"


def test_import_conversations_and_read_the_report(
    host: RunningHost, page: Page, tmp_path: Path
) -> None:
    sign_in(page, host)
    picker = page.get_by_label("Import conversations")
    picker.set_input_files(SAMPLE)
    report = page.locator("#import-report")
    expect(report).to_contain_text("Imported 2 conversations. 2 system or tool messages left out.")
    expect(report).to_contain_text("1 conversation could not be imported:")
    expect(report.get_by_role("listitem")).to_have_text(
        ["Broken one: the message tree names a missing node 'missing'"]
    )
    expect(session_titles(page)).to_have_text(["Arithmetic", "Lisbon trip"])
    session_links(page).filter(has_text="Lisbon trip").click()
    expect(page.locator("#messages .message")).to_have_count(4)
    expect(page.locator("#messages")).to_contain_text("[attachment: image]")

    # The same file again: nothing new.
    picker.set_input_files(SAMPLE)
    expect(report).to_contain_text("Imported 0 conversations. 2 conversations were already here.")
    expect(session_titles(page)).to_have_count(2)

    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": "world"}')
    picker.set_input_files(bad)
    expect(page.locator("#data-error")).to_contain_text("Nothing was imported. The file is neither")
