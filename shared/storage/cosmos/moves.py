"""Moving and deleting sessions on Cosmos DB: fenced, resumable, safe under any interleaving.

Cosmos has no transaction across containers, so a move is a short protocol over session-item
states (``items.State``); ``docs/design.md``, "Moving a session", explains it and lists every
interleaving it is tested against. Its rules:

1. **The session item is the fence.** Every batch that writes or deletes items of a session in a
   container carries an if-match operation on that container's session item, and any change to
   any item of a session moves its ETag. A writer that lost the fence applies nothing.
2. **One id, one session.** The active container always holds an item for every session of a
   user: the live session, or a stub (``archived``) standing for the archive copy. A retried
   first message therefore meets its session wherever it lives, and no id is used twice.
3. **Copy, verify, commit, activate.** A move builds a copy under an invisible session item in
   the target (``incoming`` / ``restoring``), verifies it against what each write returned,
   commits by replacing the source item if-match the ETag it copied (stub or delete, in the same
   batch as the source's items when they fit), then makes the target live. Any change to the
   source since the read (a turn, a rename, feedback, a delete) fails the commit: the copy is
   discarded and the source is untouched.
4. **Anyone finishes, nobody guesses.** A committed copy is recognised by its ``from`` (the source
   ETag it copied) matching the source's stub, or the source being gone or ``moved`` from it; it
   is activated by whoever meets it (a read, a restore, the pass's housekeeping).
5. **Nobody undoes a copy whose commit is still possible.** Whoever undoes, discards or takes
   over a copy it did not make first writes the source session item (``_void``): the copy's
   commit, if-match the ETag it copied, can then never succeed, and the write's answer (the
   latest state, never a lagging replica's) says whether it already did. A mover whose own
   commit failed undoes its own copy, fenced by its target item. No lease or clock decides.
6. **Another host's fresh claim is left alone; our own abandoned one is not.** Claims carry the
   writing instance's ``mover``, and an instance moves a session one call at a time.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.clock import Clock, parse_iso, stored_time
from shared.errors import StorageUnavailable
from shared.models import SessionRecord
from shared.storage.base import MAX_BATCH_OPERATIONS, MoveOutcome, SessionRef, Where, other
from shared.storage.cosmos.client import BatchOp, BatchRefused, CosmosConnection, chunks
from shared.storage.cosmos.items import (
    ARCHIVED,
    DELETING,
    IMPORTING,
    INCOMING,
    MOVED,
    RESTORING,
    SESSION,
    SessionItem,
    State,
    session_body,
    session_from_item,
    state_body,
    user_fields,
)

log = logging.getLogger("parley.storage.cosmos")

# A move or delete younger than this is presumed under way: another mover backs off (BUSY)
# instead of taking it over. Safety never depends on it (the fences do), only wasted work.
MOVE_LEASE = timedelta(minutes=2)
# Items of a session read per query while copying or purging (memory is bounded by this).
COPY_PAGE = 500
# The session item and every other item of the session, in one single-partition query.
SOURCE_QUERY = "SELECT * FROM c WHERE c.sessionId = @sid"
ITEMS_QUERY = "SELECT * FROM c WHERE c.sessionId = @sid AND c.id != @sid"
ITEM_IDS_QUERY = "SELECT TOP {n} c.id FROM c WHERE c.sessionId = @sid AND c.id != @sid"

# Reads that locating a session makes to follow a move in flight (each move's window between
# two states is one request long) before it answers 503 instead.
LOCATE_TRIES = 5

Checkpoint = Callable[[str, str], Awaitable[None]]


class CopyNotVerified(StorageUnavailable):
    """What the target returned differs from what was written; nothing was committed."""


class FenceLost(Exception):
    """Another writer changed the session item this work was fenced by: stop, change nothing."""


@dataclass(frozen=True)
class Source:
    """A session as a move reads it: its session item and (the first page of) its other items,
    from one query."""

    item: SessionItem | None
    items: list[dict[str, Any]]
    complete: bool  # every other item is in ``items``

    @property
    def ids(self) -> list[str] | None:
        return [item["id"] for item in self.items] if self.complete else None


def _sid_param(session_id: str) -> list[dict[str, object]]:
    return [{"name": "@sid", "value": session_id}]


class Moves:
    """Moves, deletes and their resumption for one Cosmos database."""

    def __init__(self, conn: CosmosConnection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock
        # Tests set this to pause a move between its steps (``docs/design.md`` lists them).
        self.checkpoint: Checkpoint | None = None
        # This instance's name on the claims it writes, and the sessions it is moving now: a
        # claim of ours on a session we are not moving is an attempt that stopped half-way
        # (throttled, timed out), which the retry may take over at once instead of waiting
        # out the lease.
        self.mover = uuid.uuid4().hex
        self._moving: set[tuple[str, str]] = set()

    async def _at(self, step: str, session_id: str) -> None:
        if self.checkpoint is not None:
            await self.checkpoint(step, session_id)

    def _now(self) -> str:
        return stored_time(self.clock.now())

    def _fresh(self, item: SessionItem) -> bool:
        """Whether a claim may still be worked on by its writer. Only asked inside
        ``_exclusive``: a claim of ours is then an abandoned attempt, never a running one. A
        claim stamped further ahead than the lease came from a clock that runs ahead: it is
        not left alone for however long that clock is off (the fences keep this safe)."""
        if item.since is None or item.mover == self.mover:
            return False
        now = self.clock.now()
        return now - MOVE_LEASE < parse_iso(item.since) < now + MOVE_LEASE

    @contextlib.asynccontextmanager
    async def _exclusive(self, email: str, session_id: str) -> AsyncIterator[bool]:
        """Yields False if this instance is moving the session already (the caller backs
        off), else True, holding the session until the block ends."""
        key = (email, session_id)
        if key in self._moving:
            yield False
            return
        self._moving.add(key)
        try:
            yield True
        finally:
            self._moving.discard(key)

    # ---- reading session items -----------------------------------------------------------------

    async def item(self, where: Where, email: str, session_id: str) -> SessionItem | None:
        raw = await self.conn.read(where, session_id, email)
        if raw is None or raw.get("type") != "session":
            return None
        return session_from_item(raw, archived=where == "archive")

    async def _source(self, where: Where, email: str, session_id: str) -> Source:
        session: SessionItem | None = None
        items: list[dict[str, Any]] = []
        complete = True
        stream = self.conn.stream(
            where, SOURCE_QUERY, _sid_param(session_id), email=email, max_item_count=COPY_PAGE + 1
        )
        async with aclosing(stream):
            async for raw in stream:
                if raw.get("id") == session_id and raw.get("type") == SESSION:
                    session = session_from_item(raw, archived=where == "archive")
                elif len(items) < COPY_PAGE:
                    items.append(raw)
                else:
                    complete = False  # a long session: the copy streams the rest itself
                    break
        return Source(session, items, complete)

    # ---- fenced writes -------------------------------------------------------------------------

    @staticmethod
    def _fence(session_id: str, etag: str, **fields: Any) -> BatchOp:
        """A patch of the session item, if-match ``etag``: the batch applies nothing unless the
        fence holder still owns the session item."""
        ops = [{"op": "set", "path": f"/{name}", "value": value} for name, value in fields.items()]
        return ("patch", (session_id, ops), {"if_match_etag": etag})

    async def _fenced(
        self, where: Where, email: str, first: BatchOp, rest: list[BatchOp]
    ) -> list[dict[str, Any]]:
        try:
            return await self.conn.batch(where, email, [first, *rest])
        except BatchRefused as refused:
            if refused.index == 0:
                raise FenceLost() from refused
            raise

    async def _touch(self, where: Where, email: str, session_id: str) -> SessionItem | None:
        """Write the session item (``touched``, unconditionally) and return it as written, or
        None if it does not exist. A write is decided on the latest state, and its answer is
        that state: unlike a read, it can never be served by a replica that lags behind."""
        op: BatchOp = (
            "patch",
            (session_id, [{"op": "set", "path": "/touched", "value": self._now()}]),
        )
        try:
            results = await self.conn.batch(where, email, [op])
        except BatchRefused as refused:
            if refused.status == 404:
                return None
            raise
        return session_from_item(results[0]["resourceBody"], archived=where == "archive")

    async def _void(self, source: Where, email: str, session_id: str, origin: str | None) -> bool:
        """Before anyone undoes, discards or takes over a copy: make sure its commit can never
        happen, and learn whether it already did. The commit replaces (or deletes) the source
        session item if-match ``origin``, the ETag the copy was made from; any write to the
        source moves that ETag on for good (ETags never come back), and the write's answer is
        the source's latest state. True if the copy may go (its commit is impossible now);
        False if the source committed to it (the copy must be made live, never discarded).
        No lease, clock or read takes part: a stalled mover, a host whose clock runs ahead or
        a lagging replica cannot make anyone undo a move that committed."""
        current = await self._touch(source, email, session_id)
        if source == "active":
            # An archive commits by replacing the live item with a stub ``from`` its ETag;
            # no active item at all is a delete (it marks the active item first).
            return not (
                current is not None and current.state == ARCHIVED and current.origin == origin
            )
        # A restore commits by deleting the archive item, or by marking it ``moved`` from its
        # ETag when its items take more than one batch to remove. A delete or expiry marks the
        # active item before the archive item goes, so its copy is never activated.
        return not (current is None or (current.state == MOVED and current.origin == origin))

    async def _copy(
        self,
        source: Where,
        target: Where,
        email: str,
        session_id: str,
        claim_body: dict[str, Any],
        claim_etag: str | None,
        read: Source,
    ) -> str:
        """Copy every item of the session (but its session item) from ``source`` to
        ``target``, under the session item ``claim_body`` there (created, or replacing the one
        at ``claim_etag``), and verify each against what the write returned. The last batch
        marks the copy complete; a session of a few dozen messages is one batch in all.
        Returns the target session item's ETag. Raises FenceLost if another mover took the
        target over (or created it first)."""
        fence: str | None = None

        def head(*, complete: bool) -> BatchOp:
            if fence is not None:
                fields: dict[str, Any] = {"since": self._now()}
                if complete:
                    fields["complete"] = True
                return self._fence(session_id, fence, **fields)
            body = {**claim_body, "complete": complete}
            if claim_etag is None:
                return ("create", (body,))
            return ("replace", (session_id, body), {"if_match_etag": claim_etag})

        async def write(items: list[dict[str, Any]], *, last: bool) -> None:
            nonlocal fence
            ops: list[BatchOp] = [("upsert", (user_fields(item),)) for item in items]
            batches = list(chunks(ops, room=MAX_BATCH_OPERATIONS - 1)) or [[]]
            for index, chunk in enumerate(batches):
                results = await self._fenced(
                    target, email, head(complete=last and index == len(batches) - 1), chunk
                )
                fence = str(results[0]["eTag"])
                self._verify(chunk, results[1:])

        if read.complete:
            await write(read.items, last=True)
        else:
            pending: list[dict[str, Any]] = []
            async for item in self.conn.stream(
                source, ITEMS_QUERY, _sid_param(session_id), email=email, max_item_count=COPY_PAGE
            ):
                pending.append(item)
                if len(pending) >= COPY_PAGE:
                    await write(pending, last=False)
                    pending = []
            await write(pending, last=True)
        assert fence is not None
        return fence

    @staticmethod
    def _verify(ops: list[BatchOp], results: list[dict[str, Any]]) -> None:
        """Each upsert's result must be what was sent: verified against the write's own
        answer, never by a read that another replica or instance might serve stale."""
        for op, result in zip(ops, results, strict=True):
            sent = op[1][0]
            written = result.get("resourceBody")
            if not isinstance(written, dict) or user_fields(written) != sent:
                raise CopyNotVerified("A copied item could not be verified.")

    async def _purge(
        self,
        where: Where,
        email: str,
        session_id: str,
        fence_etag: str,
        *,
        delete_session_item: bool,
        state: State,
    ) -> bool:
        """Delete every item of the session in ``where`` (but its session item), fenced by the
        session item, whose state is set to ``state`` on the way; then the session item itself
        if ``delete_session_item`` (in the same batch as the last items). False if the fence
        was lost to another writer (who then owns the work)."""
        etag = fence_etag
        room = MAX_BATCH_OPERATIONS - 1
        while True:
            query = ITEM_IDS_QUERY.format(n=room + 1)
            ids = [
                item["id"]
                for item in await self.conn.query(where, query, _sid_param(session_id), email=email)
            ]
            deletes: list[BatchOp] = [("delete", (item_id,)) for item_id in ids[:room]]
            last = len(ids) <= room
            try:
                if last and delete_session_item:
                    ops = [*deletes, ("delete", (session_id,), {"if_match_etag": etag})]
                    await self.conn.batch(where, email, ops)
                    return True
                results = await self._fenced(
                    where, email, self._fence(session_id, etag, state=state), deletes
                )
            except FenceLost:
                return False
            except BatchRefused as refused:
                if refused.index == len(deletes):  # the session item changed: fence lost
                    return False
                # Another purger deleted one of these first: look again.
                current = await self.item(where, email, session_id)
                if current is None or current.state != state:
                    return False
                etag = current.etag
                continue
            etag = str(results[0]["eTag"])
            if last:
                return True
            await self._at("purge:chunk", session_id)

    # ---- archiving (active -> archive) ---------------------------------------------------------

    async def archive(self, ref: SessionRef) -> MoveOutcome:
        async with self._exclusive(ref.email, ref.session_id) as alone:
            return await self._archive(ref) if alone else MoveOutcome.BUSY

    async def _archive(self, ref: SessionRef) -> MoveOutcome:
        email, session_id = ref.email, ref.session_id
        read = await self._source("active", email, session_id)
        source = read.item
        if source is not None and source.state == ARCHIVED and source.origin == ref.etag:
            # This very move committed already (a retry after a throttled or lost answer):
            # finish it rather than call the session gone.
            return await self._finish_committed_archive(email, session_id, source)
        if source is None or not source.live:
            return MoveOutcome.GONE
        if source.etag != ref.etag:
            return MoveOutcome.CHANGED
        await self._at("archive:read", session_id)
        claim = state_body(
            source.record, INCOMING, since=self._now(), origin=source.etag, mover=self.mover
        )
        try:
            # Usually the archive has nothing of this session: claim it by creating the item.
            copy_etag = await self._copy("active", "archive", email, session_id, claim, None, read)
        except FenceLost:
            target = await self.item("archive", email, session_id)
            if target is None:
                return MoveOutcome.BUSY
            if (
                target.live
                or target.state == DELETING
                or (target.state == INCOMING and self._fresh(target))
            ):
                if target.live:
                    log.error("session_live_twice", extra={"session_id": session_id})
                return MoveOutcome.BUSY if target.state == INCOMING else MoveOutcome.CHANGED
            # A stale copy of a move that died (or stalled), or leftovers of a restore being
            # removed: take it over. Its items are overwritten by ours (the source holds every
            # item it had). A copy's own commit is fenced off first, whoever's it was.
            if target.state == INCOMING:
                if not await self._void("active", email, session_id, target.origin):
                    return MoveOutcome.BUSY  # it committed meanwhile: it is being finished
                # Fencing it moved our source's ETag too: copy from what it is now (read
                # after our own write, so no replica serves it older than that).
                read = await self._source("active", email, session_id)
                if (
                    read.item is None
                    or not read.item.live
                    or read.item.record.updated_at != ref.updated_at
                ):
                    return MoveOutcome.CHANGED
                source = read.item
                claim = state_body(
                    source.record,
                    INCOMING,
                    since=self._now(),
                    origin=source.etag,
                    mover=self.mover,
                )
            try:
                copy_etag = await self._copy(
                    "active", "archive", email, session_id, claim, target.etag, read
                )
            except FenceLost:
                return MoveOutcome.BUSY  # another mover claimed it first
        await self._at("archive:copied", session_id)

        stub = state_body(source.record, ARCHIVED, since=self._now(), origin=source.etag)
        if not await self._commit(
            "active", email, session_id, source.etag, stub, ARCHIVED, read.ids
        ):
            # The session changed since it was read: the source stays as it is.
            # Our own copy, which nobody else commits: no fencing needed (and none wanted, as
            # it would fail whoever took the copy over).
            await self._purge(
                "archive", email, session_id, copy_etag, delete_session_item=True, state=INCOMING
            )
            return MoveOutcome.CHANGED
        await self._at("archive:committed", session_id)
        await self._activate("archive", email, session_id, copy_etag, source.record)
        await self._at("archive:activated", session_id)
        log.info("session_archived", extra={"session_id": session_id})
        return MoveOutcome.MOVED

    async def _finish_committed_archive(
        self, email: str, session_id: str, stub: SessionItem
    ) -> MoveOutcome:
        copy = await self.item("archive", email, session_id)
        if copy is not None and copy.state == INCOMING:
            await self._settle_incoming(email, session_id, copy, stub)
            copy = await self.item("archive", email, session_id)
        if copy is None or not copy.live:
            return MoveOutcome.GONE  # deleted meanwhile
        await self._finish_stub_cleanup(email, session_id)
        return MoveOutcome.MOVED

    async def _commit(
        self,
        where: Where,
        email: str,
        session_id: str,
        etag: str,
        replacement: dict[str, Any] | None,
        leftovers_state: State,
        known_ids: list[str] | None,
    ) -> bool:
        """The commit point: replace (or delete, ``replacement`` None) the source session item
        if-match ``etag``, deleting the source's other items in the same batch when they fit;
        what does not fit is removed afterwards under the fence (``cleanup``). False when the
        source changed since it was copied."""
        room = MAX_BATCH_OPERATIONS - 1
        ids = known_ids
        if ids is None:
            query = ITEM_IDS_QUERY.format(n=room + 1)
            found = await self.conn.query(where, query, _sid_param(session_id), email=email)
            ids = [item["id"] for item in found]
        fits = len(ids) <= room
        if replacement is not None and not fits:
            replacement = {**replacement, "cleanup": True}
        if replacement is None:
            head: BatchOp = (
                ("delete", (session_id,), {"if_match_etag": etag})
                if fits
                else self._fence(
                    session_id, etag, state=leftovers_state, since=self._now(), **{"from": etag}
                )
            )
        else:
            head = ("replace", (session_id, replacement), {"if_match_etag": etag})
        deletes: list[BatchOp] = [("delete", (item_id,)) for item_id in ids[:room]]
        ops = [*deletes, head] if head[0] == "delete" else [head, *deletes]
        try:
            results = await self.conn.batch(where, email, ops)
        except BatchRefused:
            return False  # the source changed (or an item vanished: someone else is at it)
        if fits:
            return True
        fence = str(results[0]["eTag"])
        await self._purge(
            where,
            email,
            session_id,
            fence,
            delete_session_item=replacement is None,
            state=leftovers_state,
        )
        if replacement is not None:
            await self._clear_cleanup(where, email, session_id)
        return True

    async def _clear_cleanup(self, where: Where, email: str, session_id: str) -> None:
        current = await self.item(where, email, session_id)
        if current is not None and current.cleanup:
            # If someone else changed it meanwhile, they own it now.
            with contextlib.suppress(FenceLost):
                await self._fenced(
                    where, email, self._fence(session_id, current.etag, cleanup=False), []
                )

    async def _activate(
        self, where: Where, email: str, session_id: str, etag: str, record: SessionRecord
    ) -> bool:
        """Make a complete, committed copy live (if-match its ETag)."""
        try:
            await self.conn.batch(
                where,
                email,
                [("replace", (session_id, session_body(record)), {"if_match_etag": etag})],
            )
        except BatchRefused:
            return False  # a delete got to it first: it goes, as the user asked
        return True

    async def _finish_stub_cleanup(self, email: str, session_id: str) -> None:
        """After an archive whose active items did not fit the commit batch: remove the rest."""
        stub = await self.item("active", email, session_id)
        if (
            stub is not None
            and stub.state == ARCHIVED
            and stub.cleanup
            and await self._purge(
                "active", email, session_id, stub.etag, delete_session_item=False, state=ARCHIVED
            )
        ):
            await self._clear_cleanup("active", email, session_id)

    # ---- restoring (archive -> active) ---------------------------------------------------------

    async def restore(self, email: str, session_id: str) -> MoveOutcome:
        async with self._exclusive(email, session_id) as alone:
            return await self._restore(email, session_id) if alone else MoveOutcome.BUSY

    async def _restore(self, email: str, session_id: str) -> MoveOutcome:
        for _ in range(2):
            outcome = await self._restore_once(email, session_id)
            if outcome is not None:
                return outcome
        return MoveOutcome.BUSY

    async def _restore_once(self, email: str, session_id: str) -> MoveOutcome | None:
        """One attempt; None when it undid another restore that had stalled (look again)."""
        stub = await self.item("active", email, session_id)
        read = await self._source("archive", email, session_id)
        source = read.item
        if stub is not None and stub.live:
            return MoveOutcome.MOVED  # a concurrent request restored it first
        if stub is not None and stub.state == DELETING:
            return MoveOutcome.GONE
        if stub is not None and stub.state == RESTORING:
            if await self._settle_restoring(email, session_id, stub, source):
                return MoveOutcome.MOVED
            # Undone if it was stale (its commit fenced off first): read everything again.
            return MoveOutcome.BUSY if self._fresh(stub) else None
        if stub is not None and stub.state != ARCHIVED:
            return MoveOutcome.BUSY
        if source is not None and source.state == INCOMING:
            # An archive that committed but was not activated yet: finish it first.
            await self._settle_incoming(email, session_id, source, stub)
            return MoveOutcome.BUSY
        if source is None and stub is not None:
            # A stub without its archive copy is what a lagging replica shows right after an
            # archive; asked of the latest state (a write), it is there, and the next look
            # sees it. Only a stub whose copy truly is gone (a legacy half-done expiry) goes.
            if await self._touch("archive", email, session_id) is not None:
                return None
            await self.delete_everywhere(email, session_id)
            return MoveOutcome.GONE
        if source is None or not source.live:
            return MoveOutcome.GONE

        claim = state_body(
            source.record, RESTORING, since=self._now(), origin=source.etag, mover=self.mover
        )
        await self._at("restore:read", session_id)
        try:
            copy_etag = await self._copy(
                "archive", "active", email, session_id, claim, stub.etag if stub else None, read
            )
        except FenceLost:
            return MoveOutcome.BUSY
        await self._at("restore:copied", session_id)
        if not await self._commit("archive", email, session_id, source.etag, None, MOVED, read.ids):
            # Our own copy, which nobody else commits: undone without fencing (see above).
            await self._undo_restore(email, session_id, copy_etag, source.record)
            return MoveOutcome.CHANGED
        await self._at("restore:committed", session_id)
        await self._activate("active", email, session_id, copy_etag, source.record)
        await self._at("restore:activated", session_id)
        return MoveOutcome.MOVED

    async def _undo_restore(
        self, email: str, session_id: str, etag: str, record: SessionRecord
    ) -> None:
        """Remove a restore's uncommitted copies (the ``restoring`` item at ``etag``) from the
        active container and stand the stub back up: the archive copy changed (rename,
        feedback) or went (retention, delete) while it was copied, or its restore stalled.
        Only once its commit is fenced off (``_void``): a restore that resumes later then fails
        its commit instead of deleting the only copy left."""
        if not await self._purge(
            "active", email, session_id, etag, delete_session_item=False, state=RESTORING
        ):
            return
        current = await self.item("active", email, session_id)
        if current is None or current.state != RESTORING:
            return
        stub = state_body(record, ARCHIVED, since=self._now())
        # If it changed meanwhile, someone else (a delete) has it now.
        with contextlib.suppress(BatchRefused):
            await self.conn.batch(
                "active", email, [("replace", (session_id, stub), {"if_match_etag": current.etag})]
            )

    async def _settle_restoring(
        self, email: str, session_id: str, stub: SessionItem, source: SessionItem | None
    ) -> bool:
        """A ``restoring`` active item met by someone else. Its restore committed if the
        archive item is gone or ``moved`` from the copied version: activate it (a complete copy
        always precedes a commit). If it did not, and it is stale, fence its commit off and
        undo it. What was read only says whether to look: the fencing write decides. True if
        the session is live now."""
        looks_committed = source is None or (source.state == MOVED and source.origin == stub.origin)
        if self._fresh(stub) and not looks_committed:
            return False  # under way: its mover commits or undoes it
        if not await self._void("archive", email, session_id, stub.origin):
            # Committed: make it live (a committed copy is complete), then remove leftovers.
            if not stub.complete or not await self._activate(
                "active", email, session_id, stub.etag, stub.record
            ):
                return False
            leftovers = await self.item("archive", email, session_id)
            if leftovers is not None and leftovers.state == MOVED:
                await self._purge(
                    "archive",
                    email,
                    session_id,
                    leftovers.etag,
                    delete_session_item=True,
                    state=MOVED,
                )
            return True
        if self._fresh(stub):
            return False  # a stale read: its mover now fails its commit and undoes it
        if source is not None and source.state == DELETING:
            # The archive copy is being expired or deleted: finish that.
            await self.delete_everywhere(email, session_id)
        else:
            await self._undo_restore(email, session_id, stub.etag, stub.record)
        return False

    async def _settle_incoming(
        self, email: str, session_id: str, copy: SessionItem, stub: SessionItem | None
    ) -> bool:
        """An ``incoming`` archive item met by someone else: activate it if its archive
        committed (the active stub stands for the copied version); discard it if it did not
        and is stale, after fencing its commit off. True if it is live now."""
        committed = stub is not None and stub.state == ARCHIVED and stub.origin == copy.origin
        if not committed:
            if self._fresh(copy):
                return False  # under way: its mover commits or discards it
            committed = not await self._void("active", email, session_id, copy.origin)
            if not committed:
                await self._purge(
                    "archive",
                    email,
                    session_id,
                    copy.etag,
                    delete_session_item=True,
                    state=INCOMING,
                )
                return False
        if copy.complete:
            return await self._activate("archive", email, session_id, copy.etag, copy.record)
        return False

    async def readable_archive(self, email: str, session_id: str) -> SessionItem | None:
        """The archive's session item if readers may see it, finishing an archive that
        committed but was not yet activated (so an interrupted move never hides a session)."""
        copy = await self.item("archive", email, session_id)
        if copy is None or copy.live:
            return copy
        if copy.state != INCOMING:
            return None
        stub = await self.item("active", email, session_id)
        if await self._settle_incoming(email, session_id, copy, stub):
            return await self.item("archive", email, session_id)
        return None

    async def locate(self, email: str, session_id: str) -> tuple[SessionItem, Where] | None:
        """The session's live item and its container, following a move in flight: the active
        container holds an item for every session (rule 2), live or a stub standing for the
        archive copy, so a stub is followed to the archive, and a copy met half-way is
        finished (a committed one made live) or looked at again. None only when the session
        does not exist; a move that cannot be followed in a few reads is 503, never 404."""
        for _ in range(LOCATE_TRIES):
            active = await self.item("active", email, session_id)
            if active is not None and active.live:
                return active, "active"
            if active is not None and active.state in (DELETING, IMPORTING):
                return None  # being deleted, or an import not finished: not there for readers
            copy = await self.readable_archive(email, session_id)
            if copy is not None and copy.live:
                return copy, "archive"
            if active is None:
                return None  # no item for it in the active container: no such session
            if active.state == RESTORING:
                source = await self.item("archive", email, session_id)
                if source is None or (source.state == MOVED and source.origin == active.origin):
                    # Committed, not yet live: make it live rather than wait for its mover.
                    await self._settle_restoring(email, session_id, active, source)
            # A move landed between these reads: look again from the start.
        raise StorageUnavailable("The conversation is being moved; try again.", retry_after_s=1)

    # ---- deleting ------------------------------------------------------------------------------

    async def delete_everywhere(
        self, email: str, session_id: str, *, archive_etag: str | None = None
    ) -> bool:
        """Delete the session from both containers. The active item is marked ``deleting``
        first: from then on no turn, restore or archival can commit anything for it. Only then
        is the archive read and emptied, then the active container. With ``archive_etag``
        (retention) only if the archive copy is still at that version: it is claimed before
        anything else, so that a restore racing it fails its commit. True if anything was
        there."""
        archive: SessionItem | None = None
        if archive_etag is not None:
            archive = await self.item("archive", email, session_id)
            if archive is None or archive.etag != archive_etag:
                return False
            if await self._mark_deleting("archive", email, session_id, archive, once=True) is None:
                return False
        active = await self.item("active", email, session_id)
        if active is not None and active.state != DELETING:
            active = await self._mark_deleting("active", email, session_id, active)
        await self._at("delete:marked", session_id)
        # Read after the mark: a move can no longer commit into or out of the archive now.
        archive = await self.item("archive", email, session_id)
        found = active is not None or archive is not None
        found = await self._delete_in("archive", email, session_id, archive) or found
        await self._at("delete:archive-done", session_id)
        return await self._delete_in("active", email, session_id, active) or found

    async def _mark_deleting(
        self, where: Where, email: str, session_id: str, item: SessionItem, *, once: bool = False
    ) -> SessionItem | None:
        """Set the item's state to ``deleting`` (if-match; re-read and again on a race, unless
        ``once``). The marked item, or None when it is gone (or changed, with ``once``)."""
        for _ in range(1 if once else 10):
            try:
                results = await self._fenced(
                    where,
                    email,
                    self._fence(session_id, item.etag, state=DELETING, since=self._now()),
                    [],
                )
            except FenceLost:
                current = await self.item(where, email, session_id)
                if current is None or once:
                    return None
                item = current
                continue
            return SessionItem(
                record=item.record, etag=str(results[0]["eTag"]), state=DELETING, since=self._now()
            )
        raise StorageUnavailable("The conversation is busy; try again.", retry_after_s=1)

    async def _delete_in(
        self, where: Where, email: str, session_id: str, item: SessionItem | None
    ) -> bool:
        """Everything of the session in one container, until nothing is left."""
        found = False
        for _ in range(10):
            if item is None:
                # No session item: legacy leftovers only (this protocol never leaves any).
                return await self._delete_unfenced(where, email, session_id) or found
            found = True
            if await self._purge(
                where, email, session_id, item.etag, delete_session_item=True, state=DELETING
            ):
                return True
            item = await self.item(where, email, session_id)
        raise StorageUnavailable("The conversation is busy; try again.", retry_after_s=1)

    async def _delete_unfenced(self, where: Where, email: str, session_id: str) -> bool:
        ids = [
            item["id"]
            async for item in self.conn.stream(
                where,
                "SELECT c.id FROM c WHERE c.sessionId = @sid",
                _sid_param(session_id),
                email=email,
            )
        ]
        for chunk in chunks([("delete", (item_id,)) for item_id in ids]):
            try:
                await self.conn.batch(where, email, chunk)
            except BatchRefused:
                for op in chunk:  # someone deleted one first: one by one, missing ones fine
                    with contextlib.suppress(BatchRefused):
                        await self.conn.batch(where, email, [op])
        return bool(ids)

    # ---- housekeeping --------------------------------------------------------------------------

    async def finish(self, where: Where, email: str, session_id: str) -> bool:
        """Finish (or safely undo) whatever stopped half-way for this session."""
        async with self._exclusive(email, session_id) as alone:
            return await self._finish(where, email, session_id) if alone else False

    async def _finish(self, where: Where, email: str, session_id: str) -> bool:
        item = await self.item(where, email, session_id)
        if item is None or item.live:
            return False
        peer = await self.item(other(where), email, session_id)
        active, archive = (item, peer) if where == "active" else (peer, item)
        if item.state == DELETING or (peer is not None and peer.state == DELETING):
            return await self.delete_everywhere(email, session_id)
        if active is not None and active.state == RESTORING:
            return await self._settle_restoring(email, session_id, active, archive) or True
        if archive is not None and archive.state == INCOMING:
            if await self._settle_incoming(email, session_id, archive, active):
                await self._finish_stub_cleanup(email, session_id)
            return True
        if where == "archive" and item.state == MOVED:
            # A restore committed with more items than one batch: remove the rest.
            await self._purge(
                "archive", email, session_id, item.etag, delete_session_item=True, state=MOVED
            )
            return True
        if where == "active" and item.state == ARCHIVED and item.cleanup:
            await self._finish_stub_cleanup(email, session_id)
            return True
        return False
