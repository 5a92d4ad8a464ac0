"""What the browser tests share: driving the page as a person does, asking the API what it
stored, and writing conversations straight into a store (SQLite or Cosmos) when a test needs
more of them than it could create through the API in reasonable time."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from playwright.sync_api import Browser, Locator, Page, Route, expect

from shared.ids import message_item_id, new_session_id
from shared.models import MessageRecord
from shared.storage.base import Store
from tools.local.host import RunningHost, dev_headers
from tools.local.seeding import append_in_batches, new_session

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
EMAIL = "alice@example.com"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


# ---------------------------------------------------------------- the page


def open_page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"the page threw: {errors}"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def sign_in(page: Page, host: RunningHost, email: str = EMAIL) -> None:
    page.goto(host.base_url + "/")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def composer(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Message")


def send(page: Page, text: str) -> None:
    box = composer(page)
    box.fill(text)
    box.press("Enter")


def log_items(page: Page) -> Locator:
    """The messages of the log (not the items of a list inside an answer)."""
    return page.get_by_role("log").locator(":scope > li")


def answers(page: Page) -> Locator:
    return page.locator("#messages .from-assistant")


def contents(page: Page, selector: str = ".message") -> list[str]:
    """The text of the log's messages as rendered (Playwright's to_have_text collapses spaces;
    innerText keeps a Markdown answer's line breaks)."""
    return page.locator(f"#messages {selector} .content").evaluate_all(
        "nodes => nodes.map(n => n.innerText)"
    )


def sidebar(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Conversations")


def session_links(page: Page) -> Locator:
    return sidebar(page).locator("#session-list .session-link")


def session_titles(page: Page) -> Locator:
    return sidebar(page).locator("#session-list .session-title")


def current_session_id(page: Page) -> str:
    """The open conversation, as the page remembers it in the URL."""
    match = re.search(r"#s=([^&]+)", page.url)
    assert match, f"no session in {page.url}"
    return match.group(1)


def error_alert(page: Page) -> Locator:
    return page.locator("#chat-error")


def page_scroll(page: Page) -> list[int]:
    """How far the page itself is scrolled (it never should be: the log and the list scroll)."""
    return list(
        page.evaluate("() => [document.scrollingElement.scrollTop, document.body.scrollTop]")
    )


def scroller_overflow(page: Page) -> int:
    return int(
        page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


# ---------------------------------------------------------------- the API


def json_error(
    status: int, code: str, headers: dict[str, str] | None = None
) -> Callable[[Route], None]:
    def handle(route: Route) -> None:
        route.fulfill(
            status=status,
            headers={"Content-Type": "application/json", **(headers or {})},
            body=json.dumps({"error": {"code": code, "message": "from the API"}}),
        )

    return handle


def api_chat(host: RunningHost, message: str, email: str = EMAIL, **extra: str) -> dict[str, Any]:
    response = httpx.post(
        host.base_url + "/api/chat",
        json={"message": message, **extra},
        headers=dev_headers(email),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def api_get(host: RunningHost, path: str, email: str = EMAIL) -> httpx.Response:
    return httpx.get(f"{host.base_url}/api{path}", headers=dev_headers(email), timeout=10)


def api_session(host: RunningHost, session_id: str, email: str = EMAIL) -> dict[str, Any]:
    response = api_get(host, f"/sessions/{session_id}", email)
    assert response.status_code == 200, response.text
    return dict(response.json())


# ---------------------------------------------------------------- stores


def run_async(work: Awaitable[T]) -> T:
    """Run a coroutine to its end. Playwright's sync API keeps an event loop on the test's
    thread, so the store's work gets a thread (and an event loop) of its own."""

    async def wrapped() -> T:
        return await work

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wrapped()).result()


@dataclass
class StoredHost:
    """A running host and a way into the store behind it (to seed what the API cannot fast)."""

    host: RunningHost
    backend: str
    open_store: Callable[[], Store]

    def seed_conversation(
        self,
        messages: int,
        *,
        title: str,
        email: str = EMAIL,
        content: Callable[[int, str], str] | None = None,
    ) -> str:
        """A conversation of ``messages`` messages (user, assistant, ...), its last one now,
        written in batches (``append_in_batches``); returns its session id."""
        text = content or (lambda seq, role: f"{'Question' if role == 'user' else 'Answer'} {seq}")
        return run_async(self._seed(messages, title, email, text))

    async def _seed(
        self, count: int, title: str, email: str, text: Callable[[int, str], str]
    ) -> str:
        session_id = new_session_id()
        now = datetime.now(UTC)
        records = []
        for seq in range(1, count + 1):
            role = "user" if seq % 2 else "assistant"
            records.append(
                MessageRecord(
                    session_id=session_id,
                    seq=seq,
                    role=role,
                    content=text(seq, role),
                    timestamp=now - timedelta(seconds=count - seq),
                )
            )
        session = new_session(records, email=email, title=title)
        store = self.open_store()
        try:
            await append_in_batches(store, session, records)
        finally:
            await store.close()
        return session_id


def archive_everything(sqlite_path: str) -> int:
    """Archive every session of the SQLite store now (as the nightly pass would, days later)."""
    from shared.archive import ArchivePolicy, run_archive
    from shared.clock import FixedClock
    from shared.storage.sqlite import SqliteStore

    async def archive() -> int:
        store = SqliteStore(sqlite_path)
        try:
            later = FixedClock(datetime.now(UTC) + timedelta(days=2))
            policy = ArchivePolicy(after_days=1, time_budget_s=60)
            return (await run_archive(store, policy, clock=later)).archived
        finally:
            await store.close()

    return run_async(archive())


def message_id(session_id: str, seq: int) -> str:
    return message_item_id(session_id, seq)


@contextmanager
def recorded_requests(page: Page, pattern: str) -> Iterator[list[str]]:
    """The URLs of the page's requests whose URL matches ``pattern`` (a regex), as they go."""
    seen: list[str] = []
    matcher = re.compile(pattern)

    def on_request(request: Any) -> None:
        if matcher.search(request.url):
            seen.append(request.url)

    page.on("request", on_request)
    try:
        yield seen
    finally:
        page.remove_listener("request", on_request)
