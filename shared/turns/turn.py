"""A chat turn in flight: the answer (and a model-written title) run in tasks of their own.

Once the user's message is stored, the model's answer and its final write run in a task that
does not belong to the HTTP request: a streaming client that goes away half-way does not stop
the answer from being stored (``docs/http.md``, "Streaming"). The request's response still
waits for that task (``Turn.finish``) before it ends: the Functions host knows nothing of the
task, and an instance may be shut down once its invocations have ended. Strong references keep
those tasks alive until they end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.models import ChatResponse, MessageOut, MessageRecord

# Produces the stored answer, writing each piece of text to the queue as it arrives.
Answer = Callable[[asyncio.Queue[str | None]], Awaitable[MessageRecord]]


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
class Turn:
    """A chat turn whose user message is stored. ``deltas()`` streams the answer,
    ``model_title()`` waits for a model-written title (None if there is none), ``result()`` for
    the answer (and the title)."""

    session_id: str
    title: str
    user: MessageRecord
    _answer: Answer | None = None
    _replayed: MessageRecord | None = None  # a retry's answer, stored the first time
    _title: Awaitable[str | None] | None = None
    # A regenerate: a new answer to a question stored before (``TurnResult.answer_only``).
    answer_only: bool = False
    _task: asyncio.Task[MessageRecord] | None = field(default=None, init=False)
    _title_task: asyncio.Task[str | None] | None = field(default=None, init=False)
    _queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue, init=False)

    def __post_init__(self) -> None:
        if self._title is not None:
            # Asked at once, beside the answer: a title costs the caller no extra wait.
            self._title_task = _keep(asyncio.ensure_future(self._title))

    def _start(self) -> asyncio.Task[MessageRecord]:
        if self._task is None:
            self._task = _keep(asyncio.create_task(self._run()))
        return self._task

    async def _run(self) -> MessageRecord:
        assert self._answer is not None
        try:
            return await self._answer(self._queue)
        finally:
            self._queue.put_nowait(None)  # end of stream, also on failure

    async def deltas(self) -> AsyncIterator[str]:
        """The answer's text as it arrives (a replayed answer comes in one piece)."""
        if self._replayed is not None:
            yield self._replayed.content
            return
        task = self._start()
        while (piece := await self._queue.get()) is not None:
            yield piece
        await asyncio.shield(task)  # raises the model's error, if any

    async def model_title(self) -> str | None:
        """The model's title once stored, or None (no title call, or it failed: logged)."""
        if self._title_task is None:
            return None
        title = await asyncio.shield(self._title_task)
        if title is not None:
            self.title = title
        return title

    async def finish(self, within_s: float) -> bool:
        """Wait, at most ``within_s``, until the answer (started now if the stream never asked
        for it) and the title have been stored or have failed; True if they have. What a
        response whose client has gone awaits, so that its invocation ends only then."""
        tasks: list[asyncio.Future[Any]] = []
        if self._answer is not None and self._replayed is None:
            tasks.append(self._start())
        if self._title_task is not None:
            tasks.append(self._title_task)
        if not tasks:
            return True
        # asyncio.wait cancels nothing: past the bound the tasks go on, unawaited.
        _, pending = await asyncio.wait(tasks, timeout=within_s)
        return not pending

    async def result(self) -> TurnResult:
        if self._replayed is not None:
            assistant = self._replayed
        else:
            assistant = await asyncio.shield(self._start())
        await self.model_title()
        return TurnResult(
            self.session_id,
            self.title,
            self.user.to_api(),
            assistant.to_api(),
            answer_only=self.answer_only,
        )


# Strong references to running tasks: a task nobody references may be garbage-collected.
_RUNNING: set[asyncio.Future[Any]] = set()
F = TypeVar("F", bound="asyncio.Future[Any]")


def _keep(task: F) -> F:
    _RUNNING.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Future[Any]) -> None:
    _RUNNING.discard(task)
    if not task.cancelled():
        # Mark a failure as seen: when the streaming client has gone, nobody awaits the task,
        # and the failure was logged where it happened.
        task.exception()
