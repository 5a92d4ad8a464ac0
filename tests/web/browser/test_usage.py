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

from shared.storage.base import Spent
from shared.storage.sqlite import SqliteStore
from shared.usage import period_keys
from tests.web.browser.support import (
    EMAIL,
    composer,
    log_items,
    run_async,
    screenshot,
    send,
    sign_in,
)
from tools.local.host import RunningHost, run_host

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
    expect(page.locator("#messages .from-assistant .content")).to_have_text("echo[0]:Hello there")
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


def test_your_activity_shows_turns_and_tokens_per_day(
    limited_host: RunningHost, page: Page, sqlite_env: dict[str, str]
) -> None:
    """The meter's "Your activity" opens the last 30 UTC days, newest first, from the caller's
    own daily totals (GET /api/usage?days=30)."""
    sign_in(page, limited_host)
    send(page, "Hello there")
    expect(page.locator("#messages .from-assistant .content")).to_have_text("echo[0]:Hello there")
    spend(sqlite_env["SQLITE_PATH"], 1200)  # another device's turn, today

    page.get_by_role("button", name="Your activity").click()
    dialog = page.get_by_role("dialog", name="Your activity")
    expect(dialog).to_be_visible()
    rows = dialog.locator("#activity-days tr")
    expect(rows).to_have_count(30)
    today = rows.first
    expect(today).to_have_attribute("data-date", datetime.now(UTC).date().isoformat())
    cells = today.locator("td")
    expect(cells.nth(1)).to_have_text("2")  # the turn here and the one from elsewhere
    expect(cells.nth(2)).to_have_text(re.compile(r"^1,[2-9]\d\d$"))  # 1,200 plus this turn's
    expect(rows.nth(1)).to_have_class("idle")
    expect(dialog.locator("#activity-summary")).to_contain_text("Last 30 days: 2 turns")
    # The busiest day's bars are full width; an idle day has none.
    bar = today.locator(".activity-bar").first
    assert bar.evaluate("b => b.style.width") == "100%"
    assert rows.nth(1).locator(".activity-bar").first.evaluate("b => b.style.width") == "0%"
    screenshot(page, "your-activity.png")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
