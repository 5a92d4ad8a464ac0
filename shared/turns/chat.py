"""POST /api/chat up to the answer: the request checked, the user's message stored in one
write fenced by the session's ETag (in a new session, or after the newest message), or found
again for a retried clientMessageId; then the answer runs in the turn's task
(``shared/turns/answer.py``). ``docs/design.md``, "The turn"."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.backoff import LostRace, RetriesExhausted, Sleep, retry_on_conflict
from shared.clock import Clock
from shared.config import Settings
from shared.errors import (
    ConcurrencyConflict,
    Conflict,
    DuplicateRequest,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from shared.ids import derived_session_id, is_session_id, new_session_id
from shared.locating import restore, too_contended
from shared.models import (
    ChatRequest,
    ContextMessage,
    MessageRecord,
    RequestRecord,
    SessionRecord,
)
from shared.storage.base import ConversationStore, Presence
from shared.titles import make_preview, make_title
from shared.turns.answer import Answering
from shared.turns.model_title import ModelTitles
from shared.turns.storing import request_record, with_messages
from shared.turns.turn import Turn, TurnResult

log = logging.getLogger("parley.turns")

# Storing a user message: attempts before answering 503 (each lost race means another turn of
# the same session was stored; with the pauses between, this is several seconds of contention).
MAX_USER_ATTEMPTS = 40


@dataclass(frozen=True)
class ChatTurns:
    store: ConversationStore
    settings: Settings
    clock: Clock
    answering: Answering
    titles: ModelTitles
    sleep: Sleep

    def validate_message(self, request: ChatRequest) -> None:
        if not request.message.strip():
            raise InvalidRequest("message must not be empty.")
        if len(request.message) > self.settings.max_message_chars:
            raise PayloadTooLarge(
                f"message is longer than {self.settings.max_message_chars} characters."
            )

    async def begin_turn(self, email: str, request: ChatRequest) -> Turn:
        """Validate, then store the user message (or find it, for a retry). Every error of the
        request itself is raised here, before any answer starts."""
        self.validate_message(request)
        if request.session_id is not None and not is_session_id(request.session_id):
            raise NotFound()  # no id of ours: answered without a storage call (docs/security.md)
        # Before anything is stored or the model is called (429 quota_exceeded).
        await self.answering.check_quota(email)
        cmid = request.client_message_id
        if request.session_id is not None:
            return await self._continue(email, request.session_id, request, may_create=False)
        if cmid:
            # A retried first message finds its session (wherever it is now) by this id.
            return await self._continue(
                email, derived_session_id(email, cmid), request, may_create=True
            )
        return await self._start_session(email, new_session_id(), request)

    async def chat(self, email: str, request: ChatRequest) -> TurnResult:
        turn = await self.begin_turn(email, request)
        return await turn.result()

    async def _continue(
        self, email: str, session_id: str, request: ChatRequest, *, may_create: bool
    ) -> Turn:
        async def attempt(n: int) -> Turn:
            view = await self.store.read_turn(
                email, session_id, history=self.settings.max_history_messages
            )
            if view.presence is Presence.ARCHIVED:
                # An archived conversation comes back to the active store before it continues.
                await restore(self.store, email, session_id, n, self.sleep)
                raise LostRace(pause=False)
            if view.presence is Presence.MISSING:
                if not may_create:
                    raise NotFound()
                try:
                    return await self._start_session(email, session_id, request)
                except ConcurrencyConflict:
                    # Created meanwhile (a concurrent retry): read it.
                    raise LostRace(pause=False) from None
            assert view.session is not None
            try:
                return await self._append_user_message(view.session, list(view.window), request)
            except DuplicateRequest as duplicate:
                return await self._replay(email, session_id, request, duplicate.existing)
            except ConcurrencyConflict:
                raise LostRace() from None

        try:
            return await retry_on_conflict(attempt, attempts=MAX_USER_ATTEMPTS, sleep=self.sleep)
        except RetriesExhausted:
            raise too_contended(session_id) from None

    def _user_record(self, session_id: str, seq: int, request: ChatRequest) -> MessageRecord:
        return MessageRecord(
            session_id=session_id,
            seq=seq,
            role="user",
            content=request.message,
            timestamp=self.clock.now(),
            client_message_id=request.client_message_id,
        )

    async def _start_session(self, email: str, session_id: str, request: ChatRequest) -> Turn:
        user = self._user_record(session_id, 1, request)
        empty = SessionRecord(
            id=session_id,
            email=email,
            title=make_title(request.message),
            preview=make_preview(request.message),
            created_at=user.timestamp,
            updated_at=user.timestamp,
        )
        stored = await self.store.append(
            with_messages(empty, [user]),
            [user],
            expected_etag=None,
            request=request_record(user),
        )
        log.info("session_created", extra={"session_id": session_id})
        title = self.titles.ask(email, session_id, request.message)
        return self.answering.turn(email, stored, user, [], title=title)

    async def _append_user_message(
        self, session: SessionRecord, window: list[ContextMessage], request: ChatRequest
    ) -> Turn:
        user = self._user_record(session.id, session.last_seq + 1, request)
        stored = await self.store.append(
            with_messages(session, [user]),
            [user],
            expected_etag=session.etag,
            request=request_record(user),
        )
        return self.answering.turn(session.email, stored, user, window)

    async def _replay(
        self,
        email: str,
        session_id: str,
        request: ChatRequest,
        existing: RequestRecord | None,
    ) -> Turn:
        """A retry of a clientMessageId: store nothing twice, answer what was answered (or
        answer now, if the first attempt's answer was never stored)."""
        assert request.client_message_id
        if existing is None:
            existing = await self.store.get_request(
                email, session_id, request.client_message_id, where="active"
            )
        user = (
            await self.store.get_message(email, session_id, existing.user_seq, where="active")
            if existing
            else None
        )
        if existing is None or user is None:
            raise too_contended(session_id)  # moved or deleted in between: the client retries
        if user.content != request.message:
            raise Conflict("This clientMessageId was already used for another message.")
        session = await self.store.get_session(email, session_id, where="active")
        if session is None:
            raise too_contended(session_id)
        if existing.assistant_seq is not None:
            answer = await self.store.get_message(
                email, session_id, existing.assistant_seq, where="active"
            )
            if answer is not None:
                return Turn(
                    session.id, session.title, user, _replayed=self.answering.shown_at()(answer)
                )
        # The first attempt stored the question but not (yet) an answer: answer it now. A
        # concurrent attempt that stores its answer first wins (see AnswerWrites.append).
        window, _ = await self.store.page_messages(
            email,
            session_id,
            where="active",
            limit=max(self.settings.max_history_messages - 1, 0),
            before_seq=user.seq,
        )
        return self.answering.turn(email, session, user, window)
