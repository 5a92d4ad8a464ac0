"""The web client (web/) in a real Chromium against the real local host (issue 9).

Every test drives the page the way a person does: sign in with the dev identity, type, press
Enter, click. Waiting is Playwright's auto-waiting ``expect``; nothing sleeps.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.fake_openai import FakeOpenAI, Stream
from tests.web.browser.support import (
    EMAIL,
    answers,
    api_chat,
    archive_everything,
    composer,
    contents,
    current_session_id,
    error_alert,
    json_error,
    log_items,
    screenshot,
    scroller_overflow,
    send,
    session_links,
    session_titles,
    sign_in,
)
from tools.local.host import RunningHost, dev_headers, run_host

pytestmark = pytest.mark.browser


# ---------------------------------------------------------------- the main path


def test_an_answer_grows_on_screen_while_the_model_writes_it(
    model_host: RunningHost, fake_model: FakeOpenAI, page: Page
) -> None:
    # The model holds its answer after two pieces: what the page shows then can only have come
    # from the stream, and the rest arrives once the model goes on (nothing waits for time).
    held = Stream(("Streaming ", "shows the answer ", "as it is written."), pause_after=2)
    fake_model.script(held)
    sign_in(page, model_host)
    send(page, "How does streaming feel?")
    answer = answers(page).last
    expect(answer.locator(".content")).to_have_text("Streaming shows the answer", timeout=20_000)
    assert contents(page, ".from-user") == ["How does streaming feel?"]
    held.gate.set()
    expect(answer.locator(".content")).to_have_text(
        "Streaming shows the answer as it is written.", timeout=20_000
    )


def test_chat_keeps_history_and_starts_another(host: RunningHost, page: Page) -> None:
    sign_in(page, host)
    first = " ".join(["Tell me how streaming works and why it feels fast."] * 5)
    send(page, first)

    # The user's message shows at once, and the answer follows.
    expect(log_items(page).first).to_contain_text("You")
    assert contents(page, ".from-user") == [first]
    expect(composer(page)).to_have_value("")
    expect(page.locator("#messages .from-assistant .content")).to_have_text(
        f"echo[0]:{first}", timeout=20_000
    )
    final = f"echo[0]:\n{first}"  # as read (innerText keeps the prefix's line break)

    # Shift+Enter is a new line; Enter sends.
    box = composer(page)
    box.press_sequentially("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("line one\nline two")
    box.press("Enter")
    expect(log_items(page)).to_have_count(4)
    expect(page.locator("#messages .from-assistant").last).to_contain_text("echo[2]:line one")
    assert contents(page) == [first, final, "line one\nline two", "echo[2]:\nline one\nline two"]

    # The title is the API's, in the heading and in the list.
    session_id = current_session_id(page)
    stored = httpx.get(
        f"{host.base_url}/api/sessions/{session_id}", headers=dev_headers(EMAIL)
    ).json()
    expect(page.get_by_role("heading", level=1)).to_have_text(stored["title"])
    expect(session_titles(page)).to_have_text([stored["title"]])
    screenshot(page, "chat-desktop.png")

    # A reload brings the conversation back, from the server.
    page.reload()
    expect(log_items(page)).to_have_count(4)
    assert contents(page) == [first, final, "line one\nline two", "echo[2]:\nline one\nline two"]
    expect(page.get_by_role("heading", level=1)).to_have_text(stored["title"])
    expect(session_links(page).first).to_have_attribute("aria-current", "page")

    # A second conversation starts from nothing and goes to the top of the list.
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(log_items(page)).to_have_count(0)
    expect(composer(page)).to_be_focused()
    send(page, "A different topic")
    expect(page.locator("#messages .from-assistant .content")).to_have_text(
        "echo[0]:A different topic"
    )
    expect(session_titles(page)).to_have_text(["A different topic", stored["title"]])

    # The first one is a click away, whole.
    session_links(page).nth(1).click()
    expect(log_items(page)).to_have_count(4)
    expect(page.get_by_role("heading", level=1)).to_have_text(stored["title"])
    assert contents(page)[3] == "echo[2]:\nline one\nline two"


def test_list_pages_with_load_more_newest_first(host: RunningHost, page: Page) -> None:
    for n in range(23):
        api_chat(host, f"Seeded conversation {n}")
    api_chat(host, "Somebody else's", email="bob@example.com")

    sign_in(page, host)
    titles = session_titles(page)
    expect(titles).to_have_count(20)
    expect(titles.first).to_have_text("Seeded conversation 22")
    expect(titles.last).to_have_text("Seeded conversation 3")
    load_more = page.get_by_role("button", name="Load more")
    load_more.click()
    expect(titles).to_have_count(23)
    expect(titles.last).to_have_text("Seeded conversation 0")
    expect(load_more).to_be_hidden()
    expect(page.get_by_text("Somebody else's")).to_have_count(0)


def test_delete_asks_first_then_removes_everywhere(host: RunningHost, page: Page) -> None:
    keep = api_chat(host, "Keep this one")
    doomed = api_chat(host, "Delete this one")
    sign_in(page, host)
    session_links(page).filter(has_text="Delete this one").click()
    expect(log_items(page)).to_have_count(2)

    delete = page.get_by_role("button", name="Delete “Delete this one”")
    dialog = page.get_by_role("dialog", name="Delete this conversation?")
    delete.click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("“Delete this one” and all of its messages")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(session_titles(page)).to_have_text(["Delete this one", "Keep this one"])
    expect(delete).to_be_focused()

    delete.click()
    dialog.get_by_role("button", name="Delete").click()
    expect(session_titles(page)).to_have_text(["Keep this one"])
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(log_items(page)).to_have_count(0)
    gone = httpx.get(
        f"{host.base_url}/api/sessions/{doomed['sessionId']}", headers=dev_headers(EMAIL)
    )
    assert gone.status_code == 404
    kept = httpx.get(
        f"{host.base_url}/api/sessions/{keep['sessionId']}", headers=dev_headers(EMAIL)
    )
    assert kept.status_code == 200

    page.reload()
    expect(session_titles(page)).to_have_text(["Keep this one"])


def test_archived_view_lists_archived_sessions_and_a_message_brings_one_back(
    host: RunningHost, page: Page, sqlite_env: dict[str, str]
) -> None:
    old = api_chat(host, "An old conversation")
    assert archive_everything(sqlite_env["SQLITE_PATH"]) == 1

    sign_in(page, host)
    expect(page.get_by_text("No conversations yet.")).to_be_visible()
    page.get_by_role("button", name="Archived").click()
    expect(page.get_by_role("button", name="Archived")).to_have_attribute("aria-pressed", "true")

    # An archived conversation can be renamed, and stays archived.
    page.get_by_role("button", name="Rename “An old conversation”").click()
    page.get_by_role("textbox", name="Title").fill("An old conversation, renamed")
    page.keyboard.press("Enter")
    expect(session_titles(page)).to_have_text(["An old conversation, renamed"])
    stored = httpx.get(
        f"{host.base_url}/api/sessions/{old['sessionId']}", headers=dev_headers(EMAIL)
    ).json()
    assert stored["title"] == "An old conversation, renamed" and stored["archived"] is True

    session_links(page).filter(has_text="An old conversation").click()
    expect(page.locator("#chat-meta")).to_contain_text("Archived")
    expect(log_items(page)).to_have_count(2)

    send(page, "Back again")
    expect(page.locator("#messages .from-assistant").last).to_contain_text("echo[2]:Back again")
    expect(session_titles(page)).to_have_count(0)  # no longer archived
    page.get_by_role("button", name="Chats", exact=True).click()
    expect(session_titles(page)).to_have_text(["An old conversation, renamed"])


# ---------------------------------------------------------------- errors


class FailingModel(ThreadingHTTPServer):
    """An OpenAI-compatible endpoint that always fails, as a broken model service does."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.dumps({"error": {"message": "boom", "type": "server_error"}}).encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def failing_host(sqlite_env: dict[str, str], tmp_path: Path) -> Iterator[RunningHost]:
    server = FailingModel()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        **sqlite_env,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}/v1",
        "OPENAI_API_KEY": "test-key",
        "LLM_MAX_RETRIES": "0",
    }
    try:
        with run_host(env, tmp_path / "failing-host.log") as running:
            yield running
    finally:
        server.shutdown()
        server.server_close()


