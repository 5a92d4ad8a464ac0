"""A 2,000-message conversation: the newest page first, older pages as the reader scrolls up,
and what is on screen stays where it is while they go in above it. On both stores."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.web.browser.support import (
    StoredHost,
    log_items,
    message_id,
    page_scroll,
    recorded_requests,
    screenshot,
    session_links,
    sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:Unverified HTTPS request")]

MESSAGES = 2000
FIRST_PAGE = 200  # MAX_SESSION_MESSAGES, the host's default


def scroll_to_top_and_measure(page: Page) -> dict[str, object]:
    """Scroll the log to its top and, in the same task (before anything can load), say which
    message is first and where it is on screen."""
    return dict(
        page.evaluate(
            """() => {
            const scroller = document.getElementById('scroller');
            scroller.scrollTop = 0;
            const first = document.querySelector('#messages > li');
            return {id: first.dataset.messageId, top: first.getBoundingClientRect().top};
        }"""
        )
    )


def top_of(page: Page, message: str) -> float:
    return float(
        page.locator(f'#messages > li[data-message-id="{message}"]').evaluate(
            "node => node.getBoundingClientRect().top"
        )
    )


def test_scrolling_up_loads_older_messages_without_moving_the_view(
    stored_host: StoredHost, page: Page
) -> None:
    session_id = stored_host.seed_conversation(MESSAGES, title="A very long conversation")
    host = stored_host.host
    sign_in(page, host)
    with recorded_requests(page, r"/messages\?") as pages:
        session_links(page).filter(has_text="A very long conversation").click()
        items = log_items(page)
        expect(items).to_have_count(FIRST_PAGE)
        expect(items.last).to_contain_text(f"Answer {MESSAGES}")
        expect(items.last).to_be_in_viewport()  # opened at the end
        assert pages == []
        older = page.get_by_role("button", name="Load earlier messages")
        expect(older).to_be_attached()

        # Scrolling to the top loads the page before the oldest message shown.
        before = scroll_to_top_and_measure(page)
        assert before["id"] == message_id(session_id, MESSAGES - FIRST_PAGE + 1)
        expect(items).to_have_count(FIRST_PAGE + 50)
        # ... and the message that was at the top has not moved on screen.
        assert abs(top_of(page, str(before["id"])) - float(before["top"])) <= 1  # type: ignore[arg-type]
        assert page.locator("#scroller").evaluate("s => s.scrollTop") > 0
        query = parse_qs(urlsplit(pages[0]).query)
        assert query["before"] == [before["id"]]
        screenshot(page, f"long-conversation-{stored_host.backend}.png")

        # The button does the same from the keyboard.
        older.focus()
        page.keyboard.press("Enter")
        expect(items).to_have_count(FIRST_PAGE + 100)

        # Up and up, to the very first message.
        count = FIRST_PAGE + 100
        while count < MESSAGES:
            before = scroll_to_top_and_measure(page)
            page.wait_for_function(
                "n => document.querySelectorAll('#messages > li').length > n", arg=count
            )
            count = items.count()
            assert abs(top_of(page, str(before["id"])) - float(before["top"])) <= 1  # type: ignore[arg-type]
        assert count == MESSAGES
        expect(older).to_be_hidden()
        expect(items.first).to_contain_text("Question 1")

    # Every message once, in order; every page asked for what came just before the last.
    ids = page.locator("#messages > li").evaluate_all(
        "nodes => nodes.map(n => n.dataset.messageId)"
    )
    assert ids == [message_id(session_id, seq) for seq in range(1, MESSAGES + 1)]
    befores = [parse_qs(urlsplit(url).query)["before"][0] for url in pages]
    assert len(befores) == len(set(befores)) == (MESSAGES - FIRST_PAGE) // 50
    assert page_scroll(page) == [0, 0]  # the log scrolled, never the page
