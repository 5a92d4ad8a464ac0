"""Regenerate, versions and "Branch from here" in the web client (issue 24), against the real
local host with a scripted model (so each answer has its own text)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.fake_openai import FakeOpenAI, Stream
from tests.web.browser.support import (
    EMAIL,
    answers,
    api_session,
    contents,
    current_session_id,
    log_items,
    screenshot,
    scroller_overflow,
    send,
    session_titles,
    sign_in,
)
from tools.local.host import RunningHost, dev_headers

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("patient_expect")]

STORED = re.compile(".+")  # a message id: the answer is stored


def last_answer_text(page: Page) -> str:
    return contents(page, ".from-assistant")[-1]


def test_regenerate_the_last_answer_and_browse_its_versions(
    model_host: RunningHost, fake_model: FakeOpenAI, page: Page
) -> None:
    fake_model.script(
        Stream(("The first ", "answer.")),
        Stream(("A second ", "answer.")),
        Stream(("A third ", "answer.")),
    )
    sign_in(page, model_host)
    send(page, "Tell me something")
    answer = answers(page).last
    expect(answer.locator(".content")).to_have_text("The first answer.")
    expect(answer).to_have_attribute("data-message-id", STORED)
    # Only the last answer has Regenerate; nothing to browse yet.
    expect(answer.locator(".versions")).to_have_count(0)
    answer.get_by_role("button", name="Regenerate").click()
    expect(answers(page)).to_have_count(1)
    expect(answers(page).last.locator(".content")).to_have_text("A second answer.")
    answer = answers(page).last
    pager = answer.get_by_role("group", name="Versions of this answer")
    expect(pager.locator(".version-label")).to_have_text("2/2")
    expect(answer.get_by_role("button", name="Next version")).to_be_disabled()
    screenshot(page, "regenerate-desktop.png")

    answer.get_by_role("button", name="Previous version").click()
    expect(answer.locator(".content")).to_have_text("The first answer.")
    expect(pager.locator(".version-label")).to_have_text("1/2")
    # An earlier version is only read: its feedback and Regenerate belong to the current one.
    expect(answer.get_by_role("button", name="Regenerate")).to_be_hidden()
    expect(answer.get_by_role("button", name="Good answer")).to_be_hidden()
    answer.get_by_role("button", name="Next version").click()
    expect(answer.locator(".content")).to_have_text("A second answer.")
    expect(answer.get_by_role("button", name="Regenerate")).to_be_visible()

    # Again: three versions, stored as the API says, and a reload shows the same.
    answer.get_by_role("button", name="Regenerate").click()
    expect(answers(page).last.locator(".content")).to_have_text("A third answer.")
    expect(answers(page).last.locator(".version-label")).to_have_text("3/3")
    session = api_session(model_host, current_session_id(page))
    assert [m["content"] for m in session["messages"]] == ["Tell me something", "A third answer."]
    assert session["messages"][-1]["versions"] == 3
    page.reload()
    expect(log_items(page)).to_have_count(2)
    answer = answers(page).last
    expect(answer.locator(".version-label")).to_have_text("3/3")
    answer.get_by_role("button", name="Previous version").click()
    answer.get_by_role("button", name="Previous version").click()
    expect(answer.locator(".content")).to_have_text("The first answer.")

    # Once the conversation goes on, the earlier answer can no longer be regenerated.
    send(page, "And then?")
    expect(answers(page)).to_have_count(2)
    expect(answers(page).last).to_have_attribute("data-message-id", STORED)
    expect(answers(page).first.get_by_role("button", name="Regenerate")).to_be_hidden()
    expect(answers(page).last.get_by_role("button", name="Regenerate")).to_be_visible()


def test_a_failed_regenerate_keeps_the_answer_and_says_why(
    model_host: RunningHost, fake_model: FakeOpenAI, page: Page
) -> None:
    fake_model.script(Stream(("Keep ", "me.")))
    sign_in(page, model_host)
    send(page, "Question")
    answer = answers(page).last
    expect(answer).to_have_attribute("data-message-id", STORED)
    # The conversation is gone by the time Regenerate is pressed: the API's 404.
    deleted = httpx.delete(
        f"{model_host.base_url}/api/sessions/{current_session_id(page)}",
        headers=dev_headers(EMAIL),
    )
    assert deleted.status_code == 204
    answer.get_by_role("button", name="Regenerate").click()
    expect(page.locator("#chat-error")).to_contain_text("no longer exists")
    expect(answers(page).last.locator(".content")).to_have_text("Keep me.")
    expect(answers(page).last.locator(".feedback")).to_be_visible()


def test_branch_from_any_message_opens_the_new_conversation(
    model_host: RunningHost, fake_model: FakeOpenAI, page: Page
) -> None:
    fake_model.script(Stream(("Answer ", "one.")), Stream(("Answer ", "two.")))
    sign_in(page, model_host)
    send(page, "Question one")
    expect(answers(page).last).to_have_attribute("data-message-id", STORED)
    send(page, "Question two")
    expect(answers(page)).to_have_count(2)
    expect(answers(page).last).to_have_attribute("data-message-id", STORED)
    original = current_session_id(page)

    answers(page).first.get_by_role("button", name="Branch from here").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Question one (branch)")
    expect(log_items(page)).to_have_count(2)
    assert contents(page) == ["Question one", "Answer one."]
    branch = current_session_id(page)
    assert branch != original
    # The branch heads the list; the original is unchanged.
    expect(session_titles(page)).to_have_text(["Question one (branch)", "Question one"])
    assert len(api_session(model_host, original)["messages"]) == 4
    expect(page.locator("#chat-status")).to_have_text("Branched into “Question one (branch)”.")
    screenshot(page, "branch-desktop.png")

    # A question can be branched from too (hover or keyboard shows its button), and the branch
    # goes on as any conversation does.
    question = page.locator("#messages .from-user").first
    question.hover()
    question.get_by_role("button", name="Branch from here").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Question one (branch) (branch)")
    expect(log_items(page)).to_have_count(1)
    send(page, "A different turn")
    expect(answers(page).last.locator(".content")).to_have_text(re.compile("re: A different"))


def test_versions_and_branch_fit_a_phone(
    model_host: RunningHost, fake_model: FakeOpenAI, phone: Page
) -> None:
    fake_model.script(Stream(("One way ", "to say it.")), Stream(("Another way ", "to say it.")))
    sign_in(phone, model_host)
    send(phone, "Say it")
    answer = answers(phone).last
    expect(answer).to_have_attribute("data-message-id", STORED)
    answer.get_by_role("button", name="Regenerate").click()
    expect(answers(phone).last.locator(".version-label")).to_have_text("2/2")
    assert scroller_overflow(phone) == 0
    screenshot(phone, "regenerate-phone.png")
