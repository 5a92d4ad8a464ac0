"""Pinning a conversation from the list: it goes to the top, stays there across turns and
reloads, and unpinning puts it back by its time."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.web.browser.support import (
    api_chat,
    api_session,
    send,
    session_links,
    session_titles,
    sign_in,
)
from tools.local.host import RunningHost

pytestmark = pytest.mark.browser


def test_pin_and_unpin_from_the_list(host: RunningHost, page: Page) -> None:
    oldest = api_chat(host, "Tax return")
    api_chat(host, "Groceries")
    api_chat(host, "Holiday")
    sign_in(page, host)
    expect(session_titles(page)).to_have_text(["Holiday", "Groceries", "Tax return"])

    pin = page.get_by_role("button", name="Pin “Tax return”")
    expect(pin).to_have_attribute("aria-pressed", "false")
    pin.click()
    expect(session_titles(page)).to_have_text(["Tax return", "Holiday", "Groceries"])
    unpin = page.get_by_role("button", name="Unpin “Tax return”")
    expect(unpin).to_have_attribute("aria-pressed", "true")
    expect(unpin).to_be_focused()
    assert api_session(host, oldest["sessionId"])["pinned"] is True

    # A turn in an unpinned conversation brings it up, but below the pinned one.
    session_links(page).filter(has_text="Groceries").click()
    send(page, "and milk")
    expect(session_titles(page)).to_have_text(["Tax return", "Groceries", "Holiday"])
    page.reload()
    expect(session_titles(page)).to_have_text(["Tax return", "Groceries", "Holiday"])

    # Unpinned, it goes back among the others by its time (the oldest).
    page.get_by_role("button", name="Unpin “Tax return”").click()
    expect(session_titles(page)).to_have_text(["Groceries", "Holiday", "Tax return"])
    assert api_session(host, oldest["sessionId"])["pinned"] is False
