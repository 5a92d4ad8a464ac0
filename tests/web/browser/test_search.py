"""Searching the conversations: as you type (from 3 characters, 400 ms after the last key or at
once on Enter, one request in flight, the stale one cancelled), the matches marked, "More
results", the archived view, and opening a result at its message."""

from __future__ import annotations

import contextlib
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.web.browser.support import (
    StoredHost,
    api_chat,
    archive_everything,
    log_items,
    message_id,
    page_scroll,
    recorded_requests,
    screenshot,
    scroller_overflow,
    session_titles,
    sidebar,
    sign_in,
)

pytestmark = pytest.mark.browser

FLASH = re.compile(r"\bflash\b")


def search_box(page: Page) -> Locator:
    return page.get_by_role("searchbox", name="Search conversations")


def results(page: Page) -> Locator:
    return page.locator("#search-results > li")


def queries(urls: list[str]) -> list[str]:
    return [parse_qs(urlsplit(url).query)["q"][0] for url in urls]


def test_search_as_you_type_marks_matches_and_opens_the_message(
    sqlite_host: StoredHost, page: Page
) -> None:
    host = sqlite_host.host
    trip = api_chat(host, "Planning a trip to Lisbon in spring")
    api_chat(host, "What to pack", sessionId=trip["sessionId"])
    api_chat(host, "A recipe for <b>pasteis</b> de nata, as made in LISBON")
    api_chat(host, "Something unrelated")
    sign_in(page, host)
    expect(session_titles(page)).to_have_count(3)

    box = search_box(page)
    with recorded_requests(page, r"/api/search\?") as searches:
        box.press_sequentially("l")
        # One character is not a search: the list stays, nothing was asked.
        expect(session_titles(page)).to_have_count(3)
        box.press_sequentially("isbon")
        expect(results(page)).to_have_count(2)
    # Typing is debounced: fewer searches than keystrokes, none shorter than 3 characters,
    # and the last for the whole word.
    assert 1 <= len(searches) < 6
    assert all(len(q) >= 3 for q in queries(searches))
    assert queries(searches)[-1] == "lisbon"
    expect(page.locator("#search-status")).to_have_text("2 conversations found for “lisbon”.")
    expect(sidebar(page).locator("#session-list")).to_be_hidden()

    # Matches are marked in text nodes: the user's "<b>" is text, never an element.
    recipe = results(page).filter(has_text="recipe")
    # The snippets of the user's message and of the answer that echoed it (the title, cut at
    # 50 characters, stops before the word).
    expect(recipe.locator("mark")).to_have_text(["LISBON", "LISBON"])
    expect(recipe.locator(".match-link")).to_contain_text(["<b>pasteis</b>", "<b>pasteis</b>"])
    expect(recipe.locator(".match-role")).to_have_text(["You:", "Parley:"])
    expect(page.locator("#search-results b")).to_have_count(0)
    trip_result = results(page).filter(has_text="Planning a trip")
    expect(trip_result.locator(".match-link mark").first).to_have_text("Lisbon")
    screenshot(page, "search.png")

    # Choosing a match opens the conversation at that message, highlighted and focused.
    trip_result.locator(".match-link").first.click()
    target = page.locator(f'#messages > li[data-message-id="{message_id(trip["sessionId"], 1)}"]')
    expect(target).to_be_in_viewport()
    expect(target).to_have_class(FLASH)
    expect(target).to_be_focused()
    expect(page.get_by_role("heading", level=1)).to_have_text("Planning a trip to Lisbon in spring")
    expect(target).not_to_have_class(FLASH, timeout=10_000)  # briefly

    # Escape empties the box and brings the list back.
    box.focus()
    page.keyboard.press("Escape")
    expect(box).to_have_value("")
    expect(results(page)).to_have_count(0)
    expect(session_titles(page)).to_have_count(3)


def test_search_pages_and_follows_the_archived_view(
    sqlite_host: StoredHost, sqlite_env: dict[str, str], page: Page
) -> None:
    host = sqlite_host.host
    api_chat(host, "Notes about Kilimanjaro, archived long ago")
    assert archive_everything(sqlite_env["SQLITE_PATH"]) == 1
    for n in range(23):
        api_chat(host, f"Common phrase number {n}")
    api_chat(host, "Common phrase of somebody else", email="bob@example.com")
    sign_in(page, host)

    box = search_box(page)
    box.fill("common phrase")
    expect(results(page)).to_have_count(20)
    expect(page.locator("#search-status")).to_have_text(
        "20 conversations found for “common phrase”: more below."
    )
    more = page.get_by_role("button", name="More results")
    more.click()
    expect(results(page)).to_have_count(23)
    expect(more).to_be_hidden()
    expect(page.locator("#search-results")).not_to_contain_text("somebody else")
    titles = results(page).locator(".result-link .session-title").all_text_contents()
    assert len(set(titles)) == 23  # each once, across the pages

    # The search follows the view: active conversations, or archived ones.
    box.fill("kilimanjaro")
    expect(page.locator("#search-status")).to_have_text("No conversations match “kilimanjaro”.")
    page.get_by_role("button", name="Archived").click()
    expect(results(page)).to_have_count(1)
    expect(results(page).first).to_contain_text("Archived")
    expect(page.locator("#search-status")).to_have_text(
        "1 archived conversation found for “kilimanjaro”."
    )
    results(page).first.locator(".result-link").click()
    expect(page.locator("#chat-meta")).to_contain_text("Archived")
    page.get_by_role("button", name="Chats", exact=True).click()
    expect(page.locator("#search-status")).to_have_text("No conversations match “kilimanjaro”.")


