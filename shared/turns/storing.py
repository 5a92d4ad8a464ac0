"""Storing an answer: the item as it is written, the turn's fenced append after its question,
and the final write of an answer stored as it grew (``docs/design.md``, "The turn").

Each write is guarded by the session's ETag; the model's answer is already produced, so it is
not given up for contention while the session exists (``ANSWER_COMMIT_PATIENCE_S`` bounds a
pathological case, through the one retry rule of ``shared/backoff.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.answers import ANSWER_COMMIT_PATIENCE_S
from shared.backoff import LostRace, RetriesExhausted, Sleep, retry_on_conflict
from shared.clock import Clock
from shared.config import Settings
from shared.deadline import storage_budget
from shared.errors import ConcurrencyConflict, Conflict
from shared.events import LatencyTimer
from shared.llm.base import Usage
from shared.locating import live_session, too_contended
from shared.models import AnswerStatus, MessageRecord, RequestRecord, SessionRecord
from shared.storage.base import ConversationStore


def with_messages(session: SessionRecord, messages: list[MessageRecord]) -> SessionRecord:
    """The session item after appending ``messages``: counters and time."""
    return session.model_copy(
        update={
            "message_count": session.message_count + len(messages),
            "last_seq": messages[-1].seq,
            "updated_at": messages[-1].timestamp,
        }
    )


def request_record(user: MessageRecord) -> RequestRecord | None:
    """The record of a question's clientMessageId (none without one), which a retry finds."""
    if not user.client_message_id:
        return None
    return RequestRecord(
        session_id=user.session_id,
        client_message_id=user.client_message_id,
        user_seq=user.seq,
    )


class StoreAnswer(Protocol):
    """Where an answer is written, in one write fenced by the session's ETag: whole, or
    (``status="streaming"``) its beginning. Returns the message, the session as stored with
    it, and whether it is this call's (False: a concurrent retry's answer, returned instead).
    A turn's is ``AnswerWrites.append`` (a new message after the question), a regenerate's
    ``Regenerating._in_place_of`` (in place of the last answer, kept as a version)."""

    async def __call__(
        self,
        email: str,
        session: SessionRecord,
        user: MessageRecord,
        content: str,
        usage: Usage | None,
        *,
        context_from: int | None = None,
        latency: tuple[int | None, int] | None = None,
        status: AnswerStatus = "complete",
    ) -> tuple[MessageRecord, SessionRecord, bool]: ...


@dataclass
class LiveAnswer:
    """An answer being generated, as its writes leave it: the session item as last written,
    and the answer's item once its first checkpoint created it (``theirs``: a concurrent retry
    of the same request stored its answer first, which is then the answer)."""

    session: SessionRecord
    growing: MessageRecord | None = None
    theirs: MessageRecord | None = None


