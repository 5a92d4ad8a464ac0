"""The API's rules (``openapi.yaml``, ``docs/http.md``): chat turns, reading, renaming, feedback,
deleting. Knows nothing of HTTP or of any database.

A turn (``docs/design.md``, "The turn"): one read of the session item and its newest messages,
then one atomic write that stores the user message (before the model is called), then the model,
then one atomic write that stores the answer. Each write is guarded by the session's ETag; when
another writer wins the race, the loser re-reads and re-sequences after a short randomised
pause, so nothing is lost or duplicated and busy sessions do not starve their own turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from shared.answers import (
    Checkpoints,
    Ended,
    Followed,
    Grew,
    Resumed,
    ShownAt,
    answer_budget_s,
)
from shared.audit import structured, user_hash
from shared.backoff import LostRace, RetriesExhausted, backoff_delay, retry_on_conflict
from shared.clock import Clock, SystemClock, iso
from shared.config import Settings
from shared.consistency import CatchesUp, catch_up
from shared.context import Spoken, Window, context_window
from shared.deadline import storage_budget
from shared.erase import audit_erase, erase_sessions
from shared.errors import (
    ApiError,
    ConcurrencyConflict,
    Conflict,
    DuplicateRequest,
    InvalidRequest,
    ModelError,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    StorageUnavailable,
)
from shared.events import LatencyTimer, Outcome, TurnKind, emit
from shared.export import ExportCount, audit_export
from shared.export_formats import ExportFormat, export_stream
from shared.groups.service import erase_groups
from shared.ids import (
    derived_session_id,
    is_session_id,
    message_item_id,
    new_session_id,
    parse_message_id,
)
from shared.importer import ImportReport, audit_import, import_file
from shared.llm.base import ChatModel, Usage
from shared.models import (
    AnswerStatus,
    ChatRequest,
    ContextMessage,
    Feedback,
    FeedbackRequest,
    MessageOut,
    MessagePage,
    MessageRecord,
    RegenerateRequest,
    RequestRecord,
    SearchMatch,
    SearchResult,
    SearchResults,
    SessionDetail,
    SessionList,
    SessionRecord,
    SessionSummary,
    TitleSource,
    VersionList,
)
from shared.paging import decode_page_token, encode_page_token, listing_scope
from shared.search import HITS_PER_SESSION, SearchOrder, phrase_of, snippet
from shared.search_state import (
    Found,
    OrderKey,
    carry_room,
    decode_state,
    encode_state,
    ordered,
)
from shared.sharing import SharingStore, erase_shares, revoke_session_shares
from shared.storage.base import Checkpoint, MoveOutcome, Presence, SearchHit, Where
from shared.time_limits import model_budget_s, turn_budget_s
from shared.titles import (
    MODEL_TITLE_MAX_TOKENS,
    branch_title,
    clean_model_title,
    make_preview,
    make_title,
    title_of,
    title_prompt,
)
from shared.turns import Turn, TurnResult
from shared.usage import Spent, UsageMeter, UsageOut

log = logging.getLogger("parley.service")

LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 20, 100
MESSAGES_LIMIT_DEFAULT, MESSAGES_LIMIT_MAX = 50, 200

# Storing a user message: attempts before answering 503 (each lost race means another turn of
# the same session was stored; with the pauses below this is several seconds of contention).
MAX_USER_ATTEMPTS = 40
# Storing an answer the model has already produced: keep trying while the session exists, for
# at most this long (contention only: a store that refuses writes fails the turn at once).
ANSWER_COMMIT_PATIENCE_S = 120.0
# Rating a message: attempts before answering 503 (its own limit; the same as a turn's today,
# for the same contention: every turn of the session rewrites the item it conditions on).
MAX_FEEDBACK_ATTEMPTS = 40
# A title is rarely contended; a few attempts, then the first-message title stays.
MAX_TITLE_ATTEMPTS = 5
# Reads of a session's messages that may each find it moved away since it was located (each
# move leaves it for good, so a few suffice) before answering 503.
MAX_MOVED_READS = 4

# An answer being generated is looked for among a session's newest messages (turns racing it
# may follow it), and, while a question may still be in its first checkpoint interval, looked
# for again this many times, once per interval.
IN_PROGRESS_LOOKBACK = 8
IN_PROGRESS_LOOKS = 3

Sleep = Callable[[float], Awaitable[None]]


FEEDBACK_LOG_PREFIX = "feedback_changed "  # docs/operations.md's query parses what follows


def prompt_cache_key(session_id: str) -> str:
    """The ``prompt_cache_key`` of a conversation: stable for the session (its calls share
    their beginning, see shared/context.py) and derived from its id only, never the email."""
    return "parley-" + hashlib.sha256(session_id.encode()).hexdigest()[:32]


def with_messages(session: SessionRecord, messages: list[MessageRecord]) -> SessionRecord:
    """The session item after appending ``messages``: counters and time."""
    return session.model_copy(
        update={
            "message_count": session.message_count + len(messages),
            "last_seq": messages[-1].seq,
            "updated_at": messages[-1].timestamp,
        }
    )


@dataclass(frozen=True)
class Located:
    session: SessionRecord
    where: Where


class StoreAnswer(Protocol):
    """Where an answer is written, in one write fenced by the session's ETag: whole, or
    (``status="streaming"``) its beginning. Returns the message, the session as stored with
    it, and whether it is this call's (False: a concurrent retry's answer, returned instead).
    A turn's is ``ConversationService._store_answer`` (a new message after the question), a
    regenerate's ``_regenerated_answer`` (in place of the last answer, kept as a version)."""

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
class _LiveAnswer:
    """An answer being generated, as its writes leave it: the session item as last written,
    and the answer's item once its first checkpoint created it (``theirs``: a concurrent retry
    of the same request stored its answer first, which is then the answer)."""

    session: SessionRecord
    growing: MessageRecord | None = None
    theirs: MessageRecord | None = None


