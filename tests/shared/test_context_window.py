"""The window the prompt cache can keep, through the service on every store (shared/context.py):
each answer stores where its window started, the next turn reads it back with the window and
keeps the same beginning, so consecutive calls share their prompt's beginning byte for byte
until a block drop; every call names the conversation with a ``prompt_cache_key`` derived from
the session, never from the email."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest

from shared.clock import FixedClock
from shared.config import load_settings
from shared.llm.base import ModelMessage, Usage
from shared.models import ChatRequest
from shared.storage.base import Store
from shared.turns.answer import prompt_cache_key
from tests.support.conversations import Conversations
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

START = datetime(2031, 9, 1, 9, 0, tzinfo=UTC)


class RecordingModel:
    """Answers at some length and remembers every call's messages and cache key."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[list[ModelMessage], str | None]] = []

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        self.calls.append((list(messages), cache_key))
        yield "an answer of some length " * 12
        yield Usage(self.name, 100, 50)

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        return "a title"

    async def close(self) -> None:
        return None


def test_turns_keep_their_beginning_and_name_the_session_to_the_cache(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        settings = load_settings({"MAX_CONTEXT_TOKENS": "1500", "MAX_HISTORY_MESSAGES": "20"})
        model = RecordingModel()
        service = Conversations(store, model, settings, clock=FixedClock(START))
        session_id: str | None = None
        for turn in range(30):
            result = await service.chat(
                alice, ChatRequest(message=f"question {turn} " * 10, sessionId=session_id)
            )
            session_id = result.session_id
        assert session_id is not None
        keys = {key for _, key in model.calls}
        assert keys == {prompt_cache_key(session_id)}
        assert alice not in next(iter(keys)) and alice.split("@")[0] not in next(iter(keys))

        prompts = [messages for messages, _ in model.calls]
        kept = drops = 0
        for before, after in itertools.pairwise(prompts):
            assert after[1]["role"] == "user"
            if after[: len(before)] == before:
                kept += 1
            else:
                drops += 1
                assert after[0] == before[0]  # the system prompt
        # Several calls in a row keep the beginning; a block drop now and then.
        assert drops >= 2 and kept >= 3 * drops

        other = await service.chat(alice, ChatRequest(message="another conversation"))
        assert model.calls[-1][1] == prompt_cache_key(other.session_id) != next(iter(keys))

    run(scenario)