@dataclass(frozen=True)
class AnswerWrites:
    """The writes of an answer, for a turn and (its item) for a regenerate."""

    store: ConversationStore
    settings: Settings
    clock: Clock
    model_name: str
    sleep: Sleep

    def record(
        self,
        session_id: str,
        seq: int,
        content: str,
        usage: Usage | None,
        context_from: int | None,
        latency: tuple[int | None, int] | None,
        status: AnswerStatus = "complete",
    ) -> MessageRecord:
        """An answer as it is stored, by a turn or by a regenerate: whole, or (``"streaming"``)
        its first checkpoint, which carries its time."""
        now = self.clock.now()
        return MessageRecord(
            session_id=session_id,
            seq=seq,
            role="assistant",
            content=content,
            timestamp=now,
            status=status,
            checkpoint_at=now if status == "streaming" else None,
            model=usage.model if usage else self.model_name,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            context_from=context_from,
            first_token_ms=latency[0] if latency else None,
            total_ms=latency[1] if latency else None,
        )

    async def live_session(self, email: str, session_id: str, attempt: int) -> SessionRecord:
        return await live_session(self.store, email, session_id, attempt, self.sleep)

    async def append(
        self,
        email: str,
        session: SessionRecord,
        user: MessageRecord,
        content: str,
        usage: Usage | None,
        *,
        context_from: int | None = None,
        latency: tuple[int | None, int] | None = None,
        status: AnswerStatus = "complete",
    ) -> tuple[MessageRecord, SessionRecord, bool]:
        """Store the answer the model gave (or, ``"streaming"``, its beginning) in one write
        fenced by the session's ETag: the message, the session as stored with it, and whether
        it is ours (False: a concurrent retry of the same request stored its answer first,
        returned instead). It is not given up for contention while the session exists
        (``ANSWER_COMMIT_PATIENCE_S`` bounds a pathological case)."""
        request = request_record(user)
        first = session

        async def attempt(n: int) -> tuple[MessageRecord, SessionRecord, bool]:
            nonlocal session
            if n > 0:
                with storage_budget(self.settings.store_timeout_s):
                    session = await self.live_session(email, session.id, n - 1)
                    if request is not None:
                        existing = await self._stored_answer(
                            email, session.id, request.client_message_id
                        )
                        if existing is not None:  # a concurrent retry of the same request won
                            return existing, session, False
            assistant = self.record(
                session.id, session.last_seq + 1, content, usage, context_from, latency, status
            )
            answered = (
                request.model_copy(update={"assistant_seq": assistant.seq}) if request else None
            )
            try:
                # A budget of its own: the answer comes after a model call of any length, and
                # each attempt may spend the usual storage time.
                with storage_budget(self.settings.store_timeout_s):
                    stored = await self.store.append(
                        with_messages(session, [assistant]),
                        [assistant],
                        expected_etag=session.etag,
                        request=answered,
                    )
            except ConcurrencyConflict:
                raise LostRace() from None
            return assistant, stored, True

        try:
            return await retry_on_conflict(
                attempt, within_s=ANSWER_COMMIT_PATIENCE_S, clock=self.clock, sleep=self.sleep
            )
        except RetriesExhausted:
            raise too_contended(first.id) from None

    async def _stored_answer(
        self, email: str, session_id: str, client_message_id: str
    ) -> MessageRecord | None:
        existing = await self.store.get_request(
            email, session_id, client_message_id, where="active"
        )
        if existing is None or existing.assistant_seq is None:
            return None
        return await self.store.get_message(
            email, session_id, existing.assistant_seq, where="active"
        )

    async def finish(
        self,
        email: str,
        live: LiveAnswer,
        content: str,
        usage: Usage | None,
        status: AnswerStatus,
        timer: LatencyTimer,
    ) -> MessageRecord:
        """The final write of an answer stored as it grew: its whole text and status, fenced
        by the session's ETag like every write that changes the session (a move or a turn that
        raced the checkpoints is met here, and the whole text replaces whatever a checkpoint
        or a move's copy held). Feedback given meanwhile is kept."""
        assert live.growing is not None
        final = live.growing.model_copy(
            update={
                "content": content,
                "status": status,
                "checkpoint_at": None,
                "stop_requested": False,
                "model": usage.model if usage and usage.model else self.model_name,
                "prompt_tokens": usage.prompt_tokens if usage else None,
                "completion_tokens": usage.completion_tokens if usage else None,
                "first_token_ms": timer.first_token_ms,
                "total_ms": timer.total_ms(),
            }
        )
        session = live.session

        async def attempt(n: int) -> MessageRecord:
            nonlocal session, final
            if n > 0:
                with storage_budget(self.settings.store_timeout_s):
                    session = await self.live_session(email, session.id, n - 1)
                    # What changed the session may have changed the answer's item too (feedback
                    # given while it streamed): keep that, replace only what this write owns.
                    now = await self.store.get_message(email, session.id, final.seq, where="active")
                    if now is not None and now.status != "streaming":
                        # Only this generation ends its answer: another write replaced it.
                        raise Conflict("The answer was replaced while it was being generated.")
                    if now is not None:
                        final = final.model_copy(update={"feedback": now.feedback})
            try:
                with storage_budget(self.settings.store_timeout_s):
                    await self.store.finish_answer(
                        session.model_copy(update={"updated_at": self.clock.now()}),
                        final,
                        expected_etag=session.etag or "",
                    )
            except ConcurrencyConflict:
                raise LostRace() from None
            return final

        try:
            return await retry_on_conflict(
                attempt, within_s=ANSWER_COMMIT_PATIENCE_S, clock=self.clock, sleep=self.sleep
            )
        except RetriesExhausted:
            raise too_contended(session.id) from None
