"""A group question in flight: the asker's message is stored; the assistant's answer runs in a
task of its own (as a chat turn's does, ``shared/turns.py``), so a streaming client that goes
away does not stop the answer from being stored, and the response waits for it before it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.groups.models import GroupMessageRecord

# Produces the stored answer, writing each piece of text to the queue as it arrives.
Answer = Callable[[asyncio.Queue[str | None]], Awaitable[GroupMessageRecord]]


@dataclass
class GroupSend:
    """A stored group message and, when it asked the assistant, its answer to come.
    ``deltas()`` streams the answer, ``result()`` waits for the stored messages."""

    group_id: str
    user: GroupMessageRecord
    _answer: Answer | None = None
    _replayed: GroupMessageRecord | None = None  # a retry's answer, stored the first time
    _task: asyncio.Task[GroupMessageRecord] | None = field(default=None, init=False)
    _queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue, init=False)

    @property
    def asks(self) -> bool:
        return self._answer is not None or self._replayed is not None

    def _start(self) -> asyncio.Task[GroupMessageRecord]:
        if self._task is None:
            self._task = _keep(asyncio.create_task(self._run()))
        return self._task

    async def _run(self) -> GroupMessageRecord:
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
        if self._answer is None:
            return
        task = self._start()
        while (piece := await self._queue.get()) is not None:
            yield piece
        await asyncio.shield(task)  # raises the model's error, if any

    async def finish(self, within_s: float) -> bool:
        """Wait, at most ``within_s``, until the answer is stored or has failed."""
        if self._answer is None or self._replayed is not None:
            return True
        _, pending = await asyncio.wait([self._start()], timeout=within_s)
        return not pending

    async def result(self) -> list[GroupMessageRecord]:
        """The stored messages: the user's, then the answer when the assistant was asked."""
        if self._replayed is not None:
            return [self.user, self._replayed]
        if self._answer is None:
            return [self.user]
        return [self.user, await asyncio.shield(self._start())]


# Strong references to running tasks: a task nobody references may be garbage-collected.
_RUNNING: set[asyncio.Future[Any]] = set()


def _keep(task: asyncio.Task[GroupMessageRecord]) -> asyncio.Task[GroupMessageRecord]:
    _RUNNING.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Future[Any]) -> None:
    _RUNNING.discard(task)
    if not task.cancelled():
        task.exception()  # seen: a failure was logged where it happened