class ConversationService:
    def __init__(
        self,
        store: SharingStore,
        model: ChatModel,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        checkpoint_sleep: Sleep | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.settings = settings
        self.clock = clock or SystemClock()
        self._sleep = sleep
        # The pause between an answer's checkpoints and between a follower's reads
        # (shared/answers.py): real time by default, whatever ``sleep`` is (tests inject a
        # no-op backoff), injectable on its own.
        self._checkpoint_sleep: Sleep = checkpoint_sleep or asyncio.sleep
        self._answer_budget_s = answer_budget_s(settings.llm_timeout_s, settings.llm_max_retries)
        self._token_key = settings.resolved_token_signing_key
        self.usage = UsageMeter(store, settings, self.clock, sleep=sleep)

    # ---- chat ----------------------------------------------------------------------------------

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
        # Before anything is stored or the model is called (429 quota_exceeded).
        try:
            await self.usage.check(email)
        except QuotaExceeded:
            self._turn_event(email, "answer", None, Spent(), "quota", None)
            raise
        cmid = request.client_message_id
        if request.session_id is not None:
            if not is_session_id(request.session_id):
                raise NotFound()
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
                await self._restore(email, session_id, n)
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
            return await retry_on_conflict(attempt, attempts=MAX_USER_ATTEMPTS, sleep=self._sleep)
        except RetriesExhausted:
            raise _too_contended(session_id) from None

    async def _restore(self, email: str, session_id: str, attempt: int) -> None:
        outcome = await self.store.restore(email, session_id)
        if outcome is MoveOutcome.MOVED:
            log.info("session_restored", extra={"session_id": session_id})
        elif outcome in (MoveOutcome.BUSY, MoveOutcome.CHANGED):
            # Another request is moving it right now: let it finish, then read again.
            await self._sleep(backoff_delay(attempt))

    def _user_record(self, session_id: str, seq: int, request: ChatRequest) -> MessageRecord:
        return MessageRecord(
            session_id=session_id,
            seq=seq,
            role="user",
            content=request.message,
            timestamp=self.clock.now(),
            client_message_id=request.client_message_id,
        )

    @staticmethod
    def _request_record(user: MessageRecord) -> RequestRecord | None:
        if not user.client_message_id:
            return None
        return RequestRecord(
            session_id=user.session_id,
            client_message_id=user.client_message_id,
            user_seq=user.seq,
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
            request=self._request_record(user),
        )
        log.info("session_created", extra={"session_id": session_id})
        title = self._model_title(email, session_id, request.message)
        return self._turn(email, stored, user, [], title=title)

    async def _append_user_message(
        self, session: SessionRecord, window: list[ContextMessage], request: ChatRequest
    ) -> Turn:
        user = self._user_record(session.id, session.last_seq + 1, request)
        stored = await self.store.append(
            with_messages(session, [user]),
            [user],
            expected_etag=session.etag,
            request=self._request_record(user),
        )
        return self._turn(session.email, stored, user, window)

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
            raise _too_contended(session_id)  # moved or deleted in between: the client retries
        if user.content != request.message:
            raise Conflict("This clientMessageId was already used for another message.")
        session = await self.store.get_session(email, session_id, where="active")
        if session is None:
            raise _too_contended(session_id)
        if existing.assistant_seq is not None:
            answer = await self.store.get_message(
                email, session_id, existing.assistant_seq, where="active"
            )
            if answer is not None:
                return Turn(session.id, session.title, user, _replayed=self._shown_at()(answer))
        # The first attempt stored the question but not (yet) an answer: answer it now. A
        # concurrent attempt that stores its answer first wins (see _store_answer).
        window, _ = await self.store.page_messages(
            email,
            session_id,
            where="active",
            limit=max(self.settings.max_history_messages - 1, 0),
            before_seq=user.seq,
        )
        return self._turn(email, session, user, window)

    def _turn(
        self,
        email: str,
        session: SessionRecord,
        user: MessageRecord,
        window: Sequence[Spoken],
        *,
        title: Awaitable[str | None] | None = None,
        store_answer: StoreAnswer | None = None,
    ) -> Turn:
        async def answer(queue: asyncio.Queue[str | None]) -> MessageRecord:
            return await self._answer(
                email, session, user, window, queue, store_answer or self._store_answer
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
        ``store_answer``: a turn appends it (``_store_answer``), a regenerate puts it in place
        of the last answer (``_regenerated_answer``)."""
        # The model sees the stored history up to and including this turn's user message.
        context = context_window(
            self.settings.system_prompt,
            [*window, user],
            max_messages=self.settings.max_history_messages,
            max_tokens=self.settings.max_context_tokens,
            policy=self.settings.context_window,
        )
        return await self._generate_answer(email, session, user, context, queue, write=store_answer)

    async def _generate_answer(
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
        ``_store_answer``); a longer one is stored as it grows (its first checkpoint is
        ``write`` with ``status="streaming"``, then ``_checkpoint_answer`` patches that item,
        then ``_finish_answer``), and stops when a stop is asked for on any instance
        (``docs/design.md``, "Streaming checkpoints"). ``write`` is the one step that decides
        where an answer goes (a new message, for a turn)."""
        store_answer: StoreAnswer = write or self._store_answer
        messages = context.messages
        pieces: list[str] = []
        usage: Usage | None = None
        live = _LiveAnswer(session)
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
            return await self._checkpoint_answer(
                email, user, live, content, context_from=context.start_seq, write=store_answer
            )

        generation = asyncio.ensure_future(generate())
        checkpoints = Checkpoints(
            checkpoint,
            text,
            interval_s=self.settings.stream_checkpoint_ms / 1000,
            sleep=self._checkpoint_sleep,
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
                self._turn_event(email, "answer", usage, spent, "failed", timer)
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
                stored = await self._finish_answer(email, live, content, usage, "stopped", timer)
                outcome = "stopped"
                return stored
            if not content.strip():
                if live.growing is not None:
                    await self._finish_cut_short(email, live, content, usage, timer)
                raise ModelError("The model returned an empty answer.")
            if live.growing is not None:
                stored = await self._finish_answer(email, live, content, usage, "complete", timer)
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
            self._turn_event(email, "answer", usage, await recording, outcome, timer)

    async def _checkpoint_answer(
        self,
        email: str,
        user: MessageRecord,
        live: _LiveAnswer,
        content: str | None,
        *,
        context_from: int | None,
        write: StoreAnswer,
    ) -> Checkpoint:
        """One checkpoint of an answer being generated: the first creates its item
        (``_begin_streaming_answer``), each next one writes the text so far (``None``: the
        time only) into that item alone. A storage failure here is not the answer's: it is
        logged and the next checkpoint (or the final write) tries again."""
        try:
            with storage_budget(self.settings.store_timeout_s):
                if live.growing is None:
                    return await self._begin_streaming_answer(
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

    async def _begin_streaming_answer(
        self,
        email: str,
        user: MessageRecord,
        live: _LiveAnswer,
        content: str,
        *,
        context_from: int | None,
        write: StoreAnswer,
    ) -> Checkpoint:
        """The first checkpoint: the answer's item, ``"streaming"`` with the text so far, in the
        same fenced write a whole answer takes (``write``: ``_store_answer`` for a turn)."""
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
        self, email: str, live: _LiveAnswer, content: str, usage: Usage | None, timer: LatencyTimer
    ) -> None:
        """A failed generation's item, stored ``"interrupted"`` with its text so far; a failure
        of this write is logged, never raised over the model's own error (readers then see it
        "interrupted" once it is old enough)."""
        try:
            await self._finish_answer(email, live, content, usage, "interrupted", timer)
        except ApiError as error:
            log.warning(
                "answer_unfinished", extra={"session_id": live.session.id, "code": error.code}
            )

    async def _finish_answer(
        self,
        email: str,
        live: _LiveAnswer,
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
                "model": usage.model if usage and usage.model else self.model.name,
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
                    session = await self._live_session(email, session.id, n - 1)
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
                attempt, within_s=ANSWER_COMMIT_PATIENCE_S, clock=self.clock, sleep=self._sleep
            )
        except RetriesExhausted:
            raise _too_contended(session.id) from None

    def _turn_event(
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

    async def _store_answer(
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
        request = self._request_record(user)
        first = session

        async def attempt(n: int) -> tuple[MessageRecord, SessionRecord, bool]:
            nonlocal session
            if n > 0:
                with storage_budget(self.settings.store_timeout_s):
                    session = await self._live_session(email, session.id, n - 1)
                    if request is not None:
                        existing = await self._stored_answer(
                            email, session.id, request.client_message_id
                        )
                        if existing is not None:  # a concurrent retry of the same request won
                            return existing, session, False
            assistant = self._assistant_record(
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
                attempt, within_s=ANSWER_COMMIT_PATIENCE_S, clock=self.clock, sleep=self._sleep
            )
        except RetriesExhausted:
            raise _too_contended(first.id) from None

    def _assistant_record(
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
            model=usage.model if usage else self.model.name,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            context_from=context_from,
            first_token_ms=latency[0] if latency else None,
            total_ms=latency[1] if latency else None,
        )

    async def _live_session(self, email: str, session_id: str, attempt: int) -> SessionRecord:
        """The session item as it is now, restoring it if it was archived meanwhile; 404 if it
        was deleted (the answer then goes with it)."""
        while True:
            view = await self.store.read_turn(email, session_id, history=0)
            if view.presence is Presence.LIVE and view.session is not None:
                return view.session
            if view.presence is Presence.MISSING:
                raise NotFound()
            await self._restore(email, session_id, attempt)
            attempt += 1

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

    # ---- answers being generated (docs/http.md, "Answers as they grow") ----------------------

    async def _answers_in_progress(
        self, email: str, session_id: str
    ) -> tuple[Located, list[MessageRecord]]:
        """The session, and its answers being generated now as the store has them. An answer in
        its first ``STREAM_CHECKPOINT_MS`` is not stored yet: while the newest message is a
        question that may still be being answered, look again once per interval, a few
        times (an answer that goes on is stored by then)."""
        interval_s = self.settings.stream_checkpoint_ms / 1000
        for attempt in range(IN_PROGRESS_LOOKS):
            with storage_budget(self.settings.store_timeout_s):
                # Another instance wrote the answer: a replica behind its writes must not hide
                # it (shared/consistency.py; nothing for a store whose reads never lag).
                await catch_up(self.store, email)
                located = await self._find(email, session_id)
                newest, _ = await self.store.page_messages(
                    email, session_id, where=located.where, limit=IN_PROGRESS_LOOKBACK
                )
            shown = self._shown_at()
            growing = [
                m for m in newest if m.role == "assistant" and shown(m).status == "streaming"
            ]
            asked = (
                bool(newest)
                and newest[-1].role == "user"
                and (shown.now - newest[-1].timestamp).total_seconds() < shown.budget_s
            )
            if growing or not asked or attempt == IN_PROGRESS_LOOKS - 1:
                return located, growing
            await self._checkpoint_sleep(interval_s)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stop_answer(self, email: str, session_id: str) -> bool:
        """POST .../stop: ask whichever instance generates this session's answer to stop it,
        through the store (a mark on the answer's item that its next checkpoint meets). True
        when an answer was being generated (202): it stops within about one
        ``STREAM_CHECKPOINT_MS`` and is stored ``"stopped"`` with its text so far."""
        if not is_session_id(session_id):
            raise NotFound()
        _, growing = await self._answers_in_progress(email, session_id)
        asked = False
        for answer in growing:
            with storage_budget(self.settings.store_timeout_s):
                asked = await self.store.request_stop(email, session_id, answer.seq) or asked
        if asked:
            log.info("answer_stop_requested", extra={"session_id": session_id})
        return asked

    async def follow_answer(self, email: str, session_id: str) -> AsyncIterator[Followed]:
        """GET .../stream: the answer being generated in this session (on any instance), from
        the store, until it ends: what it holds now, then what it gains at each checkpoint
        (read once per ``STREAM_CHECKPOINT_MS``), then its end. Nothing being generated: it
        ends at once. A follow never outlasts a turn's time budget (shared/time_limits.py)."""
        if not is_session_id(session_id):
            raise NotFound()
        located, growing = await self._answers_in_progress(email, session_id)
        if not growing:
            yield Ended(None)
            return
        answer = self._shown_at()(growing[-1])
        yield Resumed(answer)
        sent = answer.content
        interval_s = self.settings.stream_checkpoint_ms / 1000
        budget_s = turn_budget_s(
            llm_timeout_s=self.settings.llm_timeout_s,
            llm_max_retries=self.settings.llm_max_retries,
            store_timeout_s=self.settings.store_timeout_s,
            title_timeout_s=self.settings.title_timeout_s,
        )
        where = located.where
        behind = False
        for _ in range(max(1, int(budget_s / interval_s))):
            await self._checkpoint_sleep(interval_s)
            with storage_budget(self.settings.store_timeout_s):
                if behind:
                    # Nothing new last time: a silent model, or a replica behind the generating
                    # instance's writes. Only then are reads brought up to date (a growing
                    # answer costs its follower one read per interval).
                    await catch_up(self.store, email)
                now = await self.store.get_message(email, session_id, answer.seq, where=where)
                if now is None:
                    # Moved (archived, or restored by its final write) or deleted meanwhile.
                    found = await self._locate(email, session_id)
                    if found is None:
                        yield Ended(None)
                        return
                    where = found.where
                    now = await self.store.get_message(email, session_id, answer.seq, where=where)
            if now is None:
                continue  # a move under way: read again at the next interval
            now = self._shown_at()(now)
            behind = True
            if len(now.content) > len(sent) and now.content.startswith(sent):
                yield Grew(now.content[len(sent) :])
                sent, behind = now.content, False
            if now.status != "streaming":
                yield Ended(now)
                return
        # Past a turn's whole budget: the answer as it is now (it cannot still be generated).
        yield Ended(self._shown_at()(now) if now is not None else answer)

    # ---- regenerating an answer, its versions, branches ----------------------------------------

    async def begin_regenerate(
        self, email: str, session_id: str, request: RegenerateRequest
    ) -> Turn:
        """A new answer to the last user message, to replace the last answer (kept as an
        earlier version): a turn without a new question (``docs/http.md``, "Regenerate"). Its
        errors (404, 409, 429) are raised here, before the model is called."""
        if not is_session_id(session_id):
            raise NotFound()
        try:
            await self.usage.check(email)
        except QuotaExceeded:
            self._turn_event(email, "answer", None, Spent(), "quota", None)
            raise
        cmid = request.client_message_id

        async def attempt(n: int) -> Turn:
            # The answer and its question too: the model is given as many messages before
            # the question as a turn is.
            view = await self.store.read_turn(
                email, session_id, history=self.settings.max_history_messages + 2
            )
            if view.presence is Presence.ARCHIVED:
                await self._restore(email, session_id, n)
                raise LostRace(pause=False)
            if view.presence is Presence.MISSING:
                raise NotFound()
            assert view.session is not None
            session = view.session
            if cmid:
                replayed = await self._regenerated_before(email, session, cmid)
                if replayed is not None:
                    return replayed
            last = session.last_seq
            previous = await self.store.get_message(email, session_id, last, where="active")
            user = await self.store.get_message(email, session_id, last - 1, where="active")
            if previous is None or (user is None and last > 1):
                # Archived (or deleted) since the read: read again.
                raise LostRace()
            if previous.role != "assistant" or user is None or user.role != "user":
                raise Conflict("Only the last answer can be regenerated.")
            if self._shown_at()(previous).status == "streaming":
                # Its generator (on any instance) still writes that item: stop it first.
                raise Conflict("The last answer is still being generated: stop it first.")
            window = [m for m in view.window if m.seq < user.seq]
            return self._turn(
                email,
                session,
                user,
                window,
                store_answer=self._regenerated_answer(previous, cmid),
            )

        try:
            return await retry_on_conflict(attempt, attempts=MAX_USER_ATTEMPTS, sleep=self._sleep)
        except RetriesExhausted:
            raise _too_contended(session_id) from None

    async def regenerate(
        self, email: str, session_id: str, request: RegenerateRequest
    ) -> TurnResult:
        turn = await self.begin_regenerate(email, session_id, request)
        return await turn.result()

    async def _regenerated_before(
        self, email: str, session: SessionRecord, cmid: str
    ) -> Turn | None:
        """A retried regenerate's answer (stored by the first attempt, now current or an
        earlier version), or None when this clientMessageId is new. A clientMessageId a turn
        used is 409, as reusing one for another message is."""
        existing = await self.store.get_request(email, session.id, cmid, where="active")
        if existing is None:
            return None
        answer = await self._answer_of(email, session.id, existing, cmid)
        user = await self.store.get_message(email, session.id, existing.user_seq, where="active")
        if user is None:
            raise _too_contended(session.id)  # moved meanwhile: the client retries
        return Turn(session.id, session.title, user, _replayed=answer, answer_only=True)

    async def _answer_of(
        self, email: str, session_id: str, request: RequestRecord, cmid: str
    ) -> MessageRecord:
        """The answer a regenerate with ``cmid`` stored (it carries the clientMessageId)."""
        if request.assistant_seq is None:
            raise Conflict("This clientMessageId was already used for another message.")
        message = await self.store.get_message(
            email, session_id, request.assistant_seq, where="active"
        )
        if message is None:
            raise _too_contended(session_id)
        if message.client_message_id == cmid:
            return message
        earlier = await self.store.message_versions(
            email, session_id, message.seq, where="active", count=message.versions or 1
        )
        for version in earlier:
            if version.client_message_id == cmid:
                return version.model_copy(update={"versions": None})
        raise Conflict("This clientMessageId was already used for another message.")

    def _regenerated_answer(self, previous: MessageRecord, cmid: str | None) -> StoreAnswer:
        """How a regenerate stores its answer: in place of ``previous`` (kept as an earlier
        version), in one write guarded by the session's ETag, like a turn's answer. A rename,
        feedback or another regenerate that wins the race is re-read and kept; a turn that
        stored a new question meanwhile makes this answer stale: 409, nothing replaced."""

        async def store(
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
            current = previous

            async def attempt(n: int) -> tuple[MessageRecord, SessionRecord, bool]:
                nonlocal session, current
                if n > 0:
                    with storage_budget(self.settings.store_timeout_s):
                        session = await self._live_session(email, session.id, n - 1)
                        now = await self.store.get_message(
                            email, session.id, current.seq, where="active"
                        )
                    if session.last_seq != current.seq or now is None or now.role != "assistant":
                        raise Conflict(
                            "The conversation went on meanwhile: only the last answer can be "
                            "regenerated."
                        )
                    # With its feedback, or another regenerate's answer, as they are.
                    current = now
                answer = self._assistant_record(
                    session.id, current.seq, content, usage, context_from, latency, status
                ).model_copy(
                    update={"versions": (current.versions or 1) + 1, "client_message_id": cmid}
                )
                request = (
                    RequestRecord(
                        session_id=session.id,
                        client_message_id=cmid,
                        user_seq=user.seq,
                        assistant_seq=answer.seq,
                    )
                    if cmid
                    else None
                )
                assert session.etag is not None
                try:
                    with storage_budget(self.settings.store_timeout_s):
                        stored = await self.store.replace_answer(
                            session.model_copy(update={"updated_at": answer.timestamp}),
                            answer,
                            current,
                            expected_etag=session.etag,
                            request=request,
                        )
                    return answer, stored, True
                except DuplicateRequest:
                    # A concurrent attempt of the same request stored its answer first (a
                    # read that does not see it yet waits and tries again, like a conflict).
                    assert cmid is not None
                    existing = await self.store.get_request(email, session.id, cmid, where="active")
                    if existing is not None:
                        theirs = await self._answer_of(email, session.id, existing, cmid)
                        return theirs, session, False
                    raise LostRace() from None
                except ConcurrencyConflict:
                    raise LostRace() from None

            try:
                return await retry_on_conflict(
                    attempt, within_s=ANSWER_COMMIT_PATIENCE_S, clock=self.clock, sleep=self._sleep
                )
            except RetriesExhausted:
                raise _too_contended(session.id) from None

        return store

    async def message_versions(self, email: str, session_id: str, message_id: str) -> VersionList:
        """Every version of a message, oldest first, the current one last (a message never
        regenerated has one)."""
        seq = self._seq_in(session_id, message_id)
        for _ in range(MAX_MOVED_READS):
            located = await self._find(email, session_id)
            message = await self.store.get_message(email, session_id, seq, where=located.where)
            if message is None:
                if 1 <= seq <= located.session.last_seq:
                    continue  # it exists (seqs have no gaps): the session moved meanwhile
                raise NotFound("No such message.")
            count_ = message.versions or 1
            earlier = await self.store.message_versions(
                email, session_id, seq, where=located.where, count=count_
            )
            if len(earlier) < count_ - 1:
                continue  # moved between the two reads
            return VersionList(
                versions=[
                    *(m.model_copy(update={"versions": None}).to_api() for m in earlier),
                    message.to_api(),
                ]
            )
        raise _still_moving()

    async def fork(self, email: str, session_id: str, message_id: str) -> SessionSummary:
        """A new session holding copies of the messages up to and including ``message_id``
        (their current text), titled after the original with " (branch)". Written like an
        import: invisible until every message is stored, so a failure half-way shows nothing
        (``ConversationStore.import_session``). An archived original is read where it is; the
        branch is a new session in the active container."""
        seq = self._seq_in(session_id, message_id)
        for _ in range(MAX_MOVED_READS):
            located = await self._find(email, session_id)
            if not 1 <= seq <= located.session.last_seq:
                raise NotFound("No such message.")
            source = await self._messages_up_to(email, session_id, located.where, seq)
            if len(source) == seq:
                break  # seqs have no gaps: all of them (else it moved meanwhile)
        else:
            raise _still_moving()
        fork_id = new_session_id()
        now = self.clock.now()
        copies = [
            MessageRecord(
                session_id=fork_id,
                seq=m.seq,
                role=m.role,
                content=m.content,
                timestamp=m.timestamp,
                model=m.model,
            )
            for m in source
        ]
        first_user = next((m.content for m in copies if m.role == "user"), copies[0].content)
        original = located.session
        branch = SessionRecord(
            id=fork_id,
            email=email,
            title=branch_title(original.title),
            title_source=original.title_source,
            preview=make_preview(first_user),
            created_at=now,
            updated_at=now,
            message_count=len(copies),
            last_seq=seq,
        )
        try:
            created = await self.store.import_session(branch, copies)
        except Exception:
            # Nothing of it is visible; remove what was written, if the store lets us now
            # (else an erasure finds it: it is the user's, under their address).
            with contextlib.suppress(Exception):
                await self.store.delete_session(email, fork_id)
            raise
        if not created:
            raise _too_contended(session_id)  # a new random id in use: never, but never wrong
        log.info("session_forked", extra={"session_id": fork_id})
        return branch.to_summary()

    async def _messages_up_to(
        self, email: str, session_id: str, where: Where, seq: int
    ) -> list[MessageRecord]:
        """The session's messages 1..``seq`` read in ``where``, a page at a time."""
        found: list[MessageRecord] = []
        after = 0
        while after < seq:
            page, more = await self.store.page_messages(
                email,
                session_id,
                where=where,
                limit=min(MESSAGES_LIMIT_MAX, seq - after),
                after_seq=after,
            )
            found += [m for m in page if m.seq <= seq]
            if not page or not more:
                break
            after = page[-1].seq
        return found

    # ---- titles --------------------------------------------------------------------------------

    def _model_title(
        self, email: str, session_id: str, first_message: str
    ) -> Awaitable[str | None] | None:
        if self.settings.resolved_title_mode != "model":
            return None
        return self._write_model_title(email, session_id, first_message)

    async def _write_model_title(
        self, email: str, session_id: str, first_message: str
    ) -> str | None:
        """Ask the model for a title and store it with a conditional write; never fails the
        turn: a failure is logged and the first-message title stays."""
        timer = LatencyTimer()
        try:
            prompt = title_prompt(first_message)
            answer = await asyncio.wait_for(
                self.model.complete(
                    prompt,
                    max_tokens=MODEL_TITLE_MAX_TOKENS,
                    timeout_s=self.settings.title_timeout_s,
                ),
                timeout=self.settings.title_timeout_s,
            )
            # A title call reports no usage through ``complete``: estimated (shared/usage.py).
            spent = await self.usage.record(email, prompt, answer, None, turn=False)
            self._turn_event(email, "title", None, spent, "complete", timer)
            title = clean_model_title(answer)
            if title is None:
                log.warning("title_failed", extra={"session_id": session_id, "reason": "empty"})
                return None
            return await self._set_title(email, session_id, title, source="model")
        except (ApiError, TimeoutError) as exc:
            reason = exc.code if isinstance(exc, ApiError) else "timeout"
            log.warning("title_failed", extra={"session_id": session_id, "reason": reason})
        except Exception as exc:  # never a turn's error; the type only (messages quote data)
            log.error("title_failed %s", type(exc).__name__, extra={"session_id": session_id})
        self._turn_event(email, "title", None, Spent(), "failed", timer)
        return None

    async def _set_title(
        self, email: str, session_id: str, title: str, *, source: TitleSource
    ) -> str | None:
        """One conditional write of the title (retried on a race). A model title never
        replaces one the user set; returns the stored title, or None if it was not stored."""

        async def attempt(_: int) -> str | None:
            located = await self._locate(email, session_id)
            if located is None:
                return None
            session = located.session
            if source == "model" and session.title_source == "user":
                return None
            assert session.etag is not None
            try:
                await self.store.save_session(
                    session.model_copy(update={"title": title, "title_source": source}),
                    where=located.where,
                    expected_etag=session.etag,
                )
            except ConcurrencyConflict:
                raise LostRace() from None
            return title

        try:
            return await retry_on_conflict(attempt, attempts=MAX_TITLE_ATTEMPTS, sleep=self._sleep)
        except RetriesExhausted:
            return None

    # ---- reading -------------------------------------------------------------------------------

    async def _locate(self, email: str, session_id: str) -> Located | None:
        """Where the session is now; None only when it does not exist (a move in flight is
        followed by the store, never taken for a missing session)."""
        if not is_session_id(session_id):
            return None
        found = await self.store.locate(email, session_id)
        return Located(*found) if found is not None else None

    async def _find(self, email: str, session_id: str) -> Located:
        located = await self._locate(email, session_id)
        if located is None:
            raise NotFound()
        return located

    def _position(self, continuation: str | None, scope: str, email: str) -> str | None:
        """The store position a caller's continuation token holds (400 unless it is ours)."""
        if not continuation:
            return None
        return decode_page_token(self._token_key, continuation, scope, email)

    def _page_token(self, position: str | None, scope: str, email: str) -> str | None:
        return encode_page_token(self._token_key, scope, position, email) if position else None

    async def list_sessions(
        self, email: str, *, limit: int, continuation: str | None, archived: bool
    ) -> SessionList:
        where: Where = "archive" if archived else "active"
        scope = listing_scope(f"list:{where}")
        after = self._position(continuation, scope, email)
        sessions, position = await self.store.list_sessions(
            email, where=where, limit=limit, after=after
        )
        return SessionList(
            sessions=[s.to_summary() for s in sessions],
            continuation_token=self._page_token(position, scope, email),
        )

    async def get_session(self, email: str, session_id: str) -> SessionDetail:
        limit = self.settings.max_session_messages
        caught = False
        for _ in range(MAX_MOVED_READS):
            located = await self._find(email, session_id)
            messages, more = await self.store.page_messages(
                email, session_id, where=located.where, limit=limit
            )
            if _moved_away(located.session, messages, limit, before_seq=None):
                continue
            if caught or not await self._catch_up_with_answers(email, messages):
                break
            caught = True
        else:
            raise _still_moving()
        shown = self._shown_at()
        return SessionDetail(
            **located.session.to_summary().model_dump(),
            messages=[shown(m).to_api() for m in messages],
            has_more_messages=more,
        )

    async def page_messages(
        self, email: str, session_id: str, *, before: str | None, limit: int
    ) -> MessagePage:
        before_seq = self._seq_in(session_id, before) if before is not None else None
        caught = False
        for _ in range(MAX_MOVED_READS):
            located = await self._find(email, session_id)
            messages, more = await self.store.page_messages(
                email, session_id, where=located.where, limit=limit, before_seq=before_seq
            )
            if _moved_away(located.session, messages, limit, before_seq=before_seq):
                continue
            if caught or not await self._catch_up_with_answers(email, messages):
                break
            caught = True
        else:
            raise _still_moving()
        shown = self._shown_at()
        return MessagePage(messages=[shown(m).to_api() for m in messages], has_more=more)

    async def _catch_up_with_answers(self, email: str, messages: list[MessageRecord]) -> bool:
        """True when ``messages`` hold an answer being generated and reads were brought up to
        date since (read them again): it is written by another instance, and a replica behind
        its writes would show an older state of it, or show it growing when it has ended.
        False at once for a store whose reads never lag, and when nothing is being generated
        (no extra request then)."""
        if not isinstance(self.store, CatchesUp):
            return False
        shown = self._shown_at()
        if not any(shown(m).status == "streaming" for m in messages):
            return False  # none, or only dead ones ("interrupted"): nothing will change
        return await catch_up(self.store, email)

    def _shown_at(self) -> ShownAt:
        """How readers see answers now: one whose generator died is "interrupted"."""
        return ShownAt(self.clock.now(), self._answer_budget_s)

    @staticmethod
    def _seq_in(session_id: str, message_id: str) -> int:
        """The seq of a message id of this session; any other id cannot be here: 404."""
        parsed = parse_message_id(message_id)
        if parsed is None or parsed[0] != session_id:
            raise NotFound("No such message.")
        return parsed[1]

    # ---- managing ------------------------------------------------------------------------------

    async def rename(self, email: str, session_id: str, raw_title: str) -> SessionSummary:
        return await self.update_session(email, session_id, title=raw_title)

    async def update_session(
        self,
        email: str,
        session_id: str,
        *,
        title: str | None = None,
        pinned: bool | None = None,
    ) -> SessionSummary:
        """PATCH: a new title (the user's, never replaced by an automatic one), pinning, or
        both, in one ETag-conditional write. Pinning an archived session brings it back first:
        a pinned session lives in the active container (it is never archived)."""
        if title is None and pinned is None:
            raise InvalidRequest("Give a title, pinned, or both.")
        new_title = title_of(title) if title is not None else None
        await self._find(email, session_id)

        async def attempt(n: int) -> SessionSummary:
            found = await self._locate(email, session_id)
            if found is None:
                raise NotFound()
            if pinned and found.where == "archive":
                await self._restore(email, session_id, n)
                raise LostRace(pause=False)
            update: dict[str, object] = {}
            if new_title is not None:
                update |= {"title": new_title, "title_source": "user"}
            if pinned is not None:
                update["pinned"] = pinned
            assert found.session.etag is not None
            try:
                saved = await self.store.save_session(
                    found.session.model_copy(update=update),
                    where=found.where,
                    expected_etag=found.session.etag,
                )
            except ConcurrencyConflict:
                raise LostRace() from None
            return saved.to_summary()

        try:
            return await retry_on_conflict(attempt, attempts=MAX_TITLE_ATTEMPTS, sleep=self._sleep)
        except RetriesExhausted:
            pass
        # Deleted meanwhile, or so contended that every write lost: say which.
        if await self._locate(email, session_id) is None:
            raise NotFound()
        raise _too_contended(session_id)

    async def set_feedback(
        self, email: str, session_id: str, message_id: str, request: FeedbackRequest | None
    ) -> MessageOut | None:
        """Rate an assistant message (``request``), or clear its rating (None)."""
        seq = self._seq_in(session_id, message_id)

        async def attempt(_: int) -> MessageOut | None:
            located = await self._find(email, session_id)
            message = await self.store.get_message(email, session_id, seq, where=located.where)
            if message is None:
                if 1 <= seq <= located.session.last_seq:
                    # It exists (seqs have no gaps): the session moved since it was located.
                    raise LostRace()
                raise NotFound("No such message.")
            if message.role != "assistant":
                raise InvalidRequest("Only assistant messages take feedback.")
            feedback = (
                Feedback(
                    rating=request.rating, comment=request.comment, updated_at=self.clock.now()
                )
                if request is not None
                else None
            )
            assert located.session.etag is not None
            try:
                stored = await self.store.set_feedback(
                    email,
                    session_id,
                    seq,
                    feedback,
                    where=located.where,
                    expected_etag=located.session.etag,
                )
            except ConcurrencyConflict:
                raise LostRace() from None
            if stored is None:
                raise NotFound("No such message.")
            # One structured line per change, for satisfaction per model (docs/operations.md):
            # ids, rating and model only; never the comment or the user.
            fields = {
                "sessionId": session_id,
                "messageId": message_id,
                "rating": feedback.rating if feedback else None,
                "model": message.model,
            }
            log.info("%s", structured(FEEDBACK_LOG_PREFIX, fields))
            emit(
                "feedback",
                user=user_hash(email, self.settings.log_hash_salt),
                model=message.model,
                rating=feedback.rating if feedback else None,
            )
            return stored.to_api()

        try:
            return await retry_on_conflict(
                attempt, attempts=MAX_FEEDBACK_ATTEMPTS, sleep=self._sleep
            )
        except RetriesExhausted:
            raise _too_contended(session_id) from None

    async def delete_session(self, email: str, session_id: str) -> None:
        if not is_session_id(session_id):
            raise NotFound()
        # Its shares first: a share never outlives its session (a share being made meanwhile
        # checks for the session once it is whole: shared/sharing.py).
        await revoke_session_shares(self.store, email, session_id)
        if not await self.store.delete_session(email, session_id):
            raise NotFound()
        log.info("session_deleted", extra={"session_id": session_id})

    async def erase_everything(self, email: str, *, budget_s: float) -> bool:
        """Delete every session of the caller (``shared/erase.py``); True once nothing is
        left, False when ``budget_s`` ran out first (the caller asks again). Its audit line is
        written also when the step fails: sessions may have gone before the failure."""
        done = False
        try:
            done = await erase_sessions(self.store, email, clock=self.clock, budget_s=budget_s)
            if done:
                await erase_shares(self.store, email)
                await erase_groups(self.store, email, settings=self.settings, clock=self.clock)
        finally:
            audit_erase(self._user(email), "api", complete=done)
        return done

    async def export(self, email: str, *, now: datetime) -> AsyncIterator[str]:
        """Everything of the caller as one JSON document, in pieces (``shared/export.py``)."""
        async for piece in self.export_as(email, "json", now=now):
            yield piece.decode()

    async def export_as(
        self, email: str, export_format: ExportFormat, *, now: datetime
    ) -> AsyncIterator[bytes]:
        """Everything of the caller in ``export_format`` (``shared/export_formats.py``), in
        pieces; one audit line at the end says how much went out and whether it was whole."""
        count = ExportCount()
        try:
            async for piece in export_stream(
                self.store, email, export_format, now=now, count=count, shown=self._shown_at()
            ):
                yield piece
        finally:
            audit_export(self._user(email), "api", export_format, count)

    async def import_conversations(
        self, email: str, data: bytes | bytearray, media_type: str
    ) -> ImportReport:
        """A ChatGPT or Parley export into the caller's conversations (``shared/importer.py``);
        one audit line says how it went (counts only)."""
        report: ImportReport | None = None
        try:
            report = await import_file(self.store, email, data, media_type)
            return report
        finally:
            audit_import(self._user(email), "api", report)

    def _user(self, email: str) -> str:
        return user_hash(email, self.settings.log_hash_salt)

    # ---- usage ---------------------------------------------------------------------------------

    async def usage_report(self, email: str, *, days: int | None = None) -> UsageOut:
        return await self.usage.report(email, days=days)

    # ---- search --------------------------------------------------------------------------------

    async def search(
        self,
        email: str,
        raw_phrase: str | None,
        *,
        limit: int,
        continuation: str | None,
        archived: bool | Literal["all"],
        order: SearchOrder = "recent",
    ) -> SearchResults:
        """One page of a search: of the active sessions, the archived ones, or (``"all"``) both
        in one list, newest first or by relevance (with each result's ``score``). The first
        page looks the words up and orders every match; the token carries the rest, so later
        pages read only their own sessions (``shared.search_state``)."""
        phrase = phrase_of(raw_phrase)
        scope_name = "all" if archived == "all" else "archive" if archived else "active"
        scope = listing_scope(f"search:{scope_name}:{order}", phrase)
        position = self._position(continuation, scope, email)
        wheres: tuple[Where, ...] = (
            ("active", "archive")
            if archived == "all"
            else ("archive",)
            if archived
            else ("active",)
        )

        async def lookup(after: OrderKey | None) -> list[Found]:
            found = [
                Found(match, where)
                for where in wheres
                for match in await self.store.search_matches(
                    email, phrase, where=where, hits_per_session=HITS_PER_SESSION
                )
            ]
            return ordered(found, order, after)

        beyond: OrderKey | None = None  # matches after ``entries`` not looked up yet
        if position is None:
            entries = await lookup(None)
        else:
            state = decode_state(position)
            entries, beyond = state.pending, state.resume
            if beyond is not None and len(entries) <= limit:
                # The carried matches run out on this page: the words are looked up again,
                # after the last one carried (once per carried batch).
                carried = {f.match.session_id for f in entries}
                more = await lookup(beyond)
                entries += [f for f in more if f.match.session_id not in carried]
                beyond = None
        shown, rest = entries[:limit], entries[limit:]
        # Each session read where it was found; with both containers searched, from both
        # (one moved since the lookup is found where it is now: the later read wins).
        read: dict[str, tuple[SessionRecord, list[SearchHit]]] = {}
        for where in wheres:
            wanted = [f.match for f in shown if archived == "all" or f.where == where]
            if wanted:
                for session, hits in await self.store.search_page(
                    email, where=where, matches=wanted
                ):
                    read[session.id] = (session, hits)
        found_page = [
            (*read[f.match.session_id], f.match.score) for f in shown if f.match.session_id in read
        ]
        ranked = order == "relevance"
        results = [
            SearchResult(
                session_id=session.id,
                title=session.title,
                updated_at=iso(session.updated_at),
                archived=session.archived,
                score=score if ranked else None,
                matches=[
                    SearchMatch(
                        message_id=message_item_id(session.id, hit.seq),
                        role=hit.role,
                        snippet=snippet(hit.text, phrase),
                    )
                    for hit in hits
                ],
            )
            for session, hits, score in found_page
        ]
        return SearchResults(
            results=results,
            continuation_token=self._page_token(
                encode_state(rest, order, beyond, carry_room(phrase)), scope, email
            ),
        )


def _moved_away(
    session: SessionRecord, page: list[MessageRecord], limit: int, *, before_seq: int | None
) -> bool:
    """Whether a page read where the session was located misses messages it has (seqs have no
    gaps, and only a move takes messages away): the session moved between the two reads, so
    read again where it is now."""
    end = session.last_seq + 1 if before_seq is None else min(before_seq, session.last_seq + 1)
    return len(page) < min(limit, max(end - 1, 0))


def _still_moving() -> StorageUnavailable:
    return StorageUnavailable("The conversation is being moved; try again.", retry_after_s=1)


def _too_contended(session_id: str) -> ApiError:
    log.warning("commit_gave_up", extra={"session_id": session_id})
    return StorageUnavailable("The session is too busy right now; try again.", retry_after_s=1)
