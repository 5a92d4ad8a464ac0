"""``python -m shared.report`` writes one self-contained HTML file: run as an operator runs it
(a subprocess on the configured SQLite store), opened from disk in the real browser with no
server and no network, its charts drawn (inline SVG) and its figures shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shared.clock import FixedClock
from shared.config import load_settings
from shared.models import ChatRequest, FeedbackRequest
from shared.storage.base import ArchiveRun
from shared.storage.sqlite import SqliteStore
from tests.support.conversations import Conversations
from tests.support.metering import MeteredModel
from tests.web.browser.support import run_async, screenshot

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[3]


def seed(path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(path)
        try:
            service = Conversations(
                store, MeteredModel(), load_settings({}), clock=FixedClock(datetime.now(UTC))
            )
            for user in ("a@example.com", "b@example.com", "c@example.com"):
                turn = await service.chat(user, ChatRequest(message="hello"))
                await service.set_feedback(
                    user, turn.session_id, turn.assistant.id, FeedbackRequest(rating="up")
                )
            # One archival pass's record, as a pass keeps it (shared/archive/sweep.py).
            await store.record_archive_run(ArchiveRun("pass", datetime.now(UTC), 12, 3))
        finally:
            await store.close()

    run_async(main())


def test_the_html_report_opens_offline_with_its_charts(page: Page, tmp_path: Path) -> None:
    db, out = tmp_path / "c.db", tmp_path / "report.html"
    seed(db)
    env = {**os.environ, "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(db), "AUTH_MODE": "dev"}
    command = [sys.executable, "-m", "shared.report", "--days", "7"]
    subprocess.run([*command, "--out", str(out)], env=env, cwd=REPO, check=True, timeout=120)
    as_json = subprocess.run(
        [*command, "--json"], env=env, cwd=REPO, check=True, capture_output=True, text=True
    )
    assert json.loads(as_json.stdout)["totals"]["turns"] == 3

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    expect(page.get_by_role("heading", name="Parley report")).to_be_visible()
    figures = page.locator("figure svg")
    expect(figures).to_have_count(6)
    expect(page.locator("#totals")).to_contain_text("3")
    expect(page.locator("#models")).to_contain_text("metered")
    expect(page.locator("#latency")).to_contain_text("ms")  # three answers, their timings
    expect(page.locator("#archival")).to_contain_text("12")  # the pass's moved sessions
    assert all(url.startswith("file:") for url in requests)  # nothing fetched from anywhere
    page.set_viewport_size({"width": 1000, "height": 1400})
    screenshot(page, "report.png")
