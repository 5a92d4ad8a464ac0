"""Renaming a conversation in place, from the list and from the conversation's header."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.browser.support import (
    EMAIL,
    api_chat,
    api_session,
    screenshot,
    session_links,
    session_titles,
    sidebar,
    sign_in,
)
from tools.local.host import RunningHost, dev_headers

pytestmark = pytest.mark.browser

TITLE_RULE = "A title needs 1 to 100 characters on one line."


def test_rename_from_the_list_with_mouse_and_keyboard(host: RunningHost, page: Page) -> None:
    first = api_chat(host, "Trip ideas")
    api_chat(host, "Groceries")
    sign_in(page, host)
    expect(session_titles(page)).to_have_text(["Groceries", "Trip ideas"])

    # Mouse: the pencil opens an editor holding the title, selected, ready to be typed over.
    page.get_by_role("button", name="Rename “Trip ideas”").click()
    title = sidebar(page).get_by_role("textbox", name="Title")
    expect(title).to_be_focused()
    expect(title).to_have_value("Trip ideas")
    assert title.evaluate("i => [i.selectionStart, i.selectionEnd]") == [0, len("Trip ideas")]
    page.keyboard.type("Lisbon in spring")
    page.keyboard.press("Enter")
    expect(session_titles(page)).to_have_text(["Groceries", "Lisbon in spring"])
    # The keyboard is back where it was: on the (renamed) entry's button.
    expect(page.get_by_role("button", name="Rename “Lisbon in spring”")).to_be_focused()
    assert api_session(host, first["sessionId"])["title"] == "Lisbon in spring"

    # Keyboard: F2 on an entry starts renaming; Escape gives up and changes nothing.
    session_links(page).filter(has_text="Groceries").focus()
    page.keyboard.press("F2")
    expect(title).to_be_focused()
    page.keyboard.type("Something else")
    page.keyboard.press("Escape")
    expect(title).to_have_count(0)
    expect(session_titles(page)).to_have_text(["Groceries", "Lisbon in spring"])
    expect(page.get_by_role("button", name="Rename “Groceries”")).to_be_focused()

    # The tick saves too; spaces around the title are the server's to trim.
    page.keyboard.press("Enter")
    title.fill("  Weekly shop  ")
    page.get_by_role("button", name="Save title").click()
    expect(session_titles(page)).to_have_text(["Weekly shop", "Lisbon in spring"])

    # What the server stored is what a reload shows.
    page.reload()
    expect(session_titles(page)).to_have_text(["Weekly shop", "Lisbon in spring"])


def test_rename_refusals_read_as_words(host: RunningHost, page: Page) -> None:
    doomed = api_chat(host, "Soon gone")
    sign_in(page, host)
    page.get_by_role("button", name="Rename “Soon gone”").click()
    title = sidebar(page).get_by_role("textbox", name="Title")

    # Empty (the server's 400): the editor stays, says why, and keeps the keyboard.
    title.fill("   ")
    title.press("Enter")
    error = sidebar(page).locator(".rename-error")
    expect(error).to_have_text(TITLE_RULE)
    expect(title).to_have_attribute("aria-invalid", "true")
    expect(title).to_be_focused()

    # Too long (the server's 400 again).
    title.fill("x" * 101)
    title.press("Enter")
    expect(error).to_have_text(TITLE_RULE)
    screenshot(page, "rename-error.png")

    # Gone meanwhile (404).
    httpx.delete(f"{host.base_url}/api/sessions/{doomed['sessionId']}", headers=dev_headers(EMAIL))
    title.fill("A new name")
    title.press("Enter")
    expect(error).to_have_text("This conversation no longer exists; it may have been deleted.")
    page.keyboard.press("Escape")
    expect(session_titles(page)).to_have_text(["Soon gone"])


def test_rename_from_the_header(host: RunningHost, page: Page) -> None:
    chat = api_chat(host, "Untidy first message about a plan")
    sign_in(page, host)
    expect(page.get_by_role("button", name="Rename this conversation")).to_be_hidden()
    session_links(page).first.click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text("Untidy first message about a plan")

    rename = page.locator("#rename-chat")
    expect(rename).to_have_accessible_name("Rename “Untidy first message about a plan”")
    rename.click()
    title = page.get_by_role("main").get_by_role("textbox", name="Title")
    expect(title).to_be_focused()
    screenshot(page, "rename-header.png")
    page.keyboard.press("Escape")
    expect(heading).to_have_text("Untidy first message about a plan")
    expect(rename).to_be_focused()

    page.keyboard.press("Enter")
    title.fill("The plan")
    title.press("Enter")
    expect(heading).to_have_text("The plan")
    expect(session_titles(page)).to_have_text(["The plan"])
    expect(rename).to_be_focused()
    expect(rename).to_have_accessible_name("Rename “The plan”")
    assert api_session(host, chat["sessionId"])["title"] == "The plan"

    page.reload()
    expect(heading).to_have_text("The plan")
