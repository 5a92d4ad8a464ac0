"""An answer the model has produced is not given up for contention: each write that stores one
(a turn's, a regenerate's, a group question's) goes through the one retry rule with a time
budget (``shared/backoff.py``, ``ANSWER_COMMIT_PATIENCE_S``), not a count of attempts. It is
stored after any number of lost races within the budget, and given up (503, nothing of it
written) only when a race is lost past the budget.

The store loses the races on cue (``ConcurrencyConflict``, nothing written) and the FixedClock
moves at each: nothing waits for time."""

from __future__ import annotations

from typing import Any

import pytest

from shared.answers import ANSWER_COMMIT_PATIENCE_S
from shared.clock import FixedClock
from shared.config import load_settings
from shared.errors import ConcurrencyConflict, StorageUnavailable
from shared.groups.models import GroupCreateRequest, GroupSendRequest
from shared.groups.service import GroupService
from shared.llm.echo import EchoModel
from shared.models import ChatRequest, RegenerateRequest
from shared.storage.base import Store
from tests.support.conversations import Conversations
from tests.support.realtime import RecordingRealtime
from tests.support.scenarios import START, no_pause
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

SETTINGS = load_settings({"AUTH_MODE": "dev"})
WRITES = {"turn": "append", "regenerate": "replace_answer", "group": "write_group"}


class Racing:
    """The store, except that once armed, its ``method`` loses ``times`` races in a row
    (nothing written), the clock moving ``step_s`` at each."""

    def __init__(self, inner: Store, clock: FixedClock, *, times: int, step_s: float) -> None:
        self.inner, self.clock, self.times, self.step_s = inner, clock, times, step_s
        self.method: str | None = None
        self.lost = self.won = 0

    def arm(self, method: str) -> None:
        self.method = method

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.inner, name)
        if name != self.method:
            return real

        async def racing(*args: Any, **kwargs: Any) -> Any:
            if self.lost < self.times:
                self.lost += 1
                self.clock.advance(seconds=self.step_s)
                raise ConcurrencyConflict()
            self.won += 1
            return await real(*args, **kwargs)

        return racing


async def answered(
    kind: str, store: Racing, clock: FixedClock, email: str
) -> tuple[int, StorageUnavailable | None]:
    """Ask for an answer of ``kind``, its write racing from the moment the question is stored:
    how many messages the store then holds (for a regenerate, versions of the last answer),
    and the error the answer ended with, if any."""
    error: StorageUnavailable | None = None
    if kind == "group":
        groups = GroupService(
            store, EchoModel(), SETTINGS, RecordingRealtime(), clock=clock, sleep=no_pause
        )
        made = await groups.create(email, None, GroupCreateRequest(name="Team", members=[]))
        asked = GroupSendRequest.model_validate({"content": "q?", "ask": True})
        sent = await groups.send(email, None, made.group_id, asked)
        store.arm(WRITES[kind])
        try:
            await sent.result()
        except StorageUnavailable as given_up:
            error = given_up
        stored, _ = await store.inner.group_messages(made.group_id, limit=50)
        return len(stored), error
    svc = Conversations(store, EchoModel(), SETTINGS, clock=clock, sleep=no_pause)
    if kind == "turn":
        turn = await svc.begin_turn(email, ChatRequest(message="q"))
    else:
        first = await svc.chat(email, ChatRequest(message="q"))
        turn = await svc.begin_regenerate(email, first.session_id, RegenerateRequest())
    store.arm(WRITES[kind])
    try:
        await turn.result()
    except StorageUnavailable as given_up:
        error = given_up
    detail = await svc.get_session(email, turn.session_id)
    if kind == "regenerate":
        last = detail.messages[-1].id
        return len((await svc.message_versions(email, turn.session_id, last)).versions), error
    return len(detail.messages), error


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_an_answer_outlasts_any_number_of_races_within_its_budget(
    run: Runner[None], emails: tuple[str, str], kind: str
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(START)
        # More lost races than any count of attempts the services use (40, 60), in no time.
        racing = Racing(store, clock, times=100, step_s=0)
        # The question and its answer; for a regenerate, the answer and its earlier version.
        assert await answered(kind, racing, clock, alice) == (2, None)
        assert (racing.lost, racing.won) == (100, 1)

    run(scenario)


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_an_answer_is_given_up_once_a_race_is_lost_past_its_budget(
    run: Runner[None], emails: tuple[str, str], kind: str
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(START)
        # Each lost race takes 40% of the budget: lost at 40% and 80%, tried again; lost at
        # 120%, given up without another attempt.
        racing = Racing(store, clock, times=100, step_s=ANSWER_COMMIT_PATIENCE_S * 0.4)
        stored, error = await answered(kind, racing, clock, alice)
        assert isinstance(error, StorageUnavailable)
        assert (racing.lost, racing.won) == (3, 0)
        # Nothing of it written: the question alone; for a regenerate, the answer it would
        # have replaced, as it was.
        assert stored == 1

    run(scenario)
