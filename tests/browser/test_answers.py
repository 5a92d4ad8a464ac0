"""The chat view while answers stream (issue 24): rendering that keeps up with long answers,
the waiting state, right-to-left text, a draft per conversation, plain-text titles and
snippets, the delete dialog on a phone, and two conversations streaming at once.

Timings are measured inside the page (``performance.now()``); nothing sleeps.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.support import answers, screenshot, send, sign_in
from tests.support.host import RunningHost

pytestmark = pytest.mark.browser

# Send a message of the given length and resolve, in the page, to the milliseconds from the
# submit to the whole answer shown (the answer item gets its stored id once it is complete).
MEASURE_ANSWER = """async (text) => {
    const log = document.getElementById('messages');
    const before = log.querySelectorAll('.from-assistant').length;
    document.getElementById('composer-input').value = text;
    const start = performance.now();
    const finished = new Promise((resolve) => {
        const check = () => {
            const answers = log.querySelectorAll('.from-assistant');
            const last = answers[answers.length - 1];
            return answers.length > before && last.dataset.messageId ? last : null;
        };
        new MutationObserver((_, observer) => {
            const last = check();
            if (last) {
                observer.disconnect();
                resolve([performance.now() - start, last.querySelector('.content').innerText]);
            }
        }).observe(log, {subtree: true, childList: true, attributeFilter: ['data-message-id']});
    });
    document.getElementById('composer').requestSubmit();
    return await finished;
}"""


def markdown_text(length: int) -> str:
    """About ``length`` characters of a typical answer: paragraphs, emphasis, lists, code."""
    block = (
        "Streaming answers should **appear as fast** as the server sends them, with `code`, "
        "*emphasis* and lists:\n\n- one item of the list\n- another item\n\n"
    )
    ending = f"That was {length} characters."
    return block * ((length - len(ending)) // len(block)) + ending


def test_a_long_answer_takes_time_in_proportion_to_its_length(
    host: RunningHost, page: Page
) -> None:
    sign_in(page, host)
    timings: dict[int, float] = {}
    # Each length twice, taking the faster: the machine is shared, and one slow moment must
    # not decide the ratio either way.
    for length in (2_000, 16_000, 2_000, 16_000):
        page.get_by_role("button", name="New chat").click()
        text = markdown_text(length)
        elapsed, shown = page.evaluate(MEASURE_ANSWER, text)
        timings[length] = min(elapsed, timings.get(length, elapsed))
        # The whole answer was shown, as Markdown (no list marker left as text).
        assert shown.rstrip().endswith(f"That was {length} characters."), shown[-200:]
        assert "**" not in shown and len(shown) > length * 0.8
    screenshot(page, "answers-long.png")
    ratio = timings[16_000] / timings[2_000]
    print(f"2k: {timings[2_000]:.0f} ms, 16k: {timings[16_000]:.0f} ms, ratio {ratio:.1f}")
    # Eight times the text: linear rendering takes about eight times as long (less, with the
    # fixed costs of a turn); rendering all of it again on every piece takes far more.
    assert ratio < 10, f"2k: {timings[2_000]:.0f} ms, 16k: {timings[16_000]:.0f} ms"


def test_an_answer_shows_it_is_coming_before_its_first_word(host: RunningHost, page: Page) -> None:
    sign_in(page, host)
    # The request waits in the browser until the test lets it go: the time before a slow
    # model's first word, with the real server behind it.
    held: list[Route] = []
    page.route("**/api/chat", lambda route: held.append(route))
    send(page, "Are you there?")
    answer = answers(page).last
    expect(answer.locator(".waiting")).to_be_visible()
    expect(answer.locator(".waiting")).to_contain_text("Thinking")
    expect(answer).to_have_attribute("aria-busy", "true")
    screenshot(page, "answers-waiting.png")
    held[0].continue_()
    expect(answer.locator(".content")).to_have_text("echo[0]: Are you there?")
    expect(answer.locator(".waiting")).to_have_count(0)
    expect(answer).not_to_have_attribute("aria-busy", "true")
