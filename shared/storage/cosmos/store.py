"""The Cosmos DB store: Azure Cosmos DB for NoSQL through ``azure.cosmos.aio``.

A turn costs three requests whatever the conversation's length (``docs/design.md``, "The
turn"): one single-partition query that returns the session item and its newest messages (the
model's window), and two transactional batches, each creating a message (and the request item
of a clientMessageId) and replacing the small session item if-match its ETag. Listing,
paging and search are single-partition queries with keyset positions; moves and deletes are
in ``moves.py``. Logs name session ids and counts, never item contents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.azure_credential import azure_credential
from shared.clock import Clock, SystemClock, parse_iso, stored_time
from shared.errors import (
    ConcurrencyConflict,
    DuplicateRequest,
    InvalidRequest,
    StorageUnavailable,
)
from shared.groups.models import GroupMessageRecord, GroupRecord, GroupRequestRecord
from shared.ids import message_item_id
from shared.models import (
    ContextMessage,
    Feedback,
    MessageRecord,
    RequestRecord,
    SessionRecord,
    ShareRecord,
    ShareView,
    ViewedShare,
)
from shared.origins import LOCAL_HOSTS
from shared.search import SEARCH_SCAN_LIMIT, relevance, words_of
from shared.storage.base import (
    AnswerFacts,
    ArchiveRun,
    Binding,
    Checkpoint,
    MatchedSession,
    MoveOutcome,
    Presence,
    RehomeOutcome,
    SearchHit,
    SessionRef,
    Spent,
    TurnView,
    Unfinished,
    UsageDay,
    Where,
)
from shared.storage.containers import (
    CONTENT_FOLDED,
    TITLE_FOLDED,
    container_specs,
    groups_spec,
    shares_spec,
)
from shared.storage.cosmos import usage as usage_items
from shared.storage.cosmos.client import BatchOp, BatchRefused, CosmosConnection, chunks
from shared.storage.cosmos.groups import CosmosGroups
from shared.storage.cosmos.items import (
    ARCHIVED,
    DELETING,
    IDENTITY_ITEM_ID,
    IMPORTING,
    LIVE_MARKER,
    OPS_PARTITION,
    RESTORING,
    SESSION_ITEM_SEQ,
    UNFINISHED_STATES,
    State,
    archive_run_body,
    archive_run_from_item,
    binding_from_item,
    feedback_body,
    identity_body,
    message_body,
    message_from_item,
    request_body,
    request_from_item,
    request_item_id,
    session_body,
    session_from_item,
    version_body,
    version_item_id,
)
from shared.storage.cosmos.moves import Moves
from shared.storage.cosmos.rehome import Rehome
from shared.storage.cosmos.shares import CosmosShares
from shared.storage.keyset import decode_position, encode_position

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.config import Settings

# A checkpoint's condition: the answer is still being generated (Azure: "Conditional patch",
# https://learn.microsoft.com/azure/cosmos-db/partial-document-update#supported-modes; a
# predicate that does not hold is 412 Precondition Failed).
STREAMING_PREDICATE = "FROM c WHERE c.status = 'streaming'"
# A checkpoint's: streaming, and no stop asked for (POST .../stop sets stopRequested).
CHECKPOINT_PREDICATE = "FROM c WHERE c.status = 'streaming' AND NOT IS_DEFINED(c.stopRequested)"
# The session item, then its newest messages: one query, served by the (sessionId, seq) index.
# Only the fields a turn uses come back (no system properties, ids or cost fields): a turn's
# read is most of its bytes, and every one of them is on the user's bill.
TURN_QUERY = (
    "SELECT TOP {n} c.seq, c.role, c.content, c.contextFrom, c.title, c.titleSource, c.preview,"
    " c.createdAt, c.updatedAt, c.messageCount, c.lastSeq, c.pinned, c.state, c._etag FROM c"
    " WHERE c.sessionId = @sid AND c.seq >= 0 ORDER BY c.sessionId DESC, c.seq DESC"
)
# Live session items, pinned first, then newest first: one query from the (type, pinned,
# updatedAt, id) composite index; summary fields only: listing never reads more than it shows.
# Items written before pinning existed lack ``pinned``; Cosmos returns them too, after every
# item that has it (undefined sorts lowest), and a position says which of the three runs
# (pinned, unpinned, without the field) it is in, so paging crosses each boundary exactly once.
LIST_QUERY = (
    "SELECT TOP {n} c.id, c.EmailID, c.title, c.titleSource, c.preview, c.createdAt,"
    " c.updatedAt, c.messageCount, c.lastSeq, c.pinned, c._etag FROM c"
    " WHERE c.type = 'session' AND NOT IS_DEFINED(c.state){after}"
    " ORDER BY c.type DESC, c.pinned DESC, c.updatedAt DESC, c.id DESC"
)
# The list's runs, in order, and the filter that starts a page after a position in each.
LIST_RUNS = ("pinned", "unpinned", "legacy")
_NEWER = "(c.updatedAt < @u OR (c.updatedAt = @u AND c.id < @i))"
LIST_AFTER_CLAUSES = {
    "pinned": (
        f" AND ((c.pinned = true AND {_NEWER}) OR c.pinned = false OR NOT IS_DEFINED(c.pinned))"
    ),
    "unpinned": f" AND ((c.pinned = false AND {_NEWER}) OR NOT IS_DEFINED(c.pinned))",
    "legacy": f" AND NOT IS_DEFINED(c.pinned) AND {_NEWER}",
}
MESSAGES_BEFORE_QUERY = (
    "SELECT TOP {n} * FROM c WHERE c.sessionId = @sid AND c.seq < @before"
    " ORDER BY c.sessionId DESC, c.seq DESC"
)
MESSAGES_AFTER_QUERY = (
    "SELECT TOP {n} * FROM c WHERE c.sessionId = @sid AND c.seq > @after AND c.seq < @end"
    " ORDER BY c.sessionId ASC, c.seq ASC"
)
# Scans across users (the archival pass only), in no particular order. Each is an equality
# then one range, served by one composite index (``shared/storage/containers.py``): a scan reads
# what it finds, never the stubs of earlier passes (``docs/design.md``, "Indexing").
STALE_QUERY = (
    "SELECT c.EmailID, c.id, c.updatedAt, c.state, c._etag FROM c"
    " WHERE c.live = true AND c.updatedAt < @cutoff"
)
# The report's scans (python -m shared.report): counts only, never text, sessions or users.
USAGE_DAYS_QUERY = (
    "SELECT c.period, c.promptTokens, c.completionTokens, c.cachedTokens, c.turns FROM c"
    " WHERE c.type = 'usage' AND c.period >= @first AND c.period <= @last"
)
# Messages since a time (the indexed ``timestamp``); the role is read, not filtered on, so the
# filter stays on indexed paths, and only answers are kept (``scan_answers``).
ANSWERS_QUERY = (
    "SELECT c.role, c.model, c.promptTokens, c.completionTokens, c.feedback.rating AS rating,"
    " c.firstTokenMs, c.totalMs FROM c WHERE c.type = 'message' AND c.timestamp >= @since"
)
# The archival passes since a time: one partition (the operators', ``OPS_PARTITION``), and the
# filter on indexed paths only (``type``, ``timestamp``).
ARCHIVE_RUNS_QUERY = (
    "SELECT c.id, c.timestamp, c.moved, c.failed FROM c"
    " WHERE c.type = 'archiveRun' AND c.timestamp >= @since"
)
UNFINISHED_QUERY = (
    "SELECT c.EmailID, c.id, c.state FROM c WHERE c.state = @state AND c.since < @cutoff"
)
CLEANUP_QUERY = (
    "SELECT c.EmailID, c.id, c.state FROM c"
    " WHERE c.state = 'archived' AND c.cleanup = true AND c.since < @cutoff"
)
# Housekeeping's scans one after the other (a state of a container, or the stubs still
# cleaning up; ``None``): the position says which, and where in it.
UNFINISHED_PHASES: tuple[tuple[Where, State | None], ...] = (
    *(("active", state) for state in UNFINISHED_STATES["active"]),
    ("active", None),
    *(("archive", state) for state in UNFINISHED_STATES["archive"]),
)
# Every session of a user once: the active container holds an item for each (live, or the stub
# of an archived one), oldest first from the same composite index as the list.
ALL_SESSIONS_QUERY = (
    "SELECT TOP {n} c.id, c.state, c.updatedAt FROM c WHERE c.type = 'session'"
    " AND (NOT IS_DEFINED(c.state) OR c.state IN ('archived', 'restoring')){after}"
    " ORDER BY c.type ASC, c.updatedAt ASC, c.id ASC"
)
ALL_AFTER_CLAUSE = " AND (c.updatedAt > @u OR (c.updatedAt = @u AND c.id > @i))"
COUNT_QUERY = "SELECT VALUE COUNT(1) FROM c WHERE c.type = @type"
# Search: message text and titles are in the full-text index (shared/storage/containers.py), so
# the lookups are index lookups of the phrase's words: they read the items holding them, never
# the rest of the caller's history (docs/performance.md measures both). ``{match}`` is
# ``FullTextContainsAll`` of the words (``_all_words``), which the language takes as literals.
# The lookup runs once per search (``shared.search_state``); a page reads its items by id.
SEARCH_MESSAGES_QUERY = "SELECT c.sessionId, c.seq FROM c WHERE c.type = 'message' AND {match}"
SEARCH_TITLES_QUERY = (
    "SELECT c.id FROM c WHERE c.type = 'session' AND NOT IS_DEFINED(c.state) AND {match}"
)
# The matched sessions' order keys (readable ones only), and a page's sessions and matching
# messages: read by id (``c.id IN``, an index seek on ids alone: no other filter the index
# serves, which would make the query read every item that one matches), ``SEARCH_IDS_PER_QUERY``
# at a time. A session item's id is the session id; a message's, ``<session id>:<seq>``.
SEARCH_TIMES_QUERY = (
    "SELECT c.id, c.updatedAt FROM c WHERE c.id IN ({ids}) AND NOT IS_DEFINED(c.state)"
)
SEARCH_PAGE_QUERY = (
    "SELECT c.id, c.EmailID, c.title, c.titleSource, c.preview, c.createdAt,"
    " c.updatedAt, c.messageCount, c.lastSeq, c.pinned, c._etag FROM c"
    " WHERE c.id IN ({ids}) AND NOT IS_DEFINED(c.state)"
)
SEARCH_HITS_QUERY = "SELECT c.sessionId, c.seq, c.role, c.content FROM c WHERE c.id IN ({ids})"
SEARCH_IDS_PER_QUERY = 500
# Erasing a user: their session items, then (once none is left) any item at all.
SESSION_IDS_QUERY = "SELECT TOP {n} VALUE c.id FROM c WHERE c.type = 'session'"
LEFTOVER_IDS_QUERY = "SELECT TOP {n} VALUE c.sessionId FROM c"


def _keyset(after: str | None, clause: str) -> tuple[str, list[dict[str, object]]]:
    """The filter that starts a page after ``after`` (an (updatedAt, id) position)."""
    if after is None:
        return "", []
    updated_at, session_id = decode_position(after, 2)
    return clause, [{"name": "@u", "value": updated_at}, {"name": "@i", "value": session_id}]


def _next_position(items: list[dict[str, Any]], limit: int) -> str | None:
    """The position after a page, from a query that read one item more than it returns: only
    when something follows (never a position that leads to an empty page)."""
    if len(items) <= limit:
        return None
    last = items[limit - 1]
    return encode_position(last["updatedAt"], last["id"])


class CosmosStore:
    """ConversationStore and ArchiveStore on Cosmos DB."""

    def __init__(
        self,
        endpoint: str,
        credential: str | AsyncTokenCredential,
        *,
        database: str,
        container: str,
        archive_container: str,
        shares_container: str | None = None,
        groups_container: str | None = None,
        verify_tls: bool = True,
        bootstrap: bool = False,
        client_options: dict[str, Any] | None = None,
        timeout_s: float = 20.0,
        clock: Clock | None = None,
    ) -> None:
        self.conn = CosmosConnection(
            endpoint,
            credential,
            database=database,
            specs=container_specs(container, archive_container),
            shares=shares_spec(shares_container) if shares_container else shares_spec(),
            groups=groups_spec(groups_container) if groups_container else groups_spec(),
            verify_tls=verify_tls,
            bootstrap=bootstrap,
            client_options=client_options or {},
            timeout_s=timeout_s,
        )
        self.clock = clock or SystemClock()
        self.moves = Moves(self.conn, self.clock)
        self.rehome = Rehome(self.conn, self.moves, self.clock)
        self.shares = CosmosShares(self.conn, self.clock)
        self.groups = CosmosGroups(self.conn)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> CosmosStore:
        endpoint = settings.cosmos_endpoint
        if not endpoint:
            raise ValueError("COSMOS_ENDPOINT is required for the Cosmos store")
        # A key only for local emulators; in Azure the managed identity (keys are disabled).
        credential = settings.cosmos_key or azure_credential(settings)
        local = (urlsplit(endpoint).hostname or "") in LOCAL_HOSTS
        return cls(
            endpoint,
            credential,
            database=settings.cosmos_database,
            container=settings.cosmos_container,
            archive_container=settings.cosmos_archive_container,
            shares_container=settings.cosmos_shares_container,
            groups_container=settings.cosmos_groups_container,
            verify_tls=settings.cosmos_verify_tls,
            # Data-plane RBAC cannot create databases or containers, and in Azure the Pulumi
            # program owns them: create them only with a key against a local emulator.
            bootstrap=bool(settings.cosmos_key) and local,
            timeout_s=settings.store_timeout_s,
            clock=clock,
        )

    async def close(self) -> None:
        await self.conn.close()

    async def catch_up(self, email: str) -> bool:
        """Reads of ``email``'s data from here on see every acknowledged write
        (shared/consistency.py)."""
        return await self.conn.catch_up(email)

    # ---- a turn --------------------------------------------------------------------------------

    async def read_turn(self, email: str, session_id: str, *, history: int) -> TurnView:
        items = await self.conn.query(
            "active",
            TURN_QUERY.format(n=int(history) + 1),
            [{"name": "@sid", "value": session_id}],
            email=email,
        )
        if not items or items[0].get("seq") != SESSION_ITEM_SEQ:
            return TurnView(Presence.MISSING)
        known = {"id": session_id, "sessionId": session_id, "EmailID": email}
        session = session_from_item({**items[0], **known}, archived=False)
        if session.state in (ARCHIVED, RESTORING):
            return TurnView(Presence.ARCHIVED)
        if session.state == DELETING:
            # A delete under way, or one that stopped half-way (a crash): help it finish, so a
            # retried first message can start its session again instead of meeting it forever.
            await self.moves.delete_everywhere(email, session_id)
        if not session.live:
            return TurnView(Presence.MISSING)
        window = [ContextMessage.model_validate(item) for item in items[1:]]
        return TurnView(Presence.LIVE, session.record, tuple(reversed(window)))

    async def append(
        self,
        session: SessionRecord,
        messages: list[MessageRecord],
        *,
        expected_etag: str | None,
        request: RequestRecord | None = None,
    ) -> SessionRecord:
        email = session.email
        ops: list[BatchOp] = [("create", (message_body(email, m),)) for m in messages]
        request_index = None
        if request is not None:
            request_index = len(ops)
            # A new clientMessageId is created (409 if it was seen before: a retry); the
            # answer's write updates it.
            verb = "create" if request.assistant_seq is None else "upsert"
            ops.append((verb, (request_body(email, request),)))
        body = session_body(session)
        if expected_etag is None:
            ops.append(("create", (body,)))
        else:
            ops.append(("replace", (session.id, body), {"if_match_etag": expected_etag}))
        try:
            results = await self.conn.batch("active", email, ops)
        except BatchRefused as refused:
            if refused.index == request_index and refused.status == 409:
                raise DuplicateRequest() from refused
            # 409: a message seq (or the new session) exists; 412: the ETag moved on; 404: the
            # session item is gone. Each means another writer got there first.
            raise ConcurrencyConflict(session.id) from refused
        return session.model_copy(update={"etag": results[-1].get("eTag"), "archived": False})

    async def checkpoint_answer(
        self, email: str, session_id: str, seq: int, content: str | None, *, at: datetime
    ) -> Checkpoint:
        # One patch of the message item, conditional on its still streaming with no stop asked
        # for: a finished, stopped or deleted answer is never written again (412 / 404). The
        # session item and its ETag are untouched (docs/design.md, "Streaming checkpoints").
        ops: list[dict[str, Any]] = [
            {"op": "set", "path": "/checkpointAt", "value": stored_time(at)},
        ]
        if content is not None:
            ops.insert(0, {"op": "set", "path": "/content", "value": content})
        item_id = message_item_id(session_id, seq)
        status = await self.conn.patch(
            "active", email, item_id, ops, filter_predicate=CHECKPOINT_PREDICATE
        )
        if status == 200:
            return Checkpoint.WRITTEN
        if status != 412:
            return Checkpoint.GONE
        # Why not: the one read a refused checkpoint costs.
        item = await self.conn.read("active", item_id, email)
        streaming = item is not None and item.get("status") == "streaming"
        return Checkpoint.STOPPED if streaming else Checkpoint.GONE

    async def request_stop(self, email: str, session_id: str, seq: int) -> bool:
        # One patch of the message item (the session's ETag stays), applied only while it
        # streams: its generator's next checkpoint is refused, and it stops.
        status = await self.conn.patch(
            "active",
            email,
            message_item_id(session_id, seq),
            [{"op": "set", "path": "/stopRequested", "value": True}],
            filter_predicate=STREAMING_PREDICATE,
        )
        return status == 200

    async def finish_answer(
        self, session: SessionRecord, message: MessageRecord, *, expected_etag: str
    ) -> SessionRecord:
        email = session.email
        ops: list[BatchOp] = [
            # Replace, not create: the answer's item exists since its first checkpoint (404
            # here means a reader's state is stale: read again).
            ("replace", (message.id, message_body(email, message))),
            ("replace", (session.id, session_body(session)), {"if_match_etag": expected_etag}),
        ]
        try:
            results = await self.conn.batch("active", email, ops)
        except BatchRefused as refused:
            raise ConcurrencyConflict(session.id) from refused
        return session.model_copy(update={"etag": results[-1].get("eTag"), "archived": False})

    async def replace_answer(
        self,
        session: SessionRecord,
        answer: MessageRecord,
        previous: MessageRecord,
        *,
        expected_etag: str,
        request: RequestRecord | None = None,
    ) -> SessionRecord:
        # One batch, like a turn's: the earlier version is created (409 if that number is
        # taken: another regenerate won), the message replaced, the request created, and the
        # session item replaced if-match last, so a lost race applies nothing.
        email = session.email
        ops: list[BatchOp] = [
            ("create", (version_body(email, previous, previous.versions or 1),)),
            ("replace", (message_item_id(session.id, answer.seq), message_body(email, answer))),
        ]
        request_index = None
        if request is not None:
            request_index = len(ops)
            ops.append(("create", (request_body(email, request),)))
        ops.append(
            ("replace", (session.id, session_body(session)), {"if_match_etag": expected_etag})
        )
        try:
            results = await self.conn.batch("active", email, ops)
        except BatchRefused as refused:
            if refused.index == request_index and refused.status == 409:
                raise DuplicateRequest() from refused
            raise ConcurrencyConflict(session.id) from refused
        return session.model_copy(update={"etag": results[-1].get("eTag"), "archived": False})

    async def message_versions(
        self, email: str, session_id: str, seq: int, *, where: Where, count: int
    ) -> list[MessageRecord]:
        # Point reads by id (1 RU each): the message says how many there are.
        found = await asyncio.gather(
            *(
                self.conn.read(where, version_item_id(session_id, seq, version), email)
                for version in range(1, count)
            )
        )
        return [message_from_item(item) for item in found if item is not None]

    async def restore(self, email: str, session_id: str) -> MoveOutcome:
        return await self.moves.restore(email, session_id)

    # ---- reads ---------------------------------------------------------------------------------

    async def get_session(
        self, email: str, session_id: str, *, where: Where
    ) -> SessionRecord | None:
        if where == "archive":
            item = await self.moves.readable_archive(email, session_id)
        else:
            item = await self.moves.item(where, email, session_id)
        return item.record if item is not None and item.live else None

    async def locate(self, email: str, session_id: str) -> tuple[SessionRecord, Where] | None:
        found = await self.moves.locate(email, session_id)
        return (found[0].record, found[1]) if found is not None else None

    async def get_message(
        self, email: str, session_id: str, seq: int, *, where: Where
    ) -> MessageRecord | None:
        item = await self.conn.read(where, message_item_id(session_id, seq), email)
        return message_from_item(item) if item is not None else None

    async def get_request(
        self, email: str, session_id: str, client_message_id: str, *, where: Where
    ) -> RequestRecord | None:
        item = await self.conn.read(where, request_item_id(session_id, client_message_id), email)
        return request_from_item(item) if item is not None else None

    async def page_messages(
        self,
        email: str,
        session_id: str,
        *,
        where: Where,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[MessageRecord], bool]:
        params: list[dict[str, object]] = [{"name": "@sid", "value": session_id}]
        if after_seq is not None:
            query = MESSAGES_AFTER_QUERY.format(n=int(limit) + 1)
            params += [
                {"name": "@after", "value": after_seq},
                {"name": "@end", "value": SESSION_ITEM_SEQ},
            ]
        else:
            query = MESSAGES_BEFORE_QUERY.format(n=int(limit) + 1)
            before = SESSION_ITEM_SEQ if before_seq is None else before_seq
            params.append({"name": "@before", "value": before})
        items = await self.conn.query(where, query, params, email=email)
        page = [message_from_item(item) for item in items[:limit]]
        if after_seq is None:
            page.reverse()
        return page, len(items) > limit

    async def list_sessions(
        self, email: str, *, where: Where, limit: int, after: str | None
    ) -> tuple[list[SessionRecord], str | None]:
        clause, params = "", list[dict[str, object]]()
        if after is not None:
            run, updated_at, session_id = decode_position(after, 3)
            if run not in LIST_AFTER_CLAUSES:
                raise InvalidRequest("continuationToken is not valid.")
            clause = LIST_AFTER_CLAUSES[run]
            params = [{"name": "@u", "value": updated_at}, {"name": "@i", "value": session_id}]
        query = LIST_QUERY.format(n=int(limit) + 1, after=clause)
        items = await self.conn.query(where, query, params, email=email)
        page = items[:limit]
        sessions = [session_from_item(item, archived=where == "archive").record for item in page]
        position = None
        if len(items) > limit:
            last = page[-1]
            pinned = last.get("pinned")
            run = LIST_RUNS[2] if pinned is None else LIST_RUNS[0 if pinned else 1]
            position = encode_position(run, last["updatedAt"], last["id"])
        return sessions, position

    async def _by_ids(
        self, where: Where, query: str, ids: list[str], email: str
    ) -> list[dict[str, Any]]:
        """``query`` (with ``{ids}``) for these item ids, a bounded number per query."""
        items: list[dict[str, Any]] = []
        for start in range(0, len(ids), SEARCH_IDS_PER_QUERY):
            chunk = ids[start : start + SEARCH_IDS_PER_QUERY]
            names = [f"@i{index}" for index in range(len(chunk))]
            params: list[dict[str, object]] = [
                {"name": name, "value": value} for name, value in zip(names, chunk, strict=True)
            ]
            text = query.format(ids=", ".join(names))
            items += await self.conn.query(where, text, params, email=email)
        return items

    async def search_matches(
        self, email: str, phrase: str, *, where: Where, hits_per_session: int
    ) -> list[MatchedSession]:
        content = _all_words("content", CONTENT_FOLDED, phrase)
        title = _all_words("title", TITLE_FOLDED, phrase)
        seqs: dict[str, list[int]] = {}
        read = 0
        async for item in self.conn.stream(
            where, SEARCH_MESSAGES_QUERY.format(match=content), [], email=email
        ):
            seqs.setdefault(item["sessionId"], []).append(int(item["seq"]))
            read += 1
            if read >= SEARCH_SCAN_LIMIT:
                break
        titles = await self.conn.query(
            where, SEARCH_TITLES_QUERY.format(match=title), [], email=email
        )
        titled = {item["id"] for item in titles}
        matched = sorted(set(seqs) | titled)
        if not matched:
            return []
        times = await self._by_ids(where, SEARCH_TIMES_QUERY, matched, email)
        matches = []
        for item in times:
            found = sorted(seqs.get(item["id"], []))
            score = relevance(len(found), item["id"] in titled)
            matches.append(
                MatchedSession(item["id"], item["updatedAt"], score, found[:hits_per_session])
            )
        return matches

    async def search_page(
        self, email: str, *, where: Where, matches: list[MatchedSession]
    ) -> list[tuple[SessionRecord, list[SearchHit]]]:
        items = await self._by_ids(where, SEARCH_PAGE_QUERY, [m.session_id for m in matches], email)
        by_id = {item["id"]: item for item in items}
        message_ids = [
            message_item_id(m.session_id, seq)
            for m in matches
            if m.session_id in by_id
            for seq in m.seqs
        ]
        hits: dict[tuple[str, int], SearchHit] = {}
        if message_ids:
            found = await self._by_ids(where, SEARCH_HITS_QUERY, message_ids, email)
            for item in found:
                hits[(item["sessionId"], item["seq"])] = SearchHit(
                    seq=item["seq"], role=item["role"], text=item["content"]
                )
        page = []
        for m in matches:
            if m.session_id in by_id:
                session = session_from_item(by_id[m.session_id], archived=where == "archive")
                kept = [hits[(m.session_id, seq)] for seq in m.seqs if (m.session_id, seq) in hits]
                page.append((session.record, kept))
        return page

    async def all_sessions(
        self, email: str, *, limit: int, after: str | None
    ) -> tuple[list[SessionRecord], str | None]:
        clause, params = _keyset(after, ALL_AFTER_CLAUSE)
        query = ALL_SESSIONS_QUERY.format(n=int(limit) + 1, after=clause)
        items = await self.conn.query("active", query, params, email=email)
        page = items[:limit]
        sessions: list[SessionRecord] = []
        for item in page:
            # A live one is read where it lives; a stub stands for the archive copy (or, on
            # its way back, for whichever copy is readable right now).
            order: tuple[Where, Where] = (
                ("active", "archive") if item.get("state") is None else ("archive", "active")
            )
            for where in order:
                record = await self.get_session(email, item["id"], where=where)
                if record is not None:
                    sessions.append(record)
                    break
        return sessions, _next_position(items, limit)

    async def usage(self, email: str) -> tuple[int, int]:
        async def count(where: Where, kind: str) -> int:
            values: list[Any] = await self.conn.query(
                where, COUNT_QUERY, [{"name": "@type", "value": kind}], email=email
            )
            return int(values[0]) if values else 0

        # Every session has one item in the active container (live or a stub).
        sessions = await count("active", "session")
        messages = await count("active", "message") + await count("archive", "message")
        return sessions, messages

    # ---- other writes --------------------------------------------------------------------------

    async def save_session(
        self, session: SessionRecord, *, where: Where, expected_etag: str
    ) -> SessionRecord:
        op: BatchOp = (
            "replace",
            (session.id, session_body(session)),
            {"if_match_etag": expected_etag},
        )
        try:
            results = await self.conn.batch(where, session.email, [op])
        except BatchRefused as refused:
            raise ConcurrencyConflict(session.id) from refused
        return session.model_copy(
            update={"etag": results[0].get("eTag"), "archived": where == "archive"}
        )

    async def set_feedback(
        self,
        email: str,
        session_id: str,
        seq: int,
        feedback: Feedback | None,
        *,
        where: Where,
        expected_etag: str,
    ) -> MessageRecord | None:
        # The message and the session item in one batch: any change to a session's items moves
        # its ETag, which is what a move's commit checks (moves.py, rule 1).
        ops: list[BatchOp] = [
            (
                "patch",
                (
                    session_id,
                    [{"op": "set", "path": "/touched", "value": stored_time(self.clock.now())}],
                ),
                {"if_match_etag": expected_etag},
            ),
            (
                "patch",
                (
                    message_item_id(session_id, seq),
                    [{"op": "set", "path": "/feedback", "value": feedback_body(feedback)}],
                ),
            ),
        ]
        try:
            results = await self.conn.batch(where, email, ops)
        except BatchRefused as refused:
            if refused.index == 1 and refused.status == 404:
                return None
            raise ConcurrencyConflict(session_id) from refused
        return message_from_item(results[1]["resourceBody"])

    async def delete_session(self, email: str, session_id: str) -> bool:
        return await self.moves.delete_everywhere(email, session_id)

    async def import_session(self, session: SessionRecord, messages: list[MessageRecord]) -> bool:
        # A conversation may be larger than one batch (100 operations, 2 MB). Its session item
        # goes first in a state no reader shows and no archival scan or housekeeping looks for
        # (IMPORTING: no live marker, a state of its own); the messages follow in size-cut
        # batches (upserts: an import that stopped half-way is finished by the next one); the
        # item becomes live last, if-match, so the conversation appears whole or not at all.
        email = session.email
        archived = await self.conn.read("archive", session.id, email)
        current = await self.conn.read("active", session.id, email)
        if archived is not None or (current is not None and current.get("state") != IMPORTING):
            return False  # imported before (or, however unlikely, an id in use)
        if current is None:
            pending = session_body(session)
            pending.pop(LIVE_MARKER, None)
            pending.update({"state": IMPORTING, "since": stored_time(self.clock.now())})
            try:
                created = await self.conn.batch("active", email, [("create", (pending,))])
            except BatchRefused:
                return False  # another import of the same conversation got there first
            etag = created[0].get("eTag")
        else:
            etag = current["_etag"]
        ops: list[BatchOp] = [("upsert", (message_body(email, m),)) for m in messages]
        for batch in chunks(ops):
            await self.conn.batch("active", email, batch)
        live: BatchOp = ("replace", (session.id, session_body(session)), {"if_match_etag": etag})
        try:
            await self.conn.batch("active", email, [live])
        except BatchRefused:
            return False  # an erase (or another import) took it meanwhile
        return True

    async def session_ids(self, email: str, *, limit: int) -> list[str]:
        found: dict[str, None] = {}  # ordered, without repeats
        for query in (SESSION_IDS_QUERY, LEFTOVER_IDS_QUERY):
            for where in ("active", "archive"):
                values: list[Any] = await self.conn.query(
                    where, query.format(n=int(limit)), [], email=email
                )
                found.update({value: None for value in values if isinstance(value, str)})
            if found:
                break
        return list(found)[:limit]

    # ---- identities ----------------------------------------------------------------------------

    async def read_binding(self, email: str) -> Binding | None:
        item = await self.conn.read("active", IDENTITY_ITEM_ID, email)
        return binding_from_item(item) if item is not None else None

    async def bind(self, binding: Binding) -> Binding:
        if await self.conn.create("active", identity_body(binding)):
            return binding
        held = await self.read_binding(binding.email)
        if held is None:
            # The create met an item that this read missed: a replica behind the write, or a
            # release just now. Never admit on a guess: the caller asks again shortly.
            raise StorageUnavailable(retry_after_s=1)
        return held

    async def release_binding(self, email: str) -> bool:
        # A delete, never read-then-delete: a read may come from a replica behind the write.
        return await self.conn.delete("active", IDENTITY_ITEM_ID, email)

    async def rehome_session(self, old: str, new: str, session_id: str) -> RehomeOutcome:
        return await self.rehome.session(old, new, session_id)

    async def rehome_pending(self, old: str) -> list[str]:
        return await self.rehome.pending(old)

    # ---- groups (groups.py) --------------------------------------------------------------------

    async def create_group(self, group: GroupRecord) -> GroupRecord:
        return await self.groups.create_group(group)

    async def read_group(self, group_id: str, *, latest: bool = False) -> GroupRecord | None:
        return await self.groups.read_group(group_id, latest=latest)

    async def write_group(
        self,
        group: GroupRecord,
        *,
        expected_etag: str,
        messages: Sequence[GroupMessageRecord] = (),
        rewrite: Sequence[GroupMessageRecord] = (),
        request: GroupRequestRecord | None = None,
    ) -> GroupRecord:
        return await self.groups.write_group(
            group, expected_etag=expected_etag, messages=messages, rewrite=rewrite, request=request
        )

    async def delete_group(self, group_id: str, *, expected_etag: str | None) -> bool:
        return await self.groups.delete_group(group_id, expected_etag=expected_etag)

    async def group_messages(
        self,
        group_id: str,
        *,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[GroupMessageRecord], bool]:
        return await self.groups.group_messages(
            group_id, limit=limit, before_seq=before_seq, after_seq=after_seq
        )

    async def messages_of_sender(
        self, group_id: str, email: str, *, limit: int
    ) -> list[GroupMessageRecord]:
        return await self.groups.messages_of_sender(group_id, email, limit=limit)

    async def get_group_request(self, group_id: str, key: str) -> GroupRequestRecord | None:
        return await self.groups.get_group_request(group_id, key)

    async def put_group_ref(self, email: str, group_id: str) -> None:
        await self.groups.put_group_ref(email, group_id)

    async def drop_group_ref(self, email: str, group_id: str) -> None:
        await self.groups.drop_group_ref(email, group_id)

    async def group_ref_ids(self, email: str, *, limit: int) -> list[str]:
        return await self.groups.group_ref_ids(email, limit=limit)

    # ---- shares (shares.py) --------------------------------------------------------------------

    async def create_share(self, share: ShareRecord, messages: list[MessageRecord]) -> None:
        await self.shares.create_share(share, messages)

    async def get_share(self, share_id: str) -> ShareRecord | None:
        return await self.shares.get_share(share_id)

    async def open_share(
        self, share: ShareRecord, viewer: str | None, at: datetime
    ) -> ShareRecord | None:
        return await self.shares.open_share(share, viewer, at)

    async def share_messages(
        self, share_id: str, *, after_seq: int, limit: int
    ) -> tuple[list[MessageRecord], bool]:
        return await self.shares.share_messages(share_id, after_seq=after_seq, limit=limit)

    async def list_shares(
        self, email: str, *, limit: int, after: str | None
    ) -> tuple[list[ShareRecord], str | None]:
        return await self.shares.list_shares(email, limit=limit, after=after)

    async def owned_share_ids(self, email: str, *, limit: int) -> list[str]:
        return await self.shares.owned_share_ids(email, limit=limit)

    async def delete_share(self, email: str, share_id: str) -> bool:
        return await self.shares.delete_share(email, share_id)

    async def share_views(self, share_id: str) -> list[ShareView]:
        return await self.shares.share_views(share_id)

    async def viewed_shares(self, email: str) -> list[ViewedShare]:
        return await self.shares.viewed_shares(email)

    async def forget_viewer(self, email: str) -> None:
        await self.shares.forget_viewer(email)

    # ---- token usage (usage.py) ----------------------------------------------------------------

    async def add_usage(self, email: str, periods: Sequence[str], spent: Spent) -> None:
        await usage_items.add_usage(self.conn, email, periods, spent)

    async def read_usage(
        self, email: str, periods: Sequence[str] | None = None
    ) -> dict[str, Spent]:
        return await usage_items.read_usage(self.conn, email, periods)

    async def clear_usage(self, email: str) -> int:
        return await usage_items.clear_usage(self.conn, email)

    # ---- archival ------------------------------------------------------------------------------

    async def scan_usage_days(
        self, first_day: str, last_day: str, *, limit: int, after: str | None
    ) -> tuple[list[UsageDay], str | None]:
        params: list[dict[str, object]] = [
            {"name": "@first", "value": first_day},
            {"name": "@last", "value": last_day},
        ]
        continuation = decode_position(after, 1)[0] if after else None
        items, token = await self.conn.page(
            "active", USAGE_DAYS_QUERY, params, limit=limit, continuation=continuation
        )
        days = [
            UsageDay(
                str(item["period"]),
                int(item.get("promptTokens") or 0),
                int(item.get("completionTokens") or 0),
                int(item.get("cachedTokens") or 0),
                int(item.get("turns") or 0),
            )
            for item in items
        ]
        return days, encode_position(str(token)) if token else None

    async def scan_answers(
        self, since: datetime, *, where: Where, limit: int, after: str | None
    ) -> tuple[list[AnswerFacts], str | None]:
        params: list[dict[str, object]] = [{"name": "@since", "value": stored_time(since)}]
        continuation = decode_position(after, 1)[0] if after else None
        items, token = await self.conn.page(
            where, ANSWERS_QUERY, params, limit=limit, continuation=continuation
        )
        facts = [
            AnswerFacts(
                item.get("model"),
                int(item.get("promptTokens") or 0),
                int(item.get("completionTokens") or 0),
                item.get("rating"),
                item.get("firstTokenMs"),
                item.get("totalMs"),
            )
            for item in items
            if item.get("role") == "assistant"
        ]
        return facts, encode_position(str(token)) if token else None

    async def scan_archive_runs(
        self, since: datetime, *, limit: int, after: str | None
    ) -> tuple[list[ArchiveRun], str | None]:
        params: list[dict[str, object]] = [{"name": "@since", "value": stored_time(since)}]
        continuation = decode_position(after, 1)[0] if after else None
        items, token = await self.conn.page(
            "active",
            ARCHIVE_RUNS_QUERY,
            params,
            limit=limit,
            continuation=continuation,
            partition_key=OPS_PARTITION,
        )
        runs = [archive_run_from_item(item) for item in items]
        return runs, encode_position(str(token)) if token else None

    async def record_archive_run(self, run: ArchiveRun) -> None:
        # A create: a retried write of the same pass (same id) is not counted twice.
        await self.conn.create("active", archive_run_body(run))

    async def scan_stale(
        self, *, where: Where, updated_before: datetime, limit: int, after: str | None
    ) -> tuple[list[SessionRef], str | None]:
        params: list[dict[str, object]] = [
            {"name": "@cutoff", "value": stored_time(updated_before)}
        ]
        continuation = decode_position(after, 1)[0] if after else None
        items, token = await self.conn.page(
            where,
            STALE_QUERY,
            params,
            limit=limit,
            continuation=continuation,
        )
        refs = [
            SessionRef(
                email=item["EmailID"],
                session_id=item["id"],
                updated_at=parse_iso(item["updatedAt"]),
                etag=item["_etag"],
                where=where,
            )
            for item in items
            # A live item a fence patch moved on keeps its marker (items.LIVE_MARKER) until
            # the work removes it: it is not stale, it is someone's unfinished work.
            if item.get("state") is None
        ]
        return refs, encode_position(str(token)) if token else None

    async def archive(self, ref: SessionRef) -> MoveOutcome:
        return await self.moves.archive(ref)

    async def expire(self, ref: SessionRef) -> bool:
        if ref.where == "archive":
            deleted = await self.moves.delete_everywhere(
                ref.email, ref.session_id, archive_etag=ref.etag
            )
        else:
            # An active session: claimed for deleting only if it is still as the scan saw it
            # (a turn, rename or pin since moved its ETag on, and it stays). Once claimed, no
            # turn, move or restore can commit anything for it; the delete then finishes as
            # any other.
            active = await self.moves.item("active", ref.email, ref.session_id)
            if active is None or not active.live or active.etag != ref.etag:
                return False
            claimed = await self.moves._mark_deleting(  # the delete's own first step
                "active", ref.email, ref.session_id, active, once=True
            )
            if claimed is None:
                return False
            deleted = await self.moves.delete_everywhere(ref.email, ref.session_id)
        if deleted:
            # A session's shares go with it (shared/sharing.py); retention has no service.
            await self.shares.revoke_session(ref.email, ref.session_id)
        return deleted

    async def scan_unfinished(
        self, *, older_than: datetime, limit: int, after: str | None
    ) -> tuple[list[Unfinished], str | None]:
        # One scan after the other (UNFINISHED_PHASES): the position says which, and where.
        phase, continuation = decode_position(after, 2) if after else ("0", "")
        if not (phase.isdigit() and int(phase) < len(UNFINISHED_PHASES)):
            raise InvalidRequest("continuationToken is not valid.")
        index = int(phase)
        where, state = UNFINISHED_PHASES[index]
        params: list[dict[str, object]] = [{"name": "@cutoff", "value": stored_time(older_than)}]
        if state is not None:
            params.append({"name": "@state", "value": state})
        items, token = await self.conn.page(
            where,
            UNFINISHED_QUERY if state is not None else CLEANUP_QUERY,
            params,
            limit=limit,
            continuation=continuation or None,
        )
        found = [
            Unfinished(
                where=where,
                email=item["EmailID"],
                session_id=item["id"],
                state=item["state"],
            )
            for item in items
        ]
        if token:
            return found, encode_position(str(index), str(token))
        if index + 1 < len(UNFINISHED_PHASES):
            return found, encode_position(str(index + 1), "")
        return found, None

    async def finish(self, item: Unfinished) -> bool:
        return await self.moves.finish(item.where, item.email, item.session_id)


def _all_words(path: str, folded_path: str, phrase: str) -> str:
    """``FullTextContainsAll`` of the phrase's words on a text or on its folded copy (an item
    whose text has accents carries one: ``shared.search.folded_copy``). The words are folded
    too, so ``cafe`` and ``café`` find each other whether or not Azure folds accents. Azure's
    full-text functions take their terms as literals; a word is letters and digits only
    (``words_of``), so it stands in quotes as it is, and nothing in a phrase ever becomes
    query syntax."""
    words = words_of(phrase)
    if not words or not all(word.isalnum() for word in words):
        raise ValueError("a search needs words of letters and digits")
    terms = ", ".join(f"'{word}'" for word in words)
    return (
        f"(FullTextContainsAll(c.{path}, {terms}) OR FullTextContainsAll(c.{folded_path}, {terms}))"
    )
