"""Generating an answer: the model called with the conversation's context window, its text
streamed as it arrives, and stored whole or, when it runs longer than one
``STREAM_CHECKPOINT_MS``, as it grows (``docs/design.md``, "Streaming checkpoints"), where a
stop asked on any instance is met. The writes themselves are ``shared/turns/storing.py``'s."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from shared.answers import Checkpoints, ShownAt, answer_budget_s
from shared.audit import user_hash
from shared.backoff import Sleep
from shared.clock import Clock
from shared.config import Settings
from shared.context import Spoken, Window, context_window
from shared.deadline import storage_budget
from shared.errors import ApiError, ModelError, NotFound, QuotaExceeded
from shared.events import LatencyTimer, Outcome, TurnKind, emit
from shared.llm.base import ChatModel, Usage
from shared.models import MessageRecord, SessionRecord
from shared.storage.base import Checkpoint, ConversationStore, Spent
from shared.time_limits import model_budget_s
from shared.turns.storing import AnswerWrites, LiveAnswer, StoreAnswer
from shared.turns.turn import Turn
from shared.usage import UsageMeter

log = logging.getLogger("parley.turns")


def prompt_cache_key(session_id: str) -> str:
    """The ``prompt_cache_key`` of a conversation: stable for the session (its calls share
    their beginning, see shared/context.py) and derived from its id only, never the email."""
    return "parley-" + hashlib.sha256(session_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Answering:
    """The answer to a stored question: a :class:`Turn` whose task generates and stores it."""

    store: ConversationStore
    model: ChatModel
    settings: Settings
    clock: Clock
    usage: UsageMeter
    writes: AnswerWrites
    # The pause between an answer's checkpoints (shared/answers.py).
    checkpoint_sleep: Sleep

    def shown_at(self) -> ShownAt:
        """How readers see answers now: one whose generator died is "interrupted"."""
        budget_s = answer_budget_s(self.settings.llm_timeout_s, self.settings.llm_max_retries)
        return ShownAt(self.clock.now(), budget_s)

    async def check_quota(self, email: str) -> None:
        """429 quota_exceeded (and its analytics event), before anything is stored or the model
        is called."""
        try:
            await self.usage.check(email)
        except QuotaExceeded:
            self.event(email, "answer", None, Spent(), "quota", None)
            raise

    def turn(
        self,
        email: str,
        session: SessionRecord,
        user: MessageRecord,
        window: Sequence[Spoken],
        *,
        title: Awaitable[str | None] | None = None,
        store_answer: StoreAnswer | None = None,
    ) -> Turn:
        """The turn of the stored question ``user``, its answer to come: stored by
        ``store_answer`` (a regenerate's, in place of the last answer) or appended after the
        question (``AnswerWrites.append``)."""

        async def answer(queue: asyncio.Queue[str | None]) -> MessageRecord:
            return await self._answer(
                email, session, user, window, queue, store_answer or self.writes.append
            )

        return Turn(
            session.id,
            session.title,
            user,
            _answer=answer,
            _title=title,
            answer_only=store_answer is not None,
        )

    async def _answer(
        self,
        email: str,
        session: SessionRecord,
        user: MessageRecord,
        window: Sequence[Spoken],
        queue: asyncio.Queue[str | None],
        store_answer: StoreAnswer,
    ) -> MessageRecord:
        """The model's answer to ``user``, streamed to ``queue``, then stored by
        ``store_answer``."""
        # The model sees the stored history up to and including this turn's user message.
        context = context_window(
            self.settings.system_prompt,
            [*window, user],
            max_messages=self.settings.max_history_messages,
            max_tokens=self.settings.max_context_tokens,
            policy=self.settings.context_window,
        )
        return await self.generate(email, session, user, context, queue, write=store_answer)

    async def generate(
        self,
        email: str,
        session: SessionRecord,
        user: MessageRecord,
        context: Window,
        queue: asyncio.Queue[str | None],
        *,
        write: StoreAnswer | None = None,
    ) -> MessageRecord:
        """Call the model and store its answer to ``user``: the answer path every turn takes.

        Each piece of text goes to ``queue`` as it arrives. An answer that ends within one
        ``STREAM_CHECKPOINT_MS`` is stored once, whole (``write``, by default
        ``AnswerWrites.append``); a longer one is stored as it grows (its first checkpoint is
        ``write`` with ``status="streaming"``, then ``_checkpoint`` patches that item, then
        ``AnswerWrites.finish``), and stops when a stop is asked for on any instance
        (``docs/design.md``, "Streaming checkpoints"). ``write`` is the one step that decides
        where an answer goes (a new message, for a turn)."""
        store_answer: StoreAnswer = write or self.writes.append
        messages = context.messages
        pieces: list[str] = []
        usage: Usage | None = None
        live = LiveAnswer(session)
        # The answer's whole deadline: every attempt and the pauses between, as counted against
        # Azure's 230 s for an HTTP answer (shared/time_limits.py). The SDK's own timeout is per
        # read, and it honours a server's Retry-After of up to two minutes: neither may stretch it.
        deadline_s = model_budget_s(self.settings.llm_timeout_s, self.settings.llm_max_retries)
        timer = LatencyTimer()

        async def generate() -> None:
            nonlocal usage
            async with asyncio.timeout(deadline_s):
                async for piece in self.model.stream(
                    messages, cache_key=prompt_cache_key(session.id)
                ):
                    if isinstance(piece, Usage):
                        usage = piece
                    else:
                        timer.first_token()
                        pieces.append(piece)
                        queue.put_nowait(piece)

        def text() -> str:
            return "".join(pieces)

        async def checkpoint(content: str | None) -> Checkpoint:
            return await self._checkpoint(
                email, user, live, content, context_from=context.start_seq, write=store_answer
            )

        generation = asyncio.ensure_future(generate())
        checkpoints = Checkpoints(
            checkpoint,
            text,
            interval_s=self.settings.stream_checkpoint_ms / 1000,
            sleep=self.checkpoint_sleep,
            # The model call is cancelled; what it said so far is stored as "stopped".
            on_stop=generation.cancel,
        )
        checkpoints.start()
        failed = True
        try:
            try:
                await generation
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not checkpoints.stopped or (task is not None and task.cancelling()):
                    raise
            failed = False
        except TimeoutError:
            log.warning(
                "model_failed",
                extra={
                    "session_id": session.id,
                    "code": "model_deadline",
                    "answer_chars": sum(map(len, pieces)),
                },
            )
            raise ModelError("The model did not answer in time.") from None
        except ApiError as error:
            log.warning(
                "model_failed",
                extra={
                    "session_id": session.id,
                    "code": error.code,
                    "answer_chars": sum(map(len, pieces)),
                },
            )
            raise
        except Exception as exc:  # an adapter bug must still look like a model failure
            # The type only: an exception's message may quote the conversation.
            log.error("model_failed %s", type(exc).__name__, extra={"session_id": session.id})
            raise ModelError() from exc
        finally:
            generation.cancel()  # a no-op once it has ended; else the turn itself was cancelled
            await checkpoints.close()
            # What the model produced is spent, even when it failed half-way.
            if failed:
                spent = Spent()
                if usage is not None or pieces:
                    spent = await self.usage.record(email, messages, text(), usage, turn=True)
                self.event(email, "answer", usage, spent, "failed", timer)
                if live.growing is not None:
                    # The text so far stays, shown as cut short: it can be regenerated.
                    await self._finish_cut_short(email, live, text(), usage, timer)
        content = text()
        # Counted beside the answer's write, not before it: the answer is stored no later.
        recording = asyncio.ensure_future(
            self.usage.record(email, messages, content, usage, turn=True)
        )
        outcome: Outcome = "failed"
        try:
            if live.theirs is not None:
                # A concurrent attempt of the same request stored its answer first: that one
                # is the answer (as it is now).
                latest = await self.store.get_message(
                    email, session.id, live.theirs.seq, where="active"
                )
                outcome = "complete"
                return latest or live.theirs
            if checkpoints.stopped and live.growing is not None:
                stored = await self.writes.finish(email, live, content, usage, "stopped", timer)
                outcome = "stopped"
                return stored
            if not content.strip():
                if live.growing is not None:
                    await self._finish_cut_short(email, live, content, usage, timer)
                raise ModelError("The model returned an empty answer.")
            if live.growing is not None:
                stored = await self.writes.finish(email, live, content, usage, "complete", timer)
            else:
                stored, _, _ = await store_answer(
                    email,
                    session,
                    user,
                    content,
                    usage,
                    context_from=context.start_seq,
                    # Stored with the answer, in the same write: the report's latency figures.
                    latency=(timer.first_token_ms, timer.total_ms()),
                )
            outcome = "complete"
            return stored
        finally:
            self.event(email, "answer", usage, await recording, outcome, timer)

    async def _checkpoint(
        self,
        email: str,
        user: MessageRecord,
        live: LiveAnswer,
        content: str | None,
        *,
        context_from: int | None,
        write: StoreAnswer,
    ) -> Checkpoint:
        """One checkpoint of an answer being generated: the first creates its item
        (``_begin_streaming``), each next one writes the text so far (``None``: the time only)
        into that item alone. A storage failure here is not the answer's: it is logged and the
        next checkpoint (or the final write) tries again."""
        try:
            with storage_budget(self.settings.store_timeout_s):
                if live.growing is None:
                    return await self._begin_streaming(
                        email, user, live, content or "", context_from=context_from, write=write
                    )
                return await self.store.checkpoint_answer(
                    email, live.session.id, live.growing.seq, content, at=self.clock.now()
                )
        except ApiError as error:
            log.warning(
                "checkpoint_failed", extra={"session_id": live.session.id, "code": error.code}
            )
            return Checkpoint.GONE if isinstance(error, NotFound) else Checkpoint.WRITTEN

    async def _begin_streaming(
        self,
        email: str,
        user: MessageRecord,
        live: LiveAnswer,
        content: str,
        *,
        context_from: int | None,
        write: StoreAnswer,
    ) -> Checkpoint:
        """The first checkpoint: the answer's item, ``"streaming"`` with the text so far, in the
        same fenced write a whole answer takes (``write``: ``AnswerWrites.append`` for a
        turn)."""
        stored, session, ours = await write(
            email,
            live.session,
            user,
            content,
            None,
            context_from=context_from,
            status="streaming",
        )
        if not ours:
            live.theirs = stored
            return Checkpoint.GONE
        live.growing, live.session = stored, session
        return Checkpoint.WRITTEN

    async def _finish_cut_short(
        self, email: str, live: LiveAnswer, content: str, usage: Usage | None, timer: LatencyTimer
    ) -> None:
        """A failed generation's item, stored ``"interrupted"`` with its text so far; a failure
        of this write is logged, never raised over the model's own error (readers then see it
        "interrupted" once it is old enough)."""
        try:
            await self.writes.finish(email, live, content, usage, "interrupted", timer)
        except ApiError as error:
            log.warning(
                "answer_unfinished", extra={"session_id": live.session.id, "code": error.code}
            )

    def event(
        self,
        email: str,
        kind: TurnKind,
        usage: Usage | None,
        spent: Spent,
        outcome: Outcome,
        timer: LatencyTimer | None,
    ) -> None:
        """The one analytics event of a model call (or of a turn refused for quota)."""
        emit(
            "turn",
            user=user_hash(email, self.settings.log_hash_salt),
            kind=kind,
            model=usage.model if usage is not None and usage.model else self.model.name,
            promptTokens=spent.prompt_tokens,
            cachedTokens=spent.cached_tokens,
            completionTokens=spent.completion_tokens,
            firstTokenMs=timer.first_token_ms if timer else None,
            totalMs=timer.total_ms() if timer else 0,
            outcome=outcome,
        )
