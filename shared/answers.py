"""Answers stored as they grow: how often a streaming answer is written, and how it is shown.

An answer that ends within its first ``STREAM_CHECKPOINT_MS`` is written once, whole, like any
other. A longer one is created (``status: "streaming"``, a write fenced by the session's ETag
like any turn's) at its first checkpoint, then updated by the next ones: the text so far, at
most once per ``STREAM_CHECKPOINT_MS``, each a single conditional write of that item alone; the
final write (whole text, final status) is fenced by the session's ETag again
(``docs/design.md``, "Streaming checkpoints"). A stop asked for on any instance marks the item;
the generator's next checkpoint is refused for it and the generation stops.

An answer whose generation died with its instance stays ``"streaming"`` in the store; it is
*shown* as ``"interrupted"`` once its last checkpoint is older than the model's whole time
budget (``shared.time_limits.model_budget_s``): no live generation can be silent that long,
since a live one writes at least once per interval and the turn cancels the model call at
that deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.backoff import Sleep
from shared.models import MessageRecord
from shared.storage.base import Checkpoint
from shared.time_limits import model_budget_s

# Storing an answer the model has already produced (a chat turn's, a regenerate's, a group's):
# keep trying while its conversation exists, for at most this long (contention only: a store
# that refuses writes fails the answer at once).
ANSWER_COMMIT_PATIENCE_S = 120.0


def silent_for_too_long(message: MessageRecord, now: datetime, budget_s: float) -> bool:
    """True when a "streaming" answer's last write is older than ``budget_s``: its generator
    is gone."""
    if message.status != "streaming":
        return False
    last = message.checkpoint_at or message.timestamp
    return now - last > timedelta(seconds=budget_s)


def shown(message: MessageRecord, now: datetime, budget_s: float) -> MessageRecord:
    """The message as a reader is given it: a dead "streaming" answer is "interrupted"."""
    if silent_for_too_long(message, now, budget_s):
        return message.model_copy(update={"status": "interrupted"})
    return message


@dataclass(frozen=True)
class ShownAt:
    """How answers are shown at one moment (``now``): an answer silent for longer than
    ``budget_s`` is "interrupted". What every read applies: a session, a page, an export."""

    now: datetime
    budget_s: float

    def __call__(self, message: MessageRecord) -> MessageRecord:
        return shown(message, self.now, self.budget_s)


def answer_budget_s(llm_timeout_s: float, llm_max_retries: int) -> float:
    """How long a live answer can go without a write: the model's whole time budget."""
    return model_budget_s(llm_timeout_s, llm_max_retries)


@dataclass(frozen=True)
class Resumed:
    """Following an answer: what it holds when the follower comes (shown as it is now)."""

    message: MessageRecord


@dataclass(frozen=True)
class Grew:
    """Following an answer: text added since the last event."""

    content: str


@dataclass(frozen=True)
class Ended:
    """Following an answer: it ended (``message`` as stored), or nothing was being generated
    (``None``)."""

    message: MessageRecord | None


Followed = Resumed | Grew | Ended


class Checkpoints:
    """Paces the writes of an answer being generated: none during its first ``interval_s`` (an
    answer that ends within it is written once, whole, like any other: no extra request), then
    one per ``interval_s`` while it goes on, never two at once. The first creates the answer's
    item (``status: "streaming"``), each next one patches it (``None``: the text has not
    changed since, only the time is written, which still tells readers the answer is alive).

    ``write`` reports what the store found: once it is ``GONE`` (deleted, moved, not ours) no
    more writes are made; ``STOPPED`` (a stop was asked for) calls ``on_stop`` once. ``close``
    waits for a write in flight (never cancels one: a write cut short could land after the
    final write)."""

    def __init__(
        self,
        write: Callable[[str | None], Awaitable[Checkpoint]],
        text: Callable[[], str],
        *,
        interval_s: float,
        sleep: Sleep,
        on_stop: Callable[[], object],
    ) -> None:
        self._write = write
        self._text = text
        self._interval_s = interval_s
        self._sleep = sleep
        self._on_stop = on_stop
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        self.stopped = False

    def start(self) -> None:
        """The answer's generation starts now: the first interval counts from here."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _pause(self) -> bool:
        """One interval, cut short by ``close``; True if it ran its course."""
        pause = asyncio.ensure_future(self._sleep(self._interval_s))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({pause, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pause.cancel()
            closing.cancel()
        return not self._closing.is_set()

    async def _run(self) -> None:
        written: str | None = None
        while await self._pause():
            now = self._text()
            self.writes += 1
            outcome = await self._write(None if self.writes > 1 and now == written else now)
            if outcome is Checkpoint.STOPPED:
                self.stopped = True
                self._on_stop()
                return
            if outcome is Checkpoint.GONE:
                return
            written = now

    async def close(self) -> None:
        """No more writes; returns once a write in flight has ended."""
        self._closing.set()
        if self._task is not None:
            await self._task
