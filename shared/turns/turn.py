"""A chat turn in flight: its user message is stored; the answer runs in a task of its own
(``shared/inflight.py``), and so does a model-written title, asked beside it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from shared.inflight import InFlight, keep
from shared.models import ChatResponse, MessageOut, MessageRecord


@dataclass
class TurnResult:
    session_id: str
    title: str
    user: MessageOut
    assistant: MessageOut
    # A regenerate stored no new question: its responses hold the answer only.
    answer_only: bool = False

    @property
    def messages(self) -> list[MessageOut]:
        return [self.assistant] if self.answer_only else [self.user, self.assistant]

    def to_response(self) -> ChatResponse:
        return ChatResponse(session_id=self.session_id, title=self.title, messages=self.messages)


@dataclass
class Turn(InFlight[MessageRecord]):
    """A chat turn whose user message is stored. ``deltas()`` streams the answer,
    ``model_title()`` waits for a model-written title (None if there is none), ``result()`` for
    the answer (and the title)."""

    session_id: str
    title: str
    user: MessageRecord
    _title: Awaitable[str | None] | None = None
    # A regenerate: a new answer to a question stored before (``TurnResult.answer_only``).
    answer_only: bool = False
    _title_task: asyncio.Future[str | None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self._title is not None:
            # Asked at once, beside the answer: a title costs the caller no extra wait.
            self._title_task = keep(asyncio.ensure_future(self._title))

    def _beside(self) -> list[asyncio.Future[Any]]:
        # The title: a response whose client has gone ends once it is stored too.
        return [self._title_task] if self._title_task is not None else []

    async def model_title(self) -> str | None:
        """The model's title once stored, or None (no title call, or it failed: logged)."""
        if self._title_task is None:
            return None
        title = await asyncio.shield(self._title_task)
        if title is not None:
            self.title = title
        return title

    async def result(self) -> TurnResult:
        assistant = await self.stored_answer()
        assert assistant is not None  # a turn always asks for an answer
        await self.model_title()
        return TurnResult(
            self.session_id,
            self.title,
            self.user.to_api(),
            assistant.to_api(),
            answer_only=self.answer_only,
        )
