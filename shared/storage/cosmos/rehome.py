"""Moving a session to another address on Cosmos DB: another partition, so no transaction.

An item cannot change its partition key, so a session is written again under the new address
and removed from the old one (``python -m shared.identity move``). The steps, each safe to
interrupt and to run again (``docs/operations.md``, "Accounts and address changes"):

1. **Read** the live session item under the old address (its ETag ``E``) and its other items
   (messages, request items, feedback in them). An archived session is restored first, through
   the archival moves' own restore; a session in the middle of another move or delete is left
   for the next round (``BUSY``).
2. **Copy** the items (not the session item) under the new address. Without their session
   item they are invisible: every read of sessions starts from a session item.
3. **Verify** that every item copied is there.
4. **Commit**, in one transactional batch in the old partition: the old session item becomes
   ``deleting`` if-match ``E`` (any turn, rename, feedback or delete since the read fails it:
   nothing is committed and the move starts over), and a *tombstone* is created, holding the
   session item as it will be under the new address. From here on the move is decided: whoever
   meets the tombstone finishes it (``rehome_pending`` finds them), even if the old session's
   delete was finished meanwhile by a read or by housekeeping.
5. **Activate**: create the session item under the new address (the session appears there).
6. **Remove** the tombstone, then the old session (the archival moves' delete, which finishes
   a ``deleting`` item).

The tombstone has no ``sessionId``, so no query of sessions, messages, erasure or housekeeping
reads it. Copies left by a move that never committed (its source was deleted meanwhile) stay
invisible; the user's erasure of the new address removes them.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.clock import Clock, stored_time
from shared.storage.base import RehomeOutcome
from shared.storage.cosmos.client import BatchOp, BatchRefused, CosmosConnection, chunks
from shared.storage.cosmos.items import (
    ARCHIVED,
    DELETING,
    RESTORING,
    session_body,
    state_body,
    user_fields,
)
from shared.storage.cosmos.moves import Moves

log = logging.getLogger("parley.storage.cosmos")

TOMBSTONE = "rehomed"  # the tombstone's type
# Every item of a session but its session item (the copy's payload).
SESSION_ITEMS_QUERY = "SELECT * FROM c WHERE c.sessionId = @sid AND c.id != @sid"
SESSION_ITEM_IDS_QUERY = "SELECT VALUE c.id FROM c WHERE c.sessionId = @sid AND c.id != @sid"
MESSAGE_COUNT_QUERY = "SELECT VALUE COUNT(1) FROM c WHERE c.sessionId = @sid AND c.type = 'message'"
TOMBSTONES_QUERY = "SELECT VALUE c.sessionOf FROM c WHERE c.type = 'rehomed'"
COPY_PAGE = 500  # items read and written at a time (memory is bounded by this)


def tombstone_id(session_id: str) -> str:
    return f"{TOMBSTONE}:{session_id}"


def _sid(session_id: str) -> list[dict[str, object]]:
    return [{"name": "@sid", "value": session_id}]


class Rehome:
    """Moves sessions between addresses, one call per session."""

    def __init__(self, conn: CosmosConnection, moves: Moves, clock: Clock) -> None:
        self.conn = conn
        self.moves = moves
        self.clock = clock

    async def _at(self, step: str, session_id: str) -> None:
        # The archival moves' checkpoint: tests pause a move between its steps with it.
        if self.moves.checkpoint is not None:
            await self.moves.checkpoint(step, session_id)

    async def pending(self, old: str) -> list[str]:
        values: list[Any] = await self.conn.query("active", TOMBSTONES_QUERY, [], email=old)
        return [value for value in values if isinstance(value, str)]

    async def session(self, old: str, new: str, session_id: str) -> RehomeOutcome:
        tombstone = await self.conn.read("active", tombstone_id(session_id), old)
        if tombstone is not None and tombstone.get("to") == new:
            await self._finish(old, new, session_id, tombstone["session"])
            return RehomeOutcome.MOVED
        if await self.moves.item("active", new, session_id) is not None:
            return RehomeOutcome.TAKEN
        source = await self.moves.item("active", old, session_id)
        if source is None or source.state == DELETING:
            return await self._gone(old, new, session_id)
        if source.state in (ARCHIVED, RESTORING):
            # Bring it back to the active container first, by the archival moves' restore;
            # the next round moves it as a live session.
            await self.moves.restore(old, session_id)
            return RehomeOutcome.BUSY
        if not source.live:
            return RehomeOutcome.BUSY
        await self._at("rehome:read", session_id)

        copied = await self._copy(old, new, session_id)
        await self._at("rehome:copied", session_id)
        if not await self._verify(new, session_id, copied):
            log.warning("rehome_copy_incomplete", extra={"session_id": session_id})
            return RehomeOutcome.CHANGED

        target = session_body(source.record.model_copy(update={"email": new}))
        deleting = state_body(
            source.record, DELETING, since=stored_time(self.clock.now()), mover=self.moves.mover
        )
        tomb = {
            "id": tombstone_id(session_id),
            "type": TOMBSTONE,
            "EmailID": old,
            "sessionOf": session_id,
            "to": new,
            "session": target,
        }
        commit: list[BatchOp] = [
            ("replace", (session_id, deleting), {"if_match_etag": source.etag}),
            ("create", (tomb,)),
        ]
        try:
            await self.conn.batch("active", old, commit)
        except BatchRefused:
            # A turn, rename, rating or delete came first. Deleted, it is not met again (no
            # session item is left to list): its copies go now.
            current = await self.moves.item("active", old, session_id)
            if current is None or current.state == DELETING:
                return await self._gone(old, new, session_id)
            return RehomeOutcome.CHANGED
        await self._at("rehome:committed", session_id)
        await self._finish(old, new, session_id, target)
        return RehomeOutcome.MOVED

    async def _gone(self, old: str, new: str, session_id: str) -> RehomeOutcome:
        """The source is deleted, or being deleted: by its user, or by a commit of ours whose
        tombstone is read again here (it is created before the source can be seen so).
        Deleted by its user, nothing of it may stay: the copies a move left under the new
        address go too."""
        tombstone = await self.conn.read("active", tombstone_id(session_id), old)
        if tombstone is not None and tombstone.get("to") == new:
            await self._finish(old, new, session_id, tombstone["session"])
            return RehomeOutcome.MOVED
        await self.moves.delete_everywhere(old, session_id)
        if await self.moves.item("active", new, session_id) is None:
            # Not activated (the tombstone goes only after the activation): leftovers only.
            await self.moves.delete_everywhere(new, session_id)
        return RehomeOutcome.GONE

    async def _copy(self, old: str, new: str, session_id: str) -> set[str]:
        """Write every item of the session but its session item under ``new``; their ids."""
        ids: set[str] = set()
        page: list[dict[str, Any]] = []
        async for item in self.conn.stream(
            "active", SESSION_ITEMS_QUERY, _sid(session_id), email=old, max_item_count=COPY_PAGE
        ):
            page.append({**user_fields(item), "EmailID": new})
            if len(page) >= COPY_PAGE:
                await self._write(new, page)
                ids.update(item["id"] for item in page)
                page = []
        if page:
            await self._write(new, page)
            ids.update(item["id"] for item in page)
        return ids

    async def _write(self, new: str, items: list[dict[str, Any]]) -> None:
        # Upserts: a copy redone after a failed commit overwrites what the last one wrote.
        ops: list[BatchOp] = [("upsert", (item,)) for item in items]
        for batch in chunks(ops):
            await self.conn.batch("active", new, batch)

    async def _verify(self, new: str, session_id: str, copied: set[str]) -> bool:
        present: list[Any] = await self.conn.query(
            "active", SESSION_ITEM_IDS_QUERY, _sid(session_id), email=new
        )
        return copied <= set(present)

    async def _finish(self, old: str, new: str, session_id: str, target: dict[str, Any]) -> None:
        """Activate the copy, drop the tombstone, remove the source (each step idempotent).

        The tombstone goes right after the activation: a re-run that met it later would
        create the session item again, bringing back a session its user deleted meanwhile. The
        source needs no tombstone to be removed: it is ``deleting``, which any reader, the
        next round and housekeeping all finish."""
        await self.conn.create("active", {**target, "EmailID": new})
        await self._at("rehome:activated", session_id)
        await self.conn.delete("active", tombstone_id(session_id), old)
        await self.moves.delete_everywhere(old, session_id)
        counted: list[Any] = await self.conn.query(
            "active", MESSAGE_COUNT_QUERY, _sid(session_id), email=new
        )
        if counted and counted[0] < target["messageCount"]:
            # The copies were deleted under the new address before it was activated there (a
            # delete by the user, who knew its id): the delete wins, nothing half is left.
            await self.moves.delete_everywhere(new, session_id)
            log.info("session_rehome_deleted", extra={"session_id": session_id})
            return
        log.info("session_rehomed", extra={"session_id": session_id})
