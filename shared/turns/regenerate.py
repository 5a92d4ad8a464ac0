"""Regenerating the last answer (``docs/http.md``, "Regenerate"): a turn without a new
question, whose answer takes the last answer's place and keeps it as an earlier version; and
the versions of a message, as regenerates left them."""

from __future__ import annotations

from dataclasses import dataclass

from shared.answers import ANSWER_COMMIT_PATIENCE_S
from shared.backoff import LostRace, RetriesExhausted, Sleep, retry_on_conflict
from shared.clock import Clock
from shared.config import Settings
from shared.deadline import storage_budget
from shared.errors import ConcurrencyConflict, Conflict, DuplicateRequest, NotFound
from shared.ids import is_session_id
from shared.llm.base import Usage
from shared.locating import (
    MAX_MOVED_READS,
    find,
    restore,
    seq_in,
    still_moving,
    too_contended,
)
from shared.models import (
    AnswerStatus,
    MessageRecord,
    RegenerateRequest,
    RequestRecord,
    SessionRecord,
    VersionList,
)
from shared.storage.base import ConversationStore, Presence
from shared.turns.answer import Answering
from shared.turns.storing import AnswerWrites, StoreAnswer
from shared.turns.turn import Turn, TurnResult

# Reading the last answer and its question to regenerate: attempts before answering 503 (each
# lost race means the session changed meanwhile, as for a turn's question).
MAX_REGENERATE_ATTEMPTS = 40


@dataclass(frozen=True)
class Regenerating:
    store: ConversationStore
    settings: Settings
    clock: Clock
    answering: Answering
    writes: AnswerWrites
    sleep: Sleep

    async def begin_regenerate(
        self, email: str, session_id: str, request: RegenerateRequest
    ) -> Turn:
        """A new answer to the last user message, to replace the last answer (kept as an
        earlier version): a turn without a new question. Its errors (404, 409, 429) are raised
        here, before the model is called."""
        if not is_session_id(session_id):
            raise NotFound()
        await self.answering.check_quota(email)
        cmid = request.client_message_id

        async def attempt(n: int) -> Turn:
            # The answer and its question too: the model is given as many messages before
            # the question as a turn is.
            view = await self.store.read_turn(
                email, session_id, history=self.settings.max_history_messages + 2
            )
            if view.presence is Presence.ARCHIVED:
                await restore(self.store, email, session_id, n, self.sleep)
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
            if self.answering.shown_at()(previous).status == "streaming":
                # Its generator (on any instance) still writes that item: stop it first.
                raise Conflict("The last answer is still being generated: stop it first.")
            window = [m for m in view.window if m.seq < user.seq]
            return self.answering.turn(
                email,
                session,
                user,
                window,
                store_answer=self._in_place_of(previous, cmid),
            )

        try:
            return await retry_on_conflict(
                attempt, attempts=MAX_REGENERATE_ATTEMPTS, sleep=self.sleep
            )
        except RetriesExhausted:
            raise too_contended(session_id) from None

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
            raise too_contended(session.id)  # moved meanwhile: the client retries
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
            raise too_contended(session_id)
        if message.client_message_id == cmid:
            return message
        earlier = await self.store.message_versions(
            email, session_id, message.seq, where="active", count=message.versions or 1
        )
        for version in earlier:
            if version.client_message_id == cmid:
                return version.model_copy(update={"versions": None})
        raise Conflict("This clientMessageId was already used for another message.")

    def _in_place_of(self, previous: MessageRecord, cmid: str | None) -> StoreAnswer:
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
                        session = await self.writes.live_session(email, session.id, n - 1)
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
                answer = self.writes.record(
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
                    attempt, within_s=ANSWER_COMMIT_PATIENCE_S, clock=self.clock, sleep=self.sleep
                )
            except RetriesExhausted:
                raise too_contended(session.id) from None

        return store

    async def message_versions(self, email: str, session_id: str, message_id: str) -> VersionList:
        """Every version of a message, oldest first, the current one last (a message never
        regenerated has one)."""
        seq = seq_in(session_id, message_id)
        for _ in range(MAX_MOVED_READS):
            located = await find(self.store, email, session_id)
            message = await self.store.get_message(email, session_id, seq, where=located.where)
            if message is None:
                if 1 <= seq <= located.session.last_seq:
                    continue  # it exists (seqs have no gaps): the session moved meanwhile
                raise NotFound("No such message.")
            count = message.versions or 1
            earlier = await self.store.message_versions(
                email, session_id, seq, where=located.where, count=count
            )
            if len(earlier) < count - 1:
                continue  # moved between the two reads
            return VersionList(
                versions=[
                    *(m.model_copy(update={"versions": None}).to_api() for m in earlier),
                    message.to_api(),
                ]
            )
        raise still_moving()