def test_model_failure_shows_a_clear_message_and_keeps_the_text(
    failing_host: RunningHost, page: Page
) -> None:
    sign_in(page, failing_host)
    send(page, "Will this work?")
    expect(error_alert(page)).to_contain_text("The model could not answer")
    expect(composer(page)).to_have_value("Will this work?")
    expect(composer(page)).to_be_focused()
    # The message is stored before the model is called (docs/http.md, "Chat"), so it stays in
    # the log, marked as unanswered.
    expect(page.locator("#messages .from-user.unanswered")).to_have_count(1)
    expect(page.locator("#messages .from-assistant")).to_have_count(0)
    expect(session_titles(page)).to_have_text(["Will this work?"])
    screenshot(page, "chat-model-error.png")

    # Sending it again retries the same message: still stored once.
    composer(page).press("Enter")
    expect(error_alert(page)).to_contain_text("The model could not answer")
    session_id = current_session_id(page)
    stored = httpx.get(
        f"{failing_host.base_url}/api/sessions/{session_id}", headers=dev_headers(EMAIL)
    ).json()
    assert [m["content"] for m in stored["messages"]] == ["Will this work?"]
    expect(page.locator("#messages .from-user")).to_have_count(1)


def test_real_413_and_404_from_the_host(host: RunningHost, page: Page) -> None:
    sign_in(page, host)
    too_long = "x" * 16_001
    send(page, too_long)
    expect(error_alert(page)).to_contain_text("too long")
    expect(composer(page)).to_have_value(too_long)
    expect(log_items(page)).to_have_count(0)  # refused: nothing was stored

    doomed = api_chat(host, "Soon deleted elsewhere")
    page.reload()
    session_links(page).filter(has_text="Soon deleted elsewhere").click()
    expect(log_items(page)).to_have_count(2)
    httpx.delete(f"{host.base_url}/api/sessions/{doomed['sessionId']}", headers=dev_headers(EMAIL))
    send(page, "Are you there?")
    expect(error_alert(page)).to_contain_text("no longer exists")
    expect(composer(page)).to_have_value("Are you there?")

    # The next send starts a new conversation rather than failing again.
    composer(page).press("Enter")
    expect(page.locator("#messages .from-assistant .content").last).to_have_text(
        "echo[0]:Are you there?"
    )
    expect(error_alert(page)).not_to_have_class(re.compile(r"\bshown\b"))


