"""``python -m shared.report`` (shared/report/) on every store: its figures equal a hand count
on a seeded store, read in pages (a page of two items here, so every scan turns pages), and
nothing outside the window counts."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import report as report_module
from shared.archive.sweep import ArchivePolicy, run_archive
from shared.clock import FixedClock
from shared.config import load_settings
from shared.errors import StorageUnavailable
from shared.events import LatencyTimer
from shared.llm.base import ModelMessage, Usage
from shared.models import ChatRequest, FeedbackRequest
from shared.quantiles import RELATIVE_ERROR
from shared.report import compute, to_html
from shared.storage.base import ArchiveRun, Store
from shared.storage.sqlite import SqliteStore
from shared.turns import answer as answer_module
from tests.support.conversations import Conversations
from tests.support.databases import CosmosDatabase, cosmos_database
from tests.support.metering import CACHED, COMPLETION, PROMPT, MeteredModel, metered_service
from tests.support.stores import DATABASE_FIXTURES, Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


@pytest.fixture(params=["sqlite", *DATABASE_FIXTURES])
def store_factory(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[[], Any]]:
    """The report reads every user's data (an operator's scan across partitions), so each test
    gets a database of its own: on the session's shared one it would count other tests' users."""
    if request.param == "sqlite":
        path = tmp_path / "contract.db"
        yield lambda: SqliteStore(path)
        return
    shared: CosmosDatabase = request.getfixturevalue(DATABASE_FIXTURES[request.param])
    with cosmos_database(shared.account) as database:
        yield database.store


TODAY = datetime(2031, 8, 30, 15, 0, tzinfo=UTC)
# Each test's window of its own: a store may be shared by this module's tests.
LATER = TODAY + timedelta(days=200)


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
    assert data["latency"]["answers"] == 4


class TimedModel(MeteredModel):
    """Takes a scripted time to its first token and to the end of each answer, on the clock
    the service's latency timer reads (``clock``): stored timings are known to the millisecond."""

    def __init__(self, script: list[tuple[int, int]]) -> None:
        super().__init__()
        self.script = script
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        first, total = self.script.pop(0)
        self.now += first / 1000
        yield "an answer"
        self.now += (total - first) / 1000
        yield Usage(self.name, PROMPT, COMPLETION, CACHED)


def exact(values: list[int], q: float) -> int:
    """The nearest-rank quantile, counted by hand."""
    return sorted(values)[math.ceil(q * len(values)) - 1]


