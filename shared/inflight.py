"""An answer in flight: the model's answer and its final write run in a task of their own, for a
chat turn (``shared/turns/turn.py``) and a group question (``shared/groups/ask.py``) alike.

Once the question is stored, the answer runs in a task that does not belong to the HTTP
request: a streaming client that goes away half-way does not stop the answer from being stored
(``docs/http.md``, "Streaming"). The request's response still waits for that task
(``InFlight.finish``) before it ends: the Functions host knows nothing of the task, and an
instance may be shut down once its invocations have ended. Strong references keep those tasks
alive until they end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar


class Said(Protocol):
    """A stored answer: its text is what a replay streams."""

    @property
    def content(self) -> str: ...


R = TypeVar("R", bound=Said)
F = TypeVar("F", bound="asyncio.Future[Any]")

# Produces the stored answer, writing each piece of text to the queue as it arrives.
Produce = Callable[[asyncio.Queue[str | None]], Awaitable[R]]


@dataclass(kw_only=True)
class InFlight(Generic[R]):
    """An answer to come (``_answer``), one stored before (``_replayed``: a retry's, stored the
    first time), or none (nothing asked). The answer starts when first streamed or awaited.
    A chat turn and a group question are each one, with what is theirs beside it."""

    _answer: Produce[R] | None = None
    _replayed: R | None = None
    _task: asyncio.Task[R] | None = field(default=None, init=False)
    _queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue, init=False)

    @property
    def asks(self) -> bool:
        """Whether an answer was asked for (to come, or replayed)."""
        return self._answer is not None or self._replayed is not None

    def _start(self) -> asyncio.Task[R]:
        if self._task is None:
            self._task = keep(asyncio.create_task(self._run()))
        return self._task

    async def _run(self) -> R:
        assert self._answer is not None
        try:
            return await self._answer(self._queue)
        finally:
            self._queue.put_nowait(None)  # end of stream, also on failure

    def _beside(self) -> list[asyncio.Future[Any]]:
        """What else runs beside the answer and must end before the response does."""
        return []

    async def deltas(self) -> AsyncIterator[str]:
        """The answer's text as it arrives (a replayed answer comes in one piece)."""
        if self._replayed is not None:
            yield self._replayed.content
            return
        if self._answer is None:
            return
        task = self._start()
        while (piece := await self._queue.get()) is not None:
            yield piece
        await asyncio.shield(task)  # raises the model's error, if any

    async def finish(self, within_s: float) -> bool:
        """Wait, at most ``within_s``, until the answer (started now if the stream never asked
        for it) and what runs beside it have ended, stored or failed; True if they have. What a
        response whose client has gone awaits, so that its invocation ends only then."""
        tasks = self._beside()
        if self._answer is not None and self._replayed is None:
            tasks.append(self._start())
        if not tasks:
            return True
        # asyncio.wait cancels nothing: past the bound the tasks go on, unawaited.
        _, pending = await asyncio.wait(tasks, timeout=within_s)
        return not pending

    async def stored_answer(self) -> R | None:
        """The stored answer (the replayed one, or this one once stored); None if none asked."""
        if self._replayed is not None:
            return self._replayed
        if self._answer is None:
            return None
        return await asyncio.shield(self._start())


# Strong references to running tasks: a task nobody references may be garbage-collected.
_RUNNING: set[asyncio.Future[Any]] = set()


def keep(task: F) -> F:
    """Hold ``task`` until it ends; its failure is then marked as seen."""
    _RUNNING.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Future[Any]) -> None:
    _RUNNING.discard(task)
    if not task.cancelled():
        # Mark a failure as seen: when the streaming client has gone, nobody awaits the task,
        # and the failure was logged where it happened.
        task.exception()