@pytest.mark.parametrize(
    ("status", "code", "headers", "expected"),
    [
        (401, "unauthenticated", None, "Sign in again to continue"),
        (403, "forbidden", None, "belongs to another account"),
        (429, "rate_limited", {"Retry-After": "7"}, "try again in 7 seconds"),
        (503, "storage_unavailable", {"Retry-After": "5"}, "Try again in 5 seconds"),
        (502, "model_error", None, "The model could not answer"),
        (500, "internal", None, "Something went wrong on our side"),
    ],
)
def test_each_error_status_reads_as_a_human_message(
    host: RunningHost,
    page: Page,
    status: int,
    code: str,
    headers: dict[str, str] | None,
    expected: str,
) -> None:
    # The host answers these only under load or outage; the page's handling of the contract's
    # error object is what is checked here, so the API's answer is stubbed for /api/chat only.
    sign_in(page, host)
    page.route("**/api/chat", json_error(status, code, headers))
    send(page, "Hello?")
    expect(error_alert(page)).to_contain_text(expected)
    expect(composer(page)).to_have_value("Hello?")
    if code == "unauthenticated":
        expect(error_alert(page).get_by_role("button", name="Sign in again")).to_be_visible()


def test_network_failure_and_an_error_event_mid_stream(host: RunningHost, page: Page) -> None:
    sign_in(page, host)
    page.route("**/api/chat", lambda route: route.abort("connectionrefused"))
    send(page, "Anyone?")
    expect(error_alert(page)).to_contain_text("could not be reached")
    expect(composer(page)).to_have_value("Anyone?")

    page.unroute("**/api/chat")
    stream = (
        'event: session\ndata: {"sessionId":"s1","title":"Anyone?"}\n\n'
        'event: delta\ndata: {"content":"Half an ans"}\n\n'
        'event: error\ndata: {"error":{"code":"model_error","message":"x"}}\n\n'
    )
    page.route(
        "**/api/chat",
        lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=stream
        ),
    )
    composer(page).press("Enter")
    expect(error_alert(page)).to_contain_text("The model could not answer")
    expect(page.locator("#messages .from-assistant")).to_have_count(0)
    expect(page.locator("#messages .from-user.unanswered")).to_have_count(1)
    expect(composer(page)).to_have_value("Anyone?")


