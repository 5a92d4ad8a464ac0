"""Conversations as a test drives them: the service (``shared/service.py``: reads, managing,
data rights) and the turn (``shared/turns/``: chat, answers, regenerate) over one store, built
as the composition root builds them (``shared/runtime.py``), behind one object, so that a
scenario chats and then reads as a client of the API does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from shared.answers import Followed
from shared.backoff import Sleep
from shared.clock import Clock, SystemClock
from shared.config import Settings
from shared.llm.base import ChatModel
from shared.models import ChatRequest, RegenerateRequest, VersionList
from shared.service import ConversationService
from shared.turns import Turn, TurnResult, Turns


class Conversations:
    def __init__(
        self,
        store: Any,
        model: ChatModel,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        checkpoint_sleep: Sleep | None = None,
    ) -> None:
        clock = clock or SystemClock()
        self.service = ConversationService(store, settings, clock=clock, sleep=sleep)
        self.turns = Turns.build(
            store, model, settings, clock=clock, sleep=sleep, checkpoint_sleep=checkpoint_sleep
        )

    # The turn's entry points, as functions/chat.py and functions/sessions.py call them.

    async def begin_turn(self, email: str, request: ChatRequest) -> Turn:
        return await self.turns.chat.begin_turn(email, request)

    async def chat(self, email: str, request: ChatRequest) -> TurnResult:
        return await self.turns.chat.chat(email, request)

    async def begin_regenerate(
        self, email: str, session_id: str, request: RegenerateRequest
    ) -> Turn:
        return await self.turns.regenerating.begin_regenerate(email, session_id, request)

    async def regenerate(
        self, email: str, session_id: str, request: RegenerateRequest
    ) -> TurnResult:
        return await self.turns.regenerating.regenerate(email, session_id, request)

    async def message_versions(self, email: str, session_id: str, message_id: str) -> VersionList:
        return await self.turns.regenerating.message_versions(email, session_id, message_id)

    def follow_answer(self, email: str, session_id: str) -> AsyncIterator[Followed]:
        return self.turns.answers.follow_answer(email, session_id)

    async def stop_answer(self, email: str, session_id: str) -> bool:
        return await self.turns.answers.stop_answer(email, session_id)

    def __getattr__(self, name: str) -> Any:
        """Everything else (reads, managing, data rights, usage, store, clock) is the
        service's."""
        return getattr(self.service, name)

    async def export_json(self, email: str, *, now: datetime) -> AsyncIterator[str]:
        """The JSON export as GET /api/export sends it (``export_as``), piece by piece."""
        async for piece in self.service.export_as(email, "json", now=now):
            yield piece.decode()