def test_a_result_deep_in_a_long_conversation_loads_pages_until_it_is_there(
    sqlite_host: StoredHost, page: Page
) -> None:
    def text(seq: int, role: str) -> str:
        return "The word zanzibar, once" if seq == 7 else f"{role} message {seq}"

    session_id = sqlite_host.seed_conversation(900, title="Long chat", content=text)
    sign_in(page, sqlite_host.host)
    with recorded_requests(page, r"/messages\?") as pages:
        search_box(page).fill("zanzibar")
        expect(results(page)).to_have_count(1)
        results(page).locator(".match-link").click()
        target = page.locator(f'#messages > li[data-message-id="{message_id(session_id, 7)}"]')
        expect(target).to_be_in_viewport()
        expect(target).to_be_focused()
        expect(target).to_contain_text("The word zanzibar, once")
    # The newest 200 came with the session; the rest in pages until message 7 was there.
    assert len(pages) >= 1
    expect(log_items(page)).to_have_count(900)
    assert page_scroll(page) == [0, 0]  # only the log scrolled to the message
    screenshot(page, "search-deep-result.png")


def test_search_at_phone_width(sqlite_host: StoredHost, phone: Page) -> None:
    host = sqlite_host.host
    chat = api_chat(host, "Where is the best pastry in Porto? Asking for a very long trip")
    sign_in(phone, host)
    toggle = phone.get_by_role("button", name="Chats", exact=True).first
    toggle.click()
    expect(phone.get_by_role("search", name="Search conversations")).to_be_visible()
    search_box(phone).fill("pastry")
    expect(results(phone)).to_have_count(1)
    assert scroller_overflow(phone) == 0
    screenshot(phone, "search-phone.png")
    results(phone).locator(".match-link").first.click()
    # The panel closes on the conversation, at the message.
    expect(toggle).to_have_attribute("aria-expanded", "false")
    target = phone.locator(f'#messages > li[data-message-id="{message_id(chat["sessionId"], 1)}"]')
    expect(target).to_be_in_viewport()
    assert scroller_overflow(phone) == 0


def test_a_typed_word_sends_one_search_and_a_stale_one_is_cancelled(
    sqlite_host: StoredHost, page: Page
) -> None:
    """The requests a typed word sends, counted on the page's own clock (Playwright's, so no
    test waits for real time): nothing below 3 characters, one search 400 ms after the last key
    whatever the gaps between keys, one at once on Enter (not again when the pause ends), and
    never two in flight: a newer search cancels the one still waiting for its answer."""
    host = sqlite_host.host
    api_chat(host, "Planning a trip to Lisbon in spring")
    api_chat(host, "Pack light for Porto")
    page.clock.install()
    sign_in(page, host)
    box = search_box(page)

    # Each search request's outcome: answered, or cancelled by the page. The browser reports a
    # cancellation a moment after the page started the next request, so "one in flight" is
    # checked as: the stale one is cancelled, and none is left waiting.
    pending: list[Any] = []
    failed: list[str] = []

    def sent(request: Any) -> None:
        if "/api/search?" in request.url:
            pending.append(request)

    def done(request: Any) -> None:
        if request in pending:
            pending.remove(request)

    def cancelled(request: Any) -> None:
        if request in pending:
            pending.remove(request)
            failed.append(parse_qs(urlsplit(request.url).query)["q"][0])

    page.on("request", sent)
    page.on("requestfinished", done)
    page.on("requestfailed", cancelled)
    with recorded_requests(page, r"/api/search\?") as searches:
        # Two characters, however long the pause: no search.
        box.press_sequentially("li")
        page.clock.run_for(2000)
        assert searches == []
        # Keys 300 ms apart (the old debounce's gap): still one search, 400 ms after the last.
        for key in "sbon":
            box.press_sequentially(key)
            page.clock.run_for(300)
        assert searches == []
        page.clock.run_for(100)
        expect(results(page)).to_have_count(1)
        assert queries(searches) == ["lisbon"]

        # Enter searches at once, and the pause that follows adds nothing.
        box.fill("")
        box.press_sequentially("porto")
        box.press("Enter")
        expect(results(page)).to_have_count(1)
        page.clock.run_for(2000)
        assert queries(searches) == ["lisbon", "porto"]

    # A search still waiting for its answer when the next one starts is cancelled.
    held: list[Any] = []
    stale = re.compile(r"/api/search\?q=trip&")

    def hold(route: Any) -> None:  # its answer never comes
        held.append(route)

    page.route(stale, hold)
    box.fill("")
    box.press_sequentially("trip")
    with page.expect_request(stale):
        page.clock.run_for(400)
    box.press_sequentially(" lisbon")
    with page.expect_event("requestfailed", lambda r: bool(stale.search(r.url))):
        page.clock.run_for(400)
    expect(results(page)).to_have_count(1)
    expect(page.locator("#search-status")).to_contain_text("trip lisbon")
    # The words are marked where they stand whole, in any order (not "trip" in "tripe").
    expect(results(page).first.locator(".result-link mark")).to_have_text(["trip", "Lisbon"])
    assert failed == ["trip"]
    # The held one was cancelled, not left waiting (the last one may still be finishing).
    assert [r.url for r in pending if stale.search(r.url)] == []
    page.unroute(stale)
    for route in held:
        with contextlib.suppress(Exception):  # the page already gave up on it
            route.abort()
