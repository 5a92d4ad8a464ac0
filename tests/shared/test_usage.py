"""Token usage and budgets on every store (shared/usage/, docs/http.md "Usage and budgets").

- concurrent increments are all counted (20 at once, on one user's day and month records);
- the day and the month roll over with the (injected) clock, each on its own;
- another user's usage is untouched, and an erasure removes the user's usage too;
- a usage write that fails never fails the turn (the answer is stored, the failure logged);
- 20 turns sent at once at the edge of the budget are all counted: the overshoot is at most
  the answers in flight, and the next turn is refused (429 quota_exceeded, Retry-After to the
  reset) before anything is stored or the model is called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from shared import deadline
from shared.clock import FixedClock
from shared.config import load_settings
from shared.deadline import remaining
from shared.errors import QuotaExceeded, StorageUnavailable
from shared.llm.base import ModelMessage, Usage
from shared.models import ChatRequest
from shared.storage.base import Spent, Store
from shared.usage import RECORD_ATTEMPTS, period_keys
from tests.support.conversations import Conversations
from tests.support.metering import CACHED, COMPLETION, PROMPT, MeteredModel, metered_service
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

# 23:59 on the last day of a month: a minute from both resets.
EDGE = datetime(2031, 8, 31, 23, 59, tzinfo=UTC)
PER_TURN = PROMPT + COMPLETION


def test_concurrent_increments_are_all_counted(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, bob = emails
    periods = period_keys(EDGE)

    async def scenario(store: Store) -> None:
        await store.add_usage(bob, periods, Spent(5, 5, 0, 1))
        one = Spent(prompt_tokens=7, completion_tokens=3, cached_tokens=2, turns=1)

        async def add_until_acknowledged() -> None:
            # Under the tight request-unit budget a batch may be refused (429 past the SDK's
            # retries: nothing applied, 503 to the caller), and the caller sends it again, as
            # the service does (shared/usage/); what was acknowledged must all be counted.
            for _ in range(10):
                try:
                    await store.add_usage(alice, periods, one)
                    return
                except StorageUnavailable:
                    continue
            raise AssertionError("an increment was refused ten times")

        # The first use of both records, 20 times at once: creation races included.
        await asyncio.gather(*(add_until_acknowledged() for _ in range(20)))
        spent = await store.read_usage(alice, list(periods))
        assert spent == {period: Spent(140, 60, 40, 20) for period in periods}
        assert await store.read_usage(bob) == {p: Spent(5, 5, 0, 1) for p in periods}
        assert await store.read_usage(alice, []) == {}

    run(scenario)


def test_the_day_and_the_month_roll_over_on_their_own(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(EDGE)
        service, _ = metered_service(store, clock, daily=10_000)
        await service.chat(alice, ChatRequest(message="on the 31st"))
        report = await service.usage_report(alice)
        assert (report.day.tokens, report.month.tokens) == (PER_TURN, PER_TURN)
        assert (report.turns.day, report.turns.month) == (1, 1)
        assert report.day.cached_tokens == CACHED
        assert report.day.resets_at == "2031-09-01T00:00:00.000Z"
        assert report.month.resets_at == "2031-09-01T00:00:00.000Z"
        assert report.day.limit == 10_000 and report.month.limit is None

        clock.advance(minutes=2)  # 1 September: a new day and a new month
        assert (await service.usage_report(alice)).day.tokens == 0
        assert (await service.usage_report(alice)).month.tokens == 0
        await service.chat(alice, ChatRequest(message="on the 1st"))
        clock.advance(days=1)  # 2 September: a new day, the same month
        await service.chat(alice, ChatRequest(message="on the 2nd"))
        report = await service.usage_report(alice)
        assert (report.day.tokens, report.month.tokens) == (PER_TURN, 2 * PER_TURN)
        assert (report.turns.day, report.turns.month) == (1, 2)
        assert report.month.resets_at == "2031-10-01T00:00:00.000Z"
        # Every period is kept (the export shows them all).
        assert sorted(await store.read_usage(alice)) == [
            "day-2031-08-31",
            "day-2031-09-01",
            "day-2031-09-02",
            "month-2031-08",
            "month-2031-09",
        ]

    run(scenario)


def test_twenty_turns_at_the_edge_overshoot_by_at_most_the_answers_in_flight(
    run: Runner[None], emails: tuple[str, str], throttled: bool
) -> None:
    alice, bob = emails
    limit = 10_000

    async def scenario(store: Store) -> None:
        clock = FixedClock(EDGE)
        service, model = metered_service(store, clock, daily=limit)
        await store.add_usage(bob, period_keys(EDGE), Spent(1, 1, 0, 1))
        # One token short of the budget: every turn below passes the check.
        await store.add_usage(alice, period_keys(EDGE), Spent(limit - 1, 0, 0, 0))
        results = await asyncio.gather(
            *(service.chat(alice, ChatRequest(message=f"turn {i}")) for i in range(20)),
            return_exceptions=True,
        )
        answered = [r for r in results if not isinstance(r, BaseException)]
        # Under a tight request-unit budget a turn may be refused (503, nothing lost); else none.
        assert all(isinstance(r, StorageUnavailable) for r in results if r not in answered)
        assert len(answered) == 20 or throttled
        report = await service.usage_report(alice)
        # Every call the model answered is counted, none lost: the overshoot is exactly the
        # answers in flight (all 20 when none was refused).
        assert report.day.tokens == limit - 1 + model.calls * PER_TURN
        assert report.turns.day == model.calls >= len(answered)
        assert report.day.tokens - limit < 20 * PER_TURN

        sessions, messages = await store.usage(alice)
        calls = model.calls
        with pytest.raises(QuotaExceeded) as refused:
            await service.chat(alice, ChatRequest(message="one more", clientMessageId="m-1"))
        assert refused.value.status == 429 and refused.value.code == "quota_exceeded"
        assert refused.value.retry_after_s == 60  # a minute to midnight UTC
        assert "daily" in refused.value.message
        # Nothing stored, the model not called.
        assert await store.usage(alice) == (sessions, messages)
        assert model.calls == calls
        # Bob's budget is his own.
        await service.chat(bob, ChatRequest(message="bob is fine"))

        clock.advance(minutes=1)  # midnight: a new day
        await service.chat(alice, ChatRequest(message="a new day"))

    run(scenario)


def test_a_spent_month_waits_for_the_month(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails
    mid_month = datetime(2031, 8, 10, 12, 0, tzinfo=UTC)

    async def scenario(store: Store) -> None:
        clock = FixedClock(mid_month)
        service, _ = metered_service(store, clock, daily=0, monthly=PER_TURN)
        await service.chat(alice, ChatRequest(message="the month's one turn"))
        with pytest.raises(QuotaExceeded) as refused:
            await service.chat(alice, ChatRequest(message="too many"))
        reset = datetime(2031, 9, 1, tzinfo=UTC)
        assert refused.value.retry_after_s == int((reset - mid_month).total_seconds())
        assert "monthly" in refused.value.message

    run(scenario)


def test_an_erasure_removes_the_usage_and_a_reset_clears_it(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(EDGE)
        service, _ = metered_service(store, clock, daily=10_000)
        await service.chat(alice, ChatRequest(message="something"))
        await service.chat(bob, ChatRequest(message="his"))
        assert await store.read_usage(alice) != {}
        while not await service.erase_everything(alice, budget_s=30):
            pass
        assert await store.read_usage(alice) == {}
        assert await store.clear_usage(bob) == 2
        assert await store.read_usage(bob) == {}

    run(scenario)


class UsageWritesFail:
    """The real store, but usage writes fail as an unreachable store's would (the first
    ``failures`` of them)."""

    def __init__(self, inner: Store, failures: int = 1000) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts = 0

    async def add_usage(self, email: str, periods: Sequence[str], spent: Spent) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StorageUnavailable()
        await self.inner.add_usage(email, periods, spent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_usage_write_that_fails_never_fails_the_turn(
    run: Runner[None], emails: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(EDGE)
        settings = load_settings({"USER_DAILY_TOKEN_LIMIT": "10000"})
        pauses: list[float] = []

        async def pause(seconds: float) -> None:
            pauses.append(seconds)

        failing = UsageWritesFail(store)
        service = Conversations(
            cast(Store, failing), MeteredModel(), settings, clock=clock, sleep=pause
        )
        result = await service.chat(alice, ChatRequest(message="answered anyway"))
        assert failing.attempts == RECORD_ATTEMPTS and len(pauses) == RECORD_ATTEMPTS - 1
        assert result.assistant.content == "an answer"
        messages, _ = await store.page_messages(alice, result.session_id, where="active", limit=10)
        assert [m.role for m in messages] == ["user", "assistant"]
        assert await store.read_usage(alice) == {}
        assert "usage_not_recorded StorageUnavailable" in caplog.text

    with caplog.at_level(logging.WARNING, logger="parley.usage"):
        run(scenario)


def test_a_throttled_usage_write_is_tried_again(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        async def pause(seconds: float) -> None:
            return None

        failing = UsageWritesFail(store, failures=RECORD_ATTEMPTS - 1)
        service = Conversations(
            cast(Store, failing),
            MeteredModel(),
            load_settings({"USER_DAILY_TOKEN_LIMIT": "10000"}),
            clock=FixedClock(EDGE),
            sleep=pause,
        )
        await service.chat(alice, ChatRequest(message="counted at the last attempt"))
        assert (await service.usage_report(alice)).day.tokens == PER_TURN

    run(scenario)


class SlowModel(MeteredModel):
    """Answers after a minute of (the deadline's) monotonic time."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        self.clock[0] += 60.0
        async for piece in super().stream(messages, cache_key=cache_key):
            yield piece


class NotesBudget:
    """The real store, noting how much storage time is left when usage is counted."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.left: list[float] = []

    async def add_usage(self, email: str, periods: Sequence[str], spent: Spent) -> None:
        self.left.append(remaining(1000.0))
        await self.inner.add_usage(email, periods, spent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_long_answer_is_counted_with_a_storage_budget_of_its_own(
    run: Runner[None], emails: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The request's storage budget (20 s) is long spent when a minute-long answer ends: the
    # count, like the answer's write, must not inherit it (a Cosmos call would be refused).
    alice, _ = emails
    now = [1000.0]
    monkeypatch.setattr(deadline.time, "monotonic", lambda: now[0])

    async def scenario(store: Store) -> None:
        noting = NotesBudget(store)
        service = Conversations(
            cast(Store, noting),
            SlowModel(now),
            load_settings({"USER_DAILY_TOKEN_LIMIT": "10000"}),
            clock=FixedClock(EDGE),
        )
        with deadline.storage_budget(20.0):
            await service.chat(alice, ChatRequest(message="take your time"))
        assert noting.left and all(left > 0 for left in noting.left), noting.left
        assert (await store.read_usage(alice))[period_keys(EDGE)[0]].turns == 1

    run(scenario)


def test_a_model_written_title_is_counted_but_is_not_a_turn(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        settings = load_settings({"USER_DAILY_TOKEN_LIMIT": "10000", "TITLE_MODE": "model"})
        service = Conversations(store, MeteredModel(), settings, clock=FixedClock(EDGE))
        result = await service.chat(alice, ChatRequest(message="name this conversation"))
        assert result.title == "a title"
        report = await service.usage_report(alice)
        # The title call reports no usage (``complete``): estimated, and counted.
        assert report.day.tokens > PER_TURN and report.turns.day == 1

    run(scenario)


def test_the_activity_history_is_every_day_oldest_first_and_only_the_callers(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    """``GET /api/usage?days=N`` (the "your activity" view): the last N UTC days, today last,
    idle days as zeros, another user's days never."""
    alice, bob = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(EDGE)  # 2031-08-31
        service, _ = metered_service(store, clock, daily=0)
        await store.add_usage(
            alice, period_keys(datetime(2031, 8, 29, tzinfo=UTC)), Spent(7, 3, 2, 1)
        )
        await store.add_usage(
            alice, period_keys(datetime(2031, 8, 26, tzinfo=UTC)), Spent(9, 9, 0, 4)
        )
        await store.add_usage(
            bob, period_keys(datetime(2031, 8, 30, tzinfo=UTC)), Spent(5, 5, 0, 1)
        )
        await service.chat(alice, ChatRequest(message="today"))
        report = await service.usage_report(alice, days=5)
        assert report.history is not None
        assert [(d.date, d.turns, d.tokens, d.cached_tokens) for d in report.history] == [
            ("2031-08-27", 0, 0, 0),
            ("2031-08-28", 0, 0, 0),
            ("2031-08-29", 1, 10, 2),
            ("2031-08-30", 0, 0, 0),  # bob's day, not alice's
            ("2031-08-31", 1, PER_TURN, CACHED),
        ]
        assert report.history[2].prompt_tokens == 7 and report.history[2].completion_tokens == 3
        # Without days: no history, and the response has no such key at all.
        plain = await service.usage_report(alice)
        assert plain.history is None and "history" not in plain.model_dump_json(by_alias=True)
        assert '"limit":null' in plain.model_dump_json(by_alias=True)

    run(scenario)
