"""The one retry rule (shared/backoff.py): a limit per caller, jittered pauses through an
injected sleep (nothing here really sleeps)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.backoff import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    LostRace,
    RetriesExhausted,
    retry_on_conflict,
)
from shared.clock import FixedClock

START = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)


class Pauses:
    def __init__(self) -> None:
        self.taken: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.taken.append(seconds)


def _run(attempts: int, *, fail_first: int, pause: bool = True) -> tuple[list[int], Pauses, str]:
    pauses, tried = Pauses(), []

    async def attempt(n: int) -> str:
        tried.append(n)
        if n < fail_first:
            raise LostRace(pause=pause)
        return "stored"

    async def go() -> str:
        try:
            return await retry_on_conflict(attempt, attempts=attempts, sleep=pauses.sleep)
        except RetriesExhausted:
            return "exhausted"

    return tried, pauses, asyncio.run(go())


def test_gives_up_after_its_own_limit() -> None:
    tried, pauses, outcome = _run(3, fail_first=10)
    assert outcome == "exhausted"
    assert tried == [0, 1, 2]
    assert len(pauses.taken) == 3


def test_returns_the_first_attempt_that_wins() -> None:
    tried, pauses, outcome = _run(5, fail_first=2)
    assert outcome == "stored"
    assert tried == [0, 1, 2]
    assert len(pauses.taken) == 2


def test_pauses_grow_with_equal_jitter() -> None:
    random.seed(1)
    _, first, _ = _run(8, fail_first=8)
    random.seed(2)
    _, second, _ = _run(8, fail_first=8)
    for n, (a, b) in enumerate(zip(first.taken, second.taken, strict=True)):
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**n)
        assert ceiling / 2 <= a <= ceiling
        assert ceiling / 2 <= b <= ceiling
    # Jitter: two writers that lost the same races do not wait the same.
    assert first.taken != second.taken


def test_a_settled_state_is_tried_again_at_once() -> None:
    tried, pauses, outcome = _run(4, fail_first=2, pause=False)
    assert outcome == "stored"
    assert tried == [0, 1, 2]
    assert pauses.taken == []


def test_other_errors_are_the_callers() -> None:
    pauses = Pauses()

    async def attempt(n: int) -> None:
        raise ValueError("not a race")

    with pytest.raises(ValueError):
        asyncio.run(retry_on_conflict(attempt, attempts=3, sleep=pauses.sleep))
    assert pauses.taken == []


def test_a_time_budget_ends_once_a_race_is_lost_past_it() -> None:
    """Storing an answer: no count of attempts, a time budget from the first attempt; past it,
    the lost race ends the loop without one more pause."""
    clock, pauses, tried = FixedClock(START), Pauses(), []

    async def attempt(n: int) -> str:
        tried.append(n)
        clock.advance(seconds=50)
        raise LostRace()

    async def go() -> str:
        try:
            return await retry_on_conflict(attempt, within_s=120, clock=clock, sleep=pauses.sleep)
        except RetriesExhausted:
            return "exhausted"

    assert asyncio.run(go()) == "exhausted"
    assert tried == [0, 1, 2]  # lost at 50 s and 100 s: tried again; at 150 s: not
    assert len(pauses.taken) == 2


def test_within_its_time_budget_it_goes_on_past_any_count() -> None:
    clock, pauses = FixedClock(START), Pauses()

    async def attempt(n: int) -> int:
        if n < 60:
            raise LostRace()
        return n

    won = asyncio.run(retry_on_conflict(attempt, within_s=120, clock=clock, sleep=pauses.sleep))
    assert won == 60
    assert len(pauses.taken) == 60


@pytest.mark.parametrize(
    "limit",
    [{}, {"attempts": 3, "within_s": 1.0, "clock": FixedClock(START)}, {"within_s": 1.0}],
)
def test_each_caller_names_exactly_one_limit(limit: dict[str, Any]) -> None:
    async def attempt(n: int) -> None:
        return None

    with pytest.raises(ValueError, match="one limit"):
        asyncio.run(retry_on_conflict(attempt, sleep=Pauses().sleep, **limit))
