"""Thumbs up or down, with an optional comment, on the model's answers."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.web.browser.support import (
    answers,
    api_chat,
    api_session,
    json_error,
    screenshot,
    send,
    session_links,
    sign_in,
)
from tools.local.host import RunningHost

pytestmark = pytest.mark.browser


def feedback_of(host: RunningHost, session_id: str) -> list[dict[str, object] | None]:
    """Each answer's stored feedback (None when it has none)."""
    messages = api_session(host, session_id)["messages"]
    return [m.get("feedback") for m in messages if m["role"] == "assistant"]


def rating(answer: Locator) -> tuple[str | None, str | None]:
    up = answer.get_by_role("button", name="Good answer").get_attribute("aria-pressed")
    down = answer.get_by_role("button", name="Bad answer").get_attribute("aria-pressed")
    return up, down


def test_rate_comment_change_and_remove_survive_a_reload(host: RunningHost, page: Page) -> None:
    chat = api_chat(host, "First question")
    api_chat(host, "Second question", sessionId=chat["sessionId"])
    session_id = chat["sessionId"]
    sign_in(page, host)
    session_links(page).first.click()
    expect(answers(page)).to_have_count(2)
    first, second = answers(page).nth(0), answers(page).nth(1)
    up = first.get_by_role("button", name="Good answer")
    down = first.get_by_role("button", name="Bad answer")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(down).to_have_attribute("aria-pressed", "false")
    # Only a rated answer takes a comment.
    expect(first.get_by_role("button", name="Add a comment")).to_be_hidden()

    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(first.get_by_role("status")).to_have_text("Rated as a good answer.")
    stored = feedback_of(host, session_id)
    assert stored[0] is not None and stored[0]["rating"] == "up" and stored[1] is None

    # A comment, in a small form: labelled, counted, at most 2000 characters.
    first.get_by_role("button", name="Add a comment").click()
    comment = first.get_by_role("textbox", name="Comment (optional)")
    expect(comment).to_be_focused()
    expect(comment).to_have_attribute("maxlength", "2000")
    comment.fill("Clear and short.")
    expect(first.locator(".comment-count")).to_have_text("16 of 2000 characters")
    screenshot(page, "feedback.png")
    first.get_by_role("button", name="Save comment").click()
    expect(comment).to_be_hidden()
    expect(first.get_by_text("Your comment: Clear and short.")).to_be_visible()
    expect(first.get_by_role("button", name="Edit comment")).to_be_focused()
    stored = feedback_of(host, session_id)
    assert stored[0] is not None
    assert (stored[0]["rating"], stored[0]["comment"]) == ("up", "Clear and short.")

    # Changing the rating keeps the comment.
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    stored = feedback_of(host, session_id)
    assert stored[0] is not None
    assert (stored[0]["rating"], stored[0]["comment"]) == ("down", "Clear and short.")

    # The other answer, from the keyboard.
    second.get_by_role("button", name="Good answer").focus()
    page.keyboard.press("Enter")
    expect(second.get_by_role("button", name="Good answer")).to_have_attribute(
        "aria-pressed", "true"
    )

    # What is stored is what a reload shows.
    page.reload()
    expect(answers(page)).to_have_count(2)
    first, second = answers(page).nth(0), answers(page).nth(1)
    expect(first.get_by_role("button", name="Bad answer")).to_have_attribute("aria-pressed", "true")
    assert rating(first) == ("false", "true")
    assert rating(second) == ("true", "false")
    expect(first.get_by_text("Your comment: Clear and short.")).to_be_visible()

    # Escape closes the comment form without saving; the keyboard goes back to its button.
    first.get_by_role("button", name="Edit comment").click()
    first.get_by_role("textbox", name="Comment (optional)").fill("Changed my mind")
    page.keyboard.press("Escape")
    expect(first.get_by_role("textbox", name="Comment (optional)")).to_be_hidden()
    expect(first.get_by_role("button", name="Edit comment")).to_be_focused()
    expect(first.get_by_text("Your comment: Clear and short.")).to_be_visible()

    # Pressing the pressed button takes the rating (and its comment) back.
    first.get_by_role("button", name="Bad answer").click()
    expect(first.get_by_role("button", name="Bad answer")).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(first.get_by_text("Your comment:")).to_be_hidden()
    assert feedback_of(host, session_id)[0] is None
    page.reload()
    expect(answers(page)).to_have_count(2)
    assert rating(answers(page).nth(0)) == ("false", "false")


def test_a_new_answer_takes_feedback_and_failures_read_as_words(
    host: RunningHost, page: Page
) -> None:
    sign_in(page, host)
    send(page, "Rate me")
    answer = answers(page).first
    up = answer.get_by_role("button", name="Good answer")
    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")

    page.route("**/feedback", json_error(404, "not_found"))
    answer.get_by_role("button", name="Bad answer").click()
    expect(answer.get_by_role("alert")).to_have_text(
        "This answer no longer exists; the conversation may have been deleted."
    )
    # Nothing changed: the stored rating still shows.
    expect(up).to_have_attribute("aria-pressed", "true")

    page.unroute("**/feedback")
    page.route("**/feedback", json_error(503, "storage_unavailable", {"Retry-After": "3"}))
    answer.get_by_role("button", name="Good answer").click()
    expect(answer.get_by_role("alert")).to_contain_text("Try again in 3 seconds")
    expect(up).to_have_attribute("aria-pressed", "true")
