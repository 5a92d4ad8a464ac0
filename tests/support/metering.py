"""A model that reports fixed token usage, and the service on it with token budgets: for the
usage, report and budget tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from shared.clock import FixedClock
from shared.config import load_settings
from shared.llm.base import ModelMessage, Usage
from shared.storage.base import Store
from tests.support.conversations import Conversations

PROMPT, COMPLETION, CACHED = 100, 20, 64


class MeteredModel:
    """Answers every call with fixed reported usage, and counts the calls."""

    name = "metered"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        self.calls += 1
        await asyncio.sleep(0)  # every concurrent turn is in flight before any is answered
        yield "an answer"
        yield Usage(self.name, PROMPT, COMPLETION, CACHED)

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        return "a title"

    async def close(self) -> None:
        return None


def metered_service(
    store: Store, clock: FixedClock, *, daily: int, monthly: int = 0
) -> tuple[Conversations, MeteredModel]:
    settings = load_settings(
        {"USER_DAILY_TOKEN_LIMIT": str(daily), "USER_MONTHLY_TOKEN_LIMIT": str(monthly)}
    )
    model = MeteredModel()
    return Conversations(store, model, settings, clock=clock), model
