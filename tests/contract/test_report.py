"""``python -m shared.report`` (shared/report.py) on every store: its figures equal a hand count
on a seeded store, read in pages (a page of two items here, so every scan turns pages), and
nothing outside the window counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import report as report_module
from shared.clock import FixedClock
from shared.models import ChatRequest, FeedbackRequest
from shared.report import compute, to_html
from shared.storage.base import Store
from tests.contract.conftest import Runner
from tests.contract.test_usage import CACHED, COMPLETION, PROMPT, metered_service

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

TODAY = datetime(2031, 8, 30, 15, 0, tzinfo=UTC)


def test_the_figures_equal_a_hand_count(
    run: Runner[Any], emails: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_module, "PAGE", 2)
    alice, bob = emails
    carol = alice.replace("alice", "carol")

    async def scenario(store: Store) -> dict[str, Any]:
        clock = FixedClock(TODAY - timedelta(days=40))
        service, _ = metered_service(store, clock, daily=0)
        await service.chat(carol, ChatRequest(message="long ago"))  # outside the window
        clock.set(TODAY - timedelta(days=2))
        first = await service.chat(alice, ChatRequest(message="one"))
        await service.chat(alice, ChatRequest(message="two", sessionId=first.session_id))
        other = await service.chat(bob, ChatRequest(message="three"))
        clock.set(TODAY)
        await service.chat(alice, ChatRequest(message="four", sessionId=first.session_id))
        await service.set_feedback(
            alice, first.session_id, first.assistant.id, FeedbackRequest(rating="up")
        )
        await service.set_feedback(
            bob, other.session_id, other.assistant.id, FeedbackRequest(rating="down", comment="x")
        )
        report = await compute(store, days=30, now=TODAY)
        assert "<svg" in to_html(report)
        return report.to_json()

    data = run(scenario)
    per_day = {d["date"]: d for d in data["perDay"]}
    assert len(per_day) == 30 and data["perDay"][-1]["date"] == "2031-08-30"
    assert data["perDay"][0]["date"] == "2031-08-01"
    busy = {date: d for date, d in per_day.items() if d["turns"]}
    assert busy == {
        "2031-08-28": {
            "date": "2031-08-28",
            "activeUsers": 2,
            "turns": 3,
            "tokens": 3 * (PROMPT + COMPLETION),
            "promptTokens": 3 * PROMPT,
            "completionTokens": 3 * COMPLETION,
            "cachedTokens": 3 * CACHED,
        },
        "2031-08-30": {
            "date": "2031-08-30",
            "activeUsers": 1,
            "turns": 1,
            "tokens": PROMPT + COMPLETION,
            "promptTokens": PROMPT,
            "completionTokens": COMPLETION,
            "cachedTokens": CACHED,
        },
    }
    assert data["totals"] == {
        "turns": 4,
        "tokens": 4 * (PROMPT + COMPLETION),
        "promptTokens": 4 * PROMPT,
        "completionTokens": 4 * COMPLETION,
        "cachedTokens": 4 * CACHED,
        "cachedShare": round(CACHED / PROMPT, 4),
        "peakDailyActiveUsers": 2,
    }
    assert data["perModel"] == [
        {
            "model": "metered",
            "answers": 4,
            "promptTokens": 4 * PROMPT,
            "completionTokens": 4 * COMPLETION,
            "ratedUp": 1,
            "ratedDown": 1,
        }
    ]
    assert data["latency"] is None and data["archival"] is None
