"""The rules of API.md: a chat turn, list, get and delete. Knows nothing of HTTP.

A turn (DESIGN.md): one point read of the session item, then one atomic commit that stores the
user message (before the model is called), then the model, then one atomic commit that stores
the answer. Each commit is guarded by the session's ETag; when another turn of the same session
wins the race, the loser re-reads and re-sequences, so nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from shared.clock import Clock, SystemClock
from shared.config import Settings
from shared.context import model_messages, trim_history
from shared.errors import (
    ApiError,
    ConcurrencyConflict,
    InternalError,
    InvalidRequest,
    ModelError,
    NotFound,
    PayloadTooLarge,
)
from shared.ids import is_session_id, new_session_id
from shared.llm.base import ChatModel, Usage
from shared.models import (
    ChatRequest,
    ChatResponse,
    ClientRequestRef,
    ContextMessage,
    MessageOut,
    MessageRecord,
    SessionDetail,
    SessionList,
    SessionRecord,
)
from shared.storage.base import ConversationStore, Where

log = logging.getLogger("parley.service")

TITLE_CHARS = 50
PREVIEW_CHARS = 100
# clientMessageIds remembered per session for idempotent retries: the newest this many.
IDEMPOTENCY_WINDOW = 100
# Commit attempts before giving up on a hot session (each loss means another turn progressed).
MAX_COMMIT_ATTEMPTS = 100
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 20, 100

Restorer = Callable[[ConversationStore, str, str], Awaitable[SessionRecord | None]]


def make_title(message: str) -> str:
    """The first 50 characters of the first message, cut at a word boundary where possible."""
    text = re.sub(r"\s+", " ", message).strip()
    if len(text) <= TITLE_CHARS:
        return text
    cut = text[: TITLE_CHARS + 1]
    at_space = cut.rfind(" ")
    # Cut at a word only if that keeps most of the title; a single long word is cut hard.
    if at_space >= TITLE_CHARS // 2:
        return cut[:at_space].rstrip()
    return text[:TITLE_CHARS].rstrip()


def make_preview(message: str) -> str:
    return message[:PREVIEW_CHARS]


def derived_session_id(email: str, client_message_id: str) -> str:
    """A new session's id when the client gave a clientMessageId: a retry of the first message
    of a conversation, whose answer the client never saw, lands in the same session."""
    digest = hashlib.sha256(f"{email}\n{client_message_id}".encode()).hexdigest()
    return "s_" + digest[:32]


def _token_owner(email: str) -> str:
    # Binds a page token to its user, so a token passed to someone else is refused up front
    # instead of being handed to the store's paging with another partition.
    return hashlib.sha256(f"page-token\n{email}".encode()).hexdigest()[:16]


def encode_page_token(where: Where, store_token: str, email: str) -> str:
    body = {"w": where, "u": _token_owner(email), "t": store_token}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, where: Where, email: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if (
            not isinstance(data, dict)
            or data.get("w") != where
            or data.get("u") != _token_owner(email)
            or not isinstance(data["t"], str)
        ):
            raise ValueError("token shape")
        return str(data["t"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
        raise InvalidRequest("continuationToken is not valid for this listing.") from None


@dataclass
class TurnResult:
    session_id: str
    title: str
    user: MessageOut
    assistant: MessageOut

    def to_response(self) -> ChatResponse:
        return ChatResponse(
            session_id=self.session_id, title=self.title, messages=[self.user, self.assistant]
        )


@dataclass
class Turn:
    """A chat turn whose user message is stored. ``deltas()`` streams the answer;
    ``result()`` waits for the stored answer.

    The model call and the final write run in a task of their own, so the answer is stored
    even when a streaming client goes away half-way.
    """

    session_id: str
    title: str
    user: MessageRecord
    _answer: Callable[[asyncio.Queue[str | None]], Awaitable[MessageRecord]]
    _replayed: MessageRecord | None = None
    _task: asyncio.Task[MessageRecord] | None = field(default=None, init=False)
    _queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue, init=False)

    def _start(self) -> asyncio.Task[MessageRecord]:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
            _RUNNING.add(self._task)
            self._task.add_done_callback(_finished)
        return self._task

    async def _run(self) -> MessageRecord:
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

    async def result(self) -> TurnResult:
        if self._replayed is not None:
            assistant = self._replayed
        else:
            assistant = await asyncio.shield(self._start())
        return TurnResult(self.session_id, self.title, self.user.to_api(), assistant.to_api())


# Strong references to answer tasks: a task nobody references may be garbage-collected.
_RUNNING: set[asyncio.Task[MessageRecord]] = set()


def _finished(task: asyncio.Task[MessageRecord]) -> None:
    _RUNNING.discard(task)
    if not task.cancelled():
        # Mark a failure as seen: when the streaming client has gone, nobody awaits the task,
        # and the failure was logged where it happened.
        task.exception()


class ConversationService:
    def __init__(
        self,
        store: ConversationStore,
        model: ChatModel,
        settings: Settings,
        *,
        clock: Clock | None = None,
        restore: Restorer | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.settings = settings
        self.clock = clock or SystemClock()
        self._restore = restore

    # ---- chat --------------------------------------------------------------------------------

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
        cmid = request.client_message_id
        if request.session_id is None:
            session_id = derived_session_id(email, cmid) if cmid else new_session_id()
            session = await self.store.get_session(email, session_id) if cmid else None
            if session is None:
                return await self._start_session(email, session_id, request)
        else:
            session = await self._find_for_turn(email, request.session_id)

        if cmid and (ref := session.client_requests.get(cmid)):
            return await self._replay(email, session, ref)
        return await self._append_user_message(email, session, request)

    async def chat(self, email: str, request: ChatRequest) -> TurnResult:
        turn = await self.begin_turn(email, request)
        return await turn.result()

    async def _find_for_turn(self, email: str, session_id: str) -> SessionRecord:
        if not is_session_id(session_id):
            raise NotFound()
        session = await self.store.get_session(email, session_id)
        if session is None and self._restore is not None:
            # An archived conversation comes back to the active store before it continues.
            session = await self._restore(self.store, email, session_id)
        if session is None:
            raise NotFound()
        return session

    def _user_record(self, session_id: str, seq: int, request: ChatRequest) -> MessageRecord:
        return MessageRecord(
            session_id=session_id,
            seq=seq,
            role="user",
            content=request.message,
            timestamp=self.clock.now(),
            client_message_id=request.client_message_id,
        )

    def _with_messages(
        self, session: SessionRecord, messages: list[MessageRecord]
    ) -> SessionRecord:
        """The session item after appending ``messages``: counters, time, context window."""
        context = [*session.context, *(ContextMessage(**m.model_dump()) for m in messages)]
        return session.model_copy(
            update={
                "message_count": session.message_count + len(messages),
                "last_seq": messages[-1].seq,
                "updated_at": messages[-1].timestamp,
                # The window stays within the model's budget, so the item never grows with
                # the conversation.
                "context": trim_history(
                    context,
                    max_messages=self.settings.max_history_messages,
                    max_tokens=self.settings.max_context_tokens,
                ),
            }
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
        session = self._remember_request(self._with_messages(empty, [user]), user)
        try:
            stored = await self.store.commit(session, [user], expected_etag=None)
        except ConcurrencyConflict:
            # Only a derived id can collide: the same first message retried concurrently.
            existing = await self.store.get_session(email, session_id)
            ref = (
                existing.client_requests.get(request.client_message_id or "") if existing else None
            )
            if existing is None or ref is None:
                raise InternalError() from None
            return await self._replay(email, existing, ref)
        log.info("session_created", extra={"session_id": session_id})
        return self._turn(email, stored, user)

    @staticmethod
    def _remember_request(
        session: SessionRecord, user: MessageRecord, assistant_seq: int | None = None
    ) -> SessionRecord:
        if not user.client_message_id:
            return session
        requests = dict(session.client_requests)
        requests.pop(user.client_message_id, None)
        requests[user.client_message_id] = ClientRequestRef(
            user_seq=user.seq, assistant_seq=assistant_seq
        )
        while len(requests) > IDEMPOTENCY_WINDOW:  # dicts keep insertion order: oldest first
            requests.pop(next(iter(requests)))
        return session.model_copy(update={"client_requests": requests})

    async def _append_user_message(
        self, email: str, session: SessionRecord, request: ChatRequest
    ) -> Turn:
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if request.client_message_id and (
                ref := session.client_requests.get(request.client_message_id)
            ):
                return await self._replay(email, session, ref)  # a concurrent retry won
            user = self._user_record(session.id, session.last_seq + 1, request)
            updated = self._remember_request(self._with_messages(session, [user]), user)
            try:
                stored = await self.store.commit(updated, [user], expected_etag=session.etag)
            except ConcurrencyConflict:
                session = await self._reread(email, session.id)
                continue
            return self._turn(email, stored, user)
        raise _too_contended(session.id)

    async def _reread(self, email: str, session_id: str) -> SessionRecord:
        session = await self.store.get_session(email, session_id)
        if session is None and self._restore is not None:
            # Archived between our read and our write: bring it back and carry on.
            session = await self._restore(self.store, email, session_id)
        if session is None:  # deleted while we were writing
            raise NotFound()
        return session

    async def _replay(self, email: str, session: SessionRecord, ref: ClientRequestRef) -> Turn:
        """A retry of a clientMessageId: store nothing twice, answer what was answered."""
        user = await self.store.get_message(email, session.id, ref.user_seq)
        if user is None:
            raise NotFound()
        assistant = None
        if ref.assistant_seq is not None:
            assistant = await self.store.get_message(email, session.id, ref.assistant_seq)
        turn = self._turn(email, session, user)
        turn._replayed = assistant
        return turn

    def _turn(self, email: str, session: SessionRecord, user: MessageRecord) -> Turn:
        async def answer(queue: asyncio.Queue[str | None]) -> MessageRecord:
            return await self._answer(email, session, user, queue)

        return Turn(session_id=session.id, title=session.title, user=user, _answer=answer)

    async def _answer(
        self,
        email: str,
        session: SessionRecord,
        user: MessageRecord,
        queue: asyncio.Queue[str | None],
    ) -> MessageRecord:
        # The model sees the stored window up to and including this turn's user message.
        history = [m for m in session.context if m.seq <= user.seq]
        if not history or history[-1].seq != user.seq:  # a retry whose message left the window
            history = [*history, ContextMessage(seq=user.seq, role="user", content=user.content)]
        messages = model_messages(
            self.settings.system_prompt,
            history,
            max_messages=self.settings.max_history_messages,
            max_tokens=self.settings.max_context_tokens,
        )
        pieces: list[str] = []
        usage: Usage | None = None
        try:
            async for piece in self.model.stream(messages):
                if isinstance(piece, Usage):
                    usage = piece
                else:
                    pieces.append(piece)
                    queue.put_nowait(piece)
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
        content = "".join(pieces)
        if not content.strip():
            raise ModelError("The model returned an empty answer.")
        return await self._store_answer(email, session, user, content, usage)

    async def _store_answer(
        self,
        email: str,
        session: SessionRecord,
        user: MessageRecord,
        content: str,
        usage: Usage | None,
    ) -> MessageRecord:
        for _ in range(MAX_COMMIT_ATTEMPTS):
            ref = session.client_requests.get(user.client_message_id or "")
            if ref is not None and ref.assistant_seq is not None:
                # A concurrent retry of the same request stored its answer first: keep that one.
                existing = await self.store.get_message(email, session.id, ref.assistant_seq)
                if existing is not None:
                    return existing
            assistant = MessageRecord(
                session_id=session.id,
                seq=session.last_seq + 1,
                role="assistant",
                content=content,
                timestamp=self.clock.now(),
                model=usage.model if usage else self.model.name,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
            )
            updated = self._with_messages(session, [assistant])
            updated = self._remember_request(updated, user, assistant.seq)
            try:
                await self.store.commit(updated, [assistant], expected_etag=session.etag)
            except ConcurrencyConflict:
                session = await self._reread(email, session.id)
                continue
            return assistant
        raise _too_contended(session.id)

    # ---- list, get, delete -------------------------------------------------------------------

    async def list_sessions(
        self, email: str, *, limit: int, continuation: str | None, archived: bool
    ) -> SessionList:
        where: Where = "archive" if archived else "active"
        store_token = decode_page_token(continuation, where, email) if continuation else None
        sessions, next_token = await self.store.list_sessions(
            email, limit=limit, continuation=store_token, where=where
        )
        return SessionList(
            sessions=[s.to_summary() for s in sessions],
            continuation_token=(
                encode_page_token(where, next_token, email) if next_token else None
            ),
        )

    async def get_session(self, email: str, session_id: str) -> SessionDetail:
        if not is_session_id(session_id):
            raise NotFound()
        for where in ("active", "archive"):
            session = await self.store.get_session(email, session_id, where)
            if session is not None:
                messages = await self.store.list_messages(email, session_id, where)
                return SessionDetail(
                    **session.to_summary().model_dump(),
                    messages=[m.to_api() for m in messages],
                )
        raise NotFound()

    async def delete_session(self, email: str, session_id: str) -> None:
        if not is_session_id(session_id):
            raise NotFound()
        found = False
        for where in ("active", "archive"):
            found = await self.store.delete_session(email, session_id, where) or found
        if not found:
            raise NotFound()
        log.info("session_deleted", extra={"session_id": session_id})


def _too_contended(session_id: str) -> ApiError:
    from shared.errors import StorageUnavailable

    log.warning("commit_gave_up", extra={"session_id": session_id})
    return StorageUnavailable("The session is too busy right now; try again.", retry_after_s=1)