def test_latency_is_counted_from_the_stored_answers(
    run: Runner[Any], emails: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_module, "PAGE", 2)
    alice, bob = emails
    totals = [130, 4200, 880, 1500, 260, 9100, 640, 2300, 720, 1100, 3300]
    firsts = [t // 3 for t in totals]
    # One answer before the window, far slower than any in it: it must not count.
    script = [(90_000, 120_000), *zip(firsts, totals, strict=True)]
    model = TimedModel(list(script))
    monkeypatch.setattr(answer_module, "LatencyTimer", lambda: LatencyTimer(model.clock))

    async def scenario(store: Store) -> tuple[dict[str, Any], str, str]:
        clock = FixedClock(LATER - timedelta(days=40))
        service = Conversations(store, model, load_settings({}), clock=clock)
        await service.chat(bob, ChatRequest(message="long ago"))
        clock.set(LATER - timedelta(days=1))
        turn = await service.chat(alice, ChatRequest(message="q"))
        for n in range(len(totals) - 1):
            await service.chat(alice, ChatRequest(message=f"q{n}", sessionId=turn.session_id))
        report = await compute(store, days=30, now=LATER)
        exported = "".join([piece async for piece in service.export_json(alice, now=LATER)])
        return report.to_json(), to_html(report), exported

    data, page, exported = run(scenario)
    latency = data["latency"]
    assert latency["answers"] == len(totals)
    for key, values in (("totalMs", totals), ("firstTokenMs", firsts)):
        for name, q in (("median", 0.5), ("p95", 0.95)):
            want = exact(values, q)
            assert abs(latency[key][name] - want) <= want * RELATIVE_ERROR + 1, (key, name)
    assert 'id="latency"' in page
    # Stored with the answer, so an export (everything stored) carries them too.
    assert '"firstTokenMs": 43' in exported or '"firstTokenMs":43' in exported
    assert '"totalMs":130' in exported.replace(" ", "")


ARCHIVAL_DAY = LATER + timedelta(days=200)


def test_archival_is_counted_from_the_passes_records_and_no_user_meets_them(
    run: Runner[Any], emails: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_module, "PAGE", 2)
    alice, _ = emails

    async def scenario(store: Store) -> tuple[dict[str, Any], int, int, str, list[str]]:
        clock = FixedClock(ARCHIVAL_DAY - timedelta(days=60))
        service = Conversations(store, MeteredModel(), load_settings({}), clock=clock)
        turn = await service.chat(alice, ChatRequest(message="stale by the pass"))
        # Passes with known counts: two on one day, one on another, one before the window.
        for days_ago, moved, failed in ((40, 50, 50), (3, 4, 1), (3, 2, 0), (1, 7, 2)):
            await store.record_archive_run(
                ArchiveRun(
                    f"seeded{days_ago}{moved}",
                    ARCHIVAL_DAY - timedelta(days=days_ago),
                    moved,
                    failed,
                )
            )
        clock.set(ARCHIVAL_DAY)
        policy = ArchivePolicy(after_days=30, time_budget_s=60)
        await run_archive(
            store, ArchivePolicy(after_days=30, time_budget_s=60, dry_run=True), clock=clock
        )  # a dry run changes nothing: not kept
        summary = await run_archive(store, policy, clock=clock)
        report = await compute(store, days=30, now=ARCHIVAL_DAY)
        assert 'id="archival"' in to_html(report)
        # The user's own reads: none of them meets a pass's record.
        listed = await service.list_sessions(alice, limit=50, continuation=None, archived=True)
        listed_live = await service.list_sessions(
            alice, limit=50, continuation=None, archived=False
        )
        exported = "".join([piece async for piece in service.export_json(alice, now=ARCHIVAL_DAY)])
        assert await service.erase_everything(alice, budget_s=60)
        after_erasure = await compute(store, days=30, now=ARCHIVAL_DAY)
        assert after_erasure.to_json()["archival"] == report.to_json()["archival"]
        ids = [s.session_id for s in [*listed.sessions, *listed_live.sessions]]
        assert ids == [turn.session_id]
        return report.to_json(), summary.archived, summary.failed, exported, ids

    data, moved, failed, exported, _ = run(scenario)
    assert moved >= 1  # alice's session, at least (a shared store may hold others' too)
    archival = data["archival"]
    by_day = {d["date"]: d for d in archival["perDay"] if d["runs"]}
    day = lambda n: (ARCHIVAL_DAY - timedelta(days=n)).strftime("%Y-%m-%d")  # noqa: E731
    assert by_day == {
        day(3): {"date": day(3), "runs": 2, "moved": 6, "failed": 1},
        day(1): {"date": day(1), "runs": 1, "moved": 7, "failed": 2},
        day(0): {"date": day(0), "runs": 1, "moved": moved, "failed": failed},
    }
    assert (archival["runs"], archival["moved"], archival["failed"]) == (
        4,
        13 + moved,
        3 + failed,
    )
    assert "archiveRun" not in exported and "#ops" not in exported


class RecordRefused:
    """The store, except that keeping a pass's record fails (the store went down after the
    pass): the pass is still done and reported."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def record_archive_run(self, run: ArchiveRun) -> None:
        raise StorageUnavailable()


def test_a_pass_whose_record_fails_is_still_done(
    run: Runner[Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(store: Store) -> int:
        clock = FixedClock(ARCHIVAL_DAY + timedelta(days=100))
        policy = ArchivePolicy(after_days=30, time_budget_s=60)
        summary = await run_archive(RecordRefused(store), policy, clock=clock)  # type: ignore[arg-type]
        return summary.failed

    assert run(scenario) == 0
    assert "archive_run_not_recorded StorageUnavailable" in caplog.text
