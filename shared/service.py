"""The API's rules for conversations at rest (``openapi.yaml``, ``docs/http.md``): reading,
listing, renaming and pinning, feedback, branches, search, deleting, export, erasure, import and
usage. Knows nothing of HTTP or of any database. The chat turn, and everything about answers
(generating, storing, following, stopping, regenerating), is ``shared/turns/``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from shared.answers import ShownAt, answer_budget_s
from shared.audit import structured, user_hash
from shared.backoff import LostRace, RetriesExhausted, Sleep, retry_on_conflict
from shared.clock import Clock, SystemClock, iso
from shared.config import Settings
from shared.consistency import CatchesUp, catch_up
from shared.erase import audit_erase, erase_sessions
from shared.errors import ConcurrencyConflict, InvalidRequest, NotFound
from shared.events import emit
from shared.export import ExportCount, audit_export
from shared.export_formats import ExportFormat, export_stream
from shared.groups.service import erase_groups
from shared.ids import is_session_id, message_item_id, new_session_id
from shared.importer import ImportReport, audit_import, import_file
from shared.locating import (
    MAX_MOVED_READS,
    Located,
    find,
    locate,
    restore,
    seq_in,
    still_moving,
    too_contended,
)
from shared.models import (
    Feedback,
    FeedbackRequest,
    MessageOut,
    MessagePage,
    MessageRecord,
    SearchMatch,
    SearchResult,
    SearchResults,
    SessionDetail,
    SessionList,
    SessionRecord,
    SessionSummary,
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
from shared.storage.base import SearchHit, Where
from shared.titles import branch_title, make_preview, title_of
from shared.usage import UsageMeter, UsageOut

log = logging.getLogger("parley.service")

LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 20, 100
MESSAGES_LIMIT_DEFAULT, MESSAGES_LIMIT_MAX = 50, 200

# Rating a message: attempts before answering 503 (its own limit; the same as a turn's
# question's, for the same contention: every turn of the session rewrites the item it
# conditions on).
MAX_FEEDBACK_ATTEMPTS = 40
# A rename or a pin is rarely contended; a few attempts, then 503.
MAX_TITLE_ATTEMPTS = 5


FEEDBACK_LOG_PREFIX = "feedback_changed "  # docs/operations.md's query parses what follows


class ConversationService:
    def __init__(
        self,
        store: SharingStore,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self._sleep = sleep
        self._answer_budget_s = answer_budget_s(settings.llm_timeout_s, settings.llm_max_retries)
        self._token_key = settings.resolved_token_signing_key
        self.usage = UsageMeter(store, settings, self.clock, sleep=sleep)

    # ---- branches ------------------------------------------------------------------------------

    async def fork(self, email: str, session_id: str, message_id: str) -> SessionSummary:
        """A new session holding copies of the messages up to and including ``message_id``
        (their current text), titled after the original with " (branch)". Written like an
        import: invisible until every message is stored, so a failure half-way shows nothing
        (``ConversationStore.import_session``). An archived original is read where it is; the
        branch is a new session in the active container."""
        seq = seq_in(session_id, message_id)
        for _ in range(MAX_MOVED_READS):
            located = await self._find(email, session_id)
            if not 1 <= seq <= located.session.last_seq:
                raise NotFound("No such message.")
            source = await self._messages_up_to(email, session_id, located.where, seq)
            if len(source) == seq:
                break  # seqs have no gaps: all of them (else it moved meanwhile)
        else:
            raise still_moving()
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
            raise too_contended(session_id)  # a new random id in use: never, but never wrong
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

    # ---- reading -------------------------------------------------------------------------------

    async def _locate(self, email: str, session_id: str) -> Located | None:
        return await locate(self.store, email, session_id)

    async def _find(self, email: str, session_id: str) -> Located:
        return await find(self.store, email, session_id)

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
            raise still_moving()
        shown = self._shown_at()
        return SessionDetail(
            **located.session.to_summary().model_dump(),
            messages=[shown(m).to_api() for m in messages],
            has_more_messages=more,
        )

    async def page_messages(
        self, email: str, session_id: str, *, before: str | None, limit: int
    ) -> MessagePage:
        before_seq = seq_in(session_id, before) if before is not None else None
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
            raise still_moving()
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
                await restore(self.store, email, session_id, n, self._sleep)
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
        raise too_contended(session_id)

    async def set_feedback(
        self, email: str, session_id: str, message_id: str, request: FeedbackRequest | None
    ) -> MessageOut | None:
        """Rate an assistant message (``request``), or clear its rating (None)."""
        seq = seq_in(session_id, message_id)

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
            raise too_contended(session_id) from None

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
        """Delete every session of the caller (``shared/erase/``); True once nothing is
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
        """A ChatGPT or Parley export into the caller's conversations (``shared/importer/``);
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