def test_text_is_never_markup(host: RunningHost, page: Page) -> None:
    sign_in(page, host)
    attack = '<img src=x onerror="window.__pwned=1"><b>bold</b>'
    send(page, attack)
    expect(page.locator("#messages .from-assistant .content")).to_have_text(f"echo[0]:{attack}")
    assert contents(page, ".from-user") == [attack]
    expect(page.locator("#messages img, #messages b")).to_have_count(0)
    expect(session_titles(page).first).to_contain_text("<img")
    assert page.evaluate("window.__pwned") is None


# ---------------------------------------------------------------- phone width and keyboard


def test_phone_width_has_no_horizontal_scroll(host: RunningHost, phone: Page) -> None:
    api_chat(host, "An earlier conversation")
    sign_in(phone, host)
    send(phone, "A message with a very long word: " + "supercalifragilistic" * 8)
    expect(phone.locator("#messages .from-assistant .content")).to_contain_text("echo[0]:")
    assert scroller_overflow(phone) == 0
    # A wide table and a long line of code scroll inside the answer, not the page.
    wide = "| " + " | ".join(f"column {n}" for n in range(12)) + " |"
    rule = "|" + "---|" * 12
    row = "| " + " | ".join(f"value {n}" for n in range(12)) + " |"
    code = "```\n" + "x = '" + "long " * 60 + "'\n```"
    send(phone, f"Wide things\n\n{wide}\n{rule}\n{row}\n\n{code}")
    expect(phone.locator("#messages .from-assistant table")).to_have_count(1)
    expect(phone.locator("#messages .from-assistant pre")).to_have_count(1)
    assert scroller_overflow(phone) == 0
    send_box = phone.get_by_role("button", name="Send")
    expect(send_box).to_be_in_viewport()
    screenshot(phone, "chat-phone.png")

    # The list is a panel opened from the top bar, and closes when a conversation is chosen.
    toggle = phone.get_by_role("button", name="Chats", exact=True).first
    expect(session_links(phone).first).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(session_titles(phone)).to_have_count(2)
    screenshot(phone, "list-phone.png")
    session_links(phone).filter(has_text="An earlier conversation").click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(phone.get_by_role("heading", level=1)).to_have_text("An earlier conversation")
    assert scroller_overflow(phone) == 0


def test_keyboard_only_sign_in_and_send(host: RunningHost, page: Page) -> None:
    page.goto(host.base_url + "/")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(EMAIL)
    page.keyboard.press("Enter")
    expect(page.get_by_role("banner")).to_contain_text(EMAIL)
    expect(composer(page)).to_be_focused()
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Enter")
    expect(page.locator("#messages .from-assistant .content")).to_have_text(
        "echo[0]:Typed without a mouse"
    )
    # Tab order after the message box: the Send button.
    composer(page).focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send")).to_be_focused()
    # The sign-in survives a reload; signing out asks again, and refuses a bad address.
    page.reload()
    expect(page.get_by_text(EMAIL)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    email = page.get_by_label("Email")
    expect(email).to_be_focused()
    email.fill("not an address")
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_have_text(
        "Enter an email address, like alice@example.com."
    )
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("navigation", name="Conversations")).to_be_hidden()
