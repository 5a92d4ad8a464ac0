"""Stop, a reload that resumes a streaming answer, and an interrupted answer in the web client
(issue 24), against the real local host with a scripted model that holds its answer part-way
until the test lets it go (nothing sleeps)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Page, expect

from tests.support.fake_openai import FakeOpenAI, Stream
from tests.web.browser.support import (
    answers,
    api_session,
    current_session_id,
    log_items,
    screenshot,
    send,
    sign_in,
)
from tools.local.host import RunningHost

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("patient_expect")]

STORED = re.compile(".+")  # a message id: the answer is stored
T = TypeVar("T")


def poll(check: Callable[[], T | None], timeout_s: float = 15.0) -> T:
    """Ask until ``check`` answers (a result, not a time, is waited for), within a bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(0.02)
    raise AssertionError("no result within the bound")


def streaming_answer(host: RunningHost, session_id: str, text: str) -> dict[str, Any] | None:
    """The session's last message once the server has stored ``text`` of it."""
    last = api_session(host, session_id)["messages"][-1]
    return last if last["role"] == "assistant" and last["content"] == text else None


def test_stop_keeps_the_text_so_far_as_a_stopped_answer(
    model_host: RunningHost, fake_model: FakeOpenAI, page: Page
) -> None:
    held = Stream(("Once ", "upon ", "a ", "time."), pause_after=2)
    fake_model.script(held)
    sign_in(page, model_host)
    send(page, "Tell me a long story")
    answer = answers(page).last
    expect(answer.locator(".content")).to_have_text("Once upon")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_enabled()
    expect(page.get_by_role("button", name="Send")).to_be_hidden()
    stop.click()
    # The stream ends with the stored answer: its text so far, marked as stopped.
    expect(answer.locator(".status-badge")).to_have_text("Stopped")
    expect(answer).to_have_attribute("data-message-id", STORED)
    expect(answer.locator(".content")).to_have_text("Once upon")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(answer.get_by_role("button", name="Regenerate")).to_be_visible()
    screenshot(page, "answers-stopped.png")
    stored = api_session(model_host, current_session_id(page))["messages"][-1]
    assert (stored["status"], stored["content"]) == ("stopped", "Once upon ")
    page.reload()
    expect(log_items(page)).to_have_count(2)
    expect(answers(page).last.locator(".status-badge")).to_have_text("Stopped")


def test_a_reload_during_an_answer_follows_it_to_its_end(
    model_host: RunningHost, fake_model: FakeOpenAI, page: Page
) -> None:
    held = Stream(("The answer ", "so far", ", and the rest."), pause_after=2)
    fake_model.script(held)
    sign_in(page, model_host)
    send(page, "A question worth waiting for")
    expect(answers(page).last.locator(".content")).to_have_text("The answer so far")
    session_id = current_session_id(page)
    # The server has stored the answer as it grows; the page goes away and comes back.
    page.reload()
    expect(log_items(page)).to_have_count(2)
    answer = answers(page).last
    expect(answer.locator(".content")).to_have_text("The answer so far")
    expect(answer).to_have_class(re.compile("streaming"))
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    screenshot(page, "answers-resumed.png")
    held.gate.set()  # the model goes on: the followed answer grows to its end
    expect(answer.locator(".content")).to_have_text("The answer so far, and the rest.")
    expect(answer).not_to_have_class(re.compile("streaming"))
    expect(answer.get_by_role("button", name="Good answer")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    stored = api_session(model_host, session_id)["messages"][-1]
    assert (stored["status"], stored["content"]) == ("complete", "The answer so far, and the rest.")


def test_stop_after_a_reload_stops_the_followed_answer(
    model_host: RunningHost, fake_model: FakeOpenAI, page: Page
) -> None:
    fake_model.script(Stream(("Going ", "on ", "and on"), pause_after=2))
    sign_in(page, model_host)
    send(page, "Ramble")
    expect(answers(page).last.locator(".content")).to_have_text("Going on")
    page.reload()
    expect(answers(page).last).to_have_class(re.compile("streaming"))
    page.get_by_role("button", name="Stop").click()
    expect(answers(page).last.locator(".status-badge")).to_have_text("Stopped")
    expect(answers(page).last.locator(".content")).to_have_text("Going on")
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_an_answer_that_broke_off_is_interrupted_and_can_be_regenerated(
    model_host: RunningHost, fake_model: FakeOpenAI, page: Page
) -> None:
    # The model says two pieces, waits, then fails: by then the answer is stored as it grew.
    broken = Stream(("Half ", "an answer", " never said"), pause_after=2, fail_after=2)
    fake_model.script(broken, Stream(("A whole ", "answer.")))
    sign_in(page, model_host)
    send(page, "Try your best")
    answer = answers(page).last
    expect(answer.locator(".content")).to_have_text("Half an answer")
    session_id = current_session_id(page)
    stored = poll(lambda: streaming_answer(model_host, session_id, "Half an answer"))
    assert stored["status"] == "streaming"
    broken.gate.set()
    expect(answer.locator(".status-badge")).to_have_text("Interrupted")
    expect(answer.locator(".content")).to_have_text("Half an answer")
    expect(page.locator("#chat-error")).to_contain_text("Regenerate it to try again")
    expect(answer).to_have_attribute("data-message-id", STORED)
    screenshot(page, "answers-interrupted.png")
    answers(page).last.get_by_role("button", name="Regenerate").click()
    expect(answers(page).last.locator(".content")).to_have_text("A whole answer.")
    expect(answers(page).last.locator(".status-badge")).to_have_count(0)
    expect(answers(page).last.locator(".version-label")).to_have_text("2/2")
