"""The usage meter and a spent budget (docs/web.md, "What it does"): the meter shows today's tokens
against the limit and moves after a turn; once the budget is spent a turn is refused with a
clear sentence (the budget, and when it resets), the message stays in the box and nothing joins
the log; the meter says the budget is used up."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shared.storage.sqlite import SqliteStore
from shared.usage import Spent, period_keys
from tests.browser.support import (
    EMAIL,
    composer,
    log_items,
    run_async,
    screenshot,
    send,
    sign_in,
)
from tests.support.host import RunningHost, run_host

pytestmark = pytest.mark.browser

LIMIT = 5000


@pytest.fixture
def limited_host(sqlite_env: dict[str, str], tmp_path: Path) -> Iterator[RunningHost]:
    env = {**sqlite_env, "USER_DAILY_TOKEN_LIMIT": str(LIMIT)}
    with run_host(env, tmp_path / "limited-host.log") as running:
        yield running


def spend(sqlite_path: str, tokens: int) -> None:
    """What other turns (another tab, another device) spent today, straight into the store."""

    async def add() -> None:
        store = SqliteStore(sqlite_path)
        try:
            await store.add_usage(EMAIL, period_keys(datetime.now(UTC)), Spent(tokens, 0, 0, 1))
        finally:
            await store.close()

    run_async(add())


def test_the_meter_moves_and_a_spent_budget_is_said_clearly(
    limited_host: RunningHost, page: Page, sqlite_env: dict[str, str]
) -> None:
    sign_in(page, limited_host)
    meter = page.locator("#usage-meter")
    expect(meter).to_be_visible()
    line = page.locator("#usage-text")
    expect(line).to_have_text("Today: 0 of 5,000 tokens")
    bar = page.locator("#usage-bar")
    expect(bar).to_have_attribute("aria-label", "Today: 0 of 5,000 tokens used")

    send(page, "Hello there")
    expect(page.locator("#messages .from-assistant .content")).to_have_text("echo[0]: Hello there")
    # The turn's tokens, as GET /api/usage counts them.
    expect(line).not_to_have_text("Today: 0 of 5,000 tokens")
    expect(line).to_have_text(re.compile(r"^Today: [1-9][\d,]* of 5,000 tokens$"))

    spend(sqlite_env["SQLITE_PATH"], LIMIT)
    send(page, "One more question")
    alert = page.locator("#chat-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("You have used today's model budget.")
    expect(alert).to_contain_text("You can send messages again")
    # Refused before anything was stored: the message is back in the box, not in the log.
    expect(composer(page)).to_have_value("One more question")
    expect(log_items(page)).to_have_count(2)
    expect(meter).to_have_class(re.compile(r"\bspent\b"))
    expect(line).to_contain_text("Today's budget is used up; it resets")
    screenshot(page, "usage-spent.png")
