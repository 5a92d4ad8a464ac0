"""A new conversation's model-written title (`event: title`) shows at once, in the header and
in the list, while the answer is still coming."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from tests.web.browser.support import (
    api_chat,
    api_session,
    current_session_id,
    screenshot,
    send,
    session_links,
    session_titles,
    sign_in,
)
from tools.local.host import RunningHost

pytestmark = pytest.mark.browser

FIRST = "Plan a weekend in Lisbon: museums, food and a day trip to Sintra"
RULE_TITLE = "Plan a weekend in Lisbon: museums, food and a day"  # the first-message rule
MODEL_TITLE = "echo[0]: Plan a weekend in Lisbon: museums, food and a day"  # cut at 60


def test_the_model_title_replaces_the_first_one_as_it_arrives(
    titled_host: RunningHost, page: Page
) -> None:
    sign_in(page, titled_host)
    # Record every title the header and the list entry show, and whether the answer was still
    # streaming then (aria-busy is on it until `done`).
    page.evaluate(
        """() => {
        window.__titles = [];
        const busy = () => Boolean(document.querySelector('#messages [aria-busy="true"]'));
        const record = (where, text) => {
            const last = window.__titles.filter(t => t[0] === where).pop();
            if (!last || last[1] !== text) window.__titles.push([where, text, busy()]);
        };
        new MutationObserver(() => record('header', document.getElementById('chat-title')
            .textContent)).observe(document.getElementById('chat-title'),
            {subtree: true, childList: true, characterData: true});
        new MutationObserver(() => {
            const entry = document.querySelector('#session-list .session-title');
            if (entry) record('list', entry.textContent);
        }).observe(document.getElementById('session-list'),
            {subtree: true, childList: true, characterData: true});
    }"""
    )
    send(page, FIRST)
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(MODEL_TITLE)
    expect(session_titles(page)).to_have_text([MODEL_TITLE])
    expect(page.locator("#messages .from-assistant .feedback")).to_be_visible()

    titles = page.evaluate("window.__titles")
    for where in ("header", "list"):
        shown = [(text, busy) for w, text, busy in titles if w == where]
        # First the first-message rule's title (from `event: session`), then the model's,
        # while the answer was still streaming: the `title` event, not the end of the turn.
        assert shown[0] == (RULE_TITLE, True), (where, shown)
        assert shown[-1] == (MODEL_TITLE, True), (where, shown)
    expect(page.locator("#rename-chat")).to_have_accessible_name(f"Rename “{MODEL_TITLE}”")
    screenshot(page, "live-title.png")

    # The title is the stored one: a reload shows the same.
    assert api_session(titled_host, current_session_id(page))["title"] == MODEL_TITLE
    page.reload()
    expect(heading).to_have_text(MODEL_TITLE)
    expect(session_titles(page)).to_have_text([MODEL_TITLE])

    # Later turns keep it (only a new conversation's first turn gets a model title).
    send(page, "And where to eat?")
    expect(page.locator("#messages .from-assistant")).to_have_count(2)
    expect(page.locator("#messages .from-assistant .feedback")).to_have_count(2)
    expect(heading).to_have_text(MODEL_TITLE)


def test_a_title_for_a_conversation_left_meanwhile_changes_only_its_list_entry(
    titled_host: RunningHost, page: Page
) -> None:
    api_chat(titled_host, "An existing conversation")
    sign_in(page, titled_host)
    expect(session_titles(page)).to_have_text(["echo[0]: An existing conversation"])

    # The answer is held back until the user has opened another conversation.
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/api/chat", hold)
    send(page, "A second conversation")
    page.wait_for_function("() => document.querySelector('#composer[aria-busy=\"true\"]')")
    session_links(page).first.click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text("echo[0]: An existing conversation")
    assert len(held) == 1
    held[0].fulfill(response=held[0].fetch())

    expect(session_titles(page)).to_have_text(
        ["echo[0]: A second conversation", "echo[0]: An existing conversation"]
    )
    expect(heading).to_have_text("echo[0]: An existing conversation")
    expect(page.locator("#messages .from-user .content")).to_have_text(["An existing conversation"])
