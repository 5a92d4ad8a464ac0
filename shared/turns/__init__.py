"""The chat turn (``docs/design.md``, "The turn"), one job per module:

- ``turn.py``: a turn in flight (its answer and title in tasks of their own) and its result;
- ``chat.py``: POST /api/chat up to the answer: the user's message stored, or found again;
- ``answer.py``: the model's answer generated, streamed and stored with its checkpoints;
- ``storing.py``: the fenced writes of an answer (appended, or finished after checkpoints);
- ``model_title.py``: a new conversation's model-written title, asked beside its first answer;
- ``follow.py``: an answer being generated, followed or stopped from any instance;
- ``regenerate.py``: the last answer regenerated, and a message's versions.

A turn: one read of the session item and its newest messages, then one atomic write that stores
the user message (before the model is called), then the model, then one atomic write that
stores the answer. Each write is guarded by the session's ETag; when another writer wins the
race, the loser re-reads and re-sequences after a short randomised pause (``shared/backoff.py``),
so nothing is lost or duplicated and busy sessions do not starve their own turns.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.backoff import Sleep
from shared.clock import Clock, SystemClock
from shared.config import Settings
from shared.llm.base import ChatModel
from shared.storage.base import ConversationStore
from shared.turns.answer import Answering
from shared.turns.chat import ChatTurns
from shared.turns.follow import AnswersInProgress
from shared.turns.model_title import ModelTitles
from shared.turns.regenerate import Regenerating
from shared.turns.storing import AnswerWrites
from shared.turns.turn import Turn, TurnResult
from shared.usage import UsageMeter

__all__ = ["Turn", "TurnResult", "Turns"]


@dataclass(frozen=True)
class Turns:
    """The turn's entry points over one store and model, as the composition root wires them
    (``shared/runtime.py``): ``chat`` (POST /api/chat), ``answers`` (an answer in progress,
    followed or stopped), ``regenerating`` (regenerate, versions)."""

    chat: ChatTurns
    answers: AnswersInProgress
    regenerating: Regenerating

    @classmethod
    def build(
        cls,
        store: ConversationStore,
        model: ChatModel,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        checkpoint_sleep: Sleep | None = None,
    ) -> Turns:
        """``sleep`` is the backoff pause between lost races; ``checkpoint_sleep`` the pause
        between an answer's checkpoints and between a follower's reads (shared/answers.py):
        real time by default, whatever ``sleep`` is (tests inject a no-op backoff)."""
        clock = clock or SystemClock()
        checkpoints = checkpoint_sleep or asyncio.sleep
        usage = UsageMeter(store, settings, clock, sleep=sleep)
        writes = AnswerWrites(store, settings, clock, model.name, sleep)
        answering = Answering(store, model, settings, clock, usage, writes, checkpoints)
        titles = ModelTitles(store, model, settings, usage, answering, sleep)
        return cls(
            chat=ChatTurns(store, settings, clock, answering, titles, sleep),
            answers=AnswersInProgress(store, settings, answering.shown_at, checkpoints),
            regenerating=Regenerating(store, settings, clock, answering, writes, sleep),
        )
