"""Sharing in the web client, with two users (and a third the link was not meant for): Alice
shares a conversation with Bob for a week, Bob opens the link read-only and continues it in a
conversation of his own, Alice sees that Bob opened it and revokes it, and the link stops
working. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.browser.support import (
    DESKTOP,
    answers,
    api_chat,
    open_page,
    screenshot,
    scroller_overflow,
    send,
    session_titles,
    sign_in,
)
from tools.local.host import RunningHost, dev_headers

pytestmark = pytest.mark.browser

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


@pytest.fixture
def second(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser, DESKTOP)


@pytest.fixture
def third(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser, DESKTOP)


def test_share_open_continue_see_views_and_revoke(
    host: RunningHost, page: Page, second: Page, third: Page
) -> None:
    # Alice talks, then shares the conversation with Bob for a week.
    sign_in(page, host, ALICE)
    send(page, "Plan the offsite")
    expect(answers(page)).to_have_count(1)
    expect(answers(page).first).to_contain_text("echo[0]:Plan the offsite")
    page.get_by_role("button", name="Share", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Only the people I name")).to_be_checked()
    dialog.get_by_label("People to share with").fill("Bob@Example.com")
    dialog.get_by_label("Link works for").select_option("7")
    dialog.get_by_role("button", name="Create link").click()
    link_box = dialog.get_by_label("Link", exact=True)
    expect(link_box).to_be_focused()
    link = link_box.input_value()
    assert "#share=sh_" in link
    screenshot(page, "sharing-1-link.png")
    dialog.get_by_role("button", name="Close").click()
    shared = page.get_by_role("list", name="Shared")
    expect(shared.get_by_role("listitem")).to_have_count(1)
    expect(shared).to_contain_text("With bob@example.com")
    expect(shared.get_by_role("button", name="0 views")).to_be_visible()

    # A later message is not part of what was shared.
    send(page, "Not for Bob")
    expect(answers(page)).to_have_count(2)

    # Bob opens the link: read-only, by Alice, without the later turn.
    sign_in(second, host, BOB)
    second.goto(link)
    expect(second.get_by_role("heading", name="Plan the offsite")).to_be_visible()
    expect(second.get_by_text("Shared by alice (alice@example.com)")).to_be_visible()
    shared_log = second.get_by_role("log", name="Plan the offsite")
    expect(shared_log.locator(".message")).to_have_count(2)
    expect(shared_log).not_to_contain_text("Not for Bob")
    expect(shared_log.locator(".who")).to_have_text(["alice", "Parley"])  # not "You"
    expect(second.get_by_role("textbox", name="Message")).to_be_hidden()
    screenshot(second, "sharing-2-read-only.png")

    # ... and continues it as a conversation of his own.
    second.get_by_role("button", name="Continue this conversation").click()
    expect(second.get_by_role("heading", name="Plan the offsite")).to_be_visible()
    expect(second.locator("#messages .message")).to_have_count(2)
    expect(session_titles(second)).to_have_text(["Plan the offsite"])
    send(second, "Go on")
    expect(answers(second)).to_have_count(2)
    expect(answers(second).last).to_contain_text("echo[2]:Go on")
    screenshot(second, "sharing-3-continued.png")

    # Carol was not named: the link does not work for her.
    sign_in(third, host, CAROL)
    third.goto(link)
    expect(third.get_by_role("alert").filter(has_text="This link does not work")).to_be_visible()
    expect(third.get_by_role("button", name="Continue this conversation")).to_be_hidden()

    # Alice sees who opened it (Bob, twice: reading and continuing), then revokes it.
    page.reload()
    views = shared.get_by_role("button", name="2 views")
    expect(views).to_be_visible()
    views.click()
    expect(views).to_have_attribute("aria-expanded", "true")
    expect(shared.locator(".share-views li")).to_have_count(2)
    expect(shared.locator(".share-views")).to_contain_text("bob@example.com")
    expect(shared).not_to_contain_text("carol@example.com")
    screenshot(page, "sharing-4-views.png")
    shared.get_by_role("button", name="Revoke the link to “Plan the offsite”").click()
    expect(shared.get_by_role("listitem")).to_have_count(0)
    expect(page.get_by_text("Nothing shared.")).to_be_visible()

    # From now on the link is dead for Bob too; his own copy stays.
    second.goto(link)
    second.reload()
    expect(second.get_by_role("alert").filter(has_text="This link does not work")).to_be_visible()
    expect(session_titles(second)).to_have_text(["Plan the offsite"])
    screenshot(second, "sharing-5-revoked.png")


def test_a_shared_conversation_fits_a_phone(host: RunningHost, phone: Page) -> None:
    long_line = "https://example.com/" + "a-very-long-path-segment/" * 12
    chat = api_chat(host, f"Read {long_line}", email=ALICE)
    made = httpx.post(
        f"{host.base_url}/api/sessions/{chat['sessionId']}/shares",
        json={"audience": "signed_in"},
        headers=dev_headers(ALICE),
        timeout=10,
    )
    share_id = made.json()["shareId"]
    sign_in(phone, host, BOB)
    phone.goto(f"{host.base_url}/#share={share_id}")
    expect(phone.get_by_role("button", name="Continue this conversation")).to_be_visible()
    assert scroller_overflow(phone) == 0  # nothing wider than the screen
    screenshot(phone, "sharing-6-phone.png")
