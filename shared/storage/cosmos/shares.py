"""Shares on Cosmos DB (``docs/design.md``, "Sharing").

A share lives in the shares container, in a partition of its own (``/shareId``: a viewer
knows only the id, so every read of it is a point read or a single-partition query):

- share item: ``id`` = share id, ``type: "share"``, owner, sessionId, title, audience,
  people, createdAt, expiresAt, messageCount, views; ``state: "making"`` while its messages
  are being copied (readers treat it as absent);
- message items: ``id`` = ``m:<seq>``, ``type: "message"``, seq, role, content, timestamp
  (never feedback, client ids or token counts);
- view items: ``id`` = ``v:<slot>``, ``type: "view"``, email, viewedAt: a ring of
  ``MAX_SHARE_VIEWS`` slots, the slot chosen by the share's view count (an atomic increment),
  so the log keeps exactly the newest views however many instances record them at once.

Every item carries ``ttl``, the seconds from its write to the share's expiry: the container's
time-to-live is on with no default (``defaultTtl: -1``), and Cosmos measures an item's ``ttl``
from its last write, so each write sets it afresh. Cosmos deletes expired items in the
background, some time after; the rules refuse an expired share by its ``expiresAt`` anyway.

In the active container, in the owner's ``/EmailID`` partition, an index item per share
(``type: "shareRef"``) makes the owner's list one single-partition query; the share item is
its truth (a ref whose share is gone is removed when met). In each viewer's partition a
``type: "viewedShare"`` item notes the share they viewed: their export lists these, and
their erasure finds the view logs they appear in through them, without a cross-partition
scan. Neither type is a session's item (no ``sessionId``): conversation queries, moves and
erasure's leftover sweep do not see them.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from shared.clock import Clock, parse_iso, stored_time
from shared.ids import SEQ_WIDTH
from shared.models import MessageRecord, ShareRecord, ShareView, ViewedShare
from shared.storage.base import MAX_SHARE_VIEWS
from shared.storage.cosmos.client import BatchOp, BatchRefused, CosmosConnection, Target, chunks
from shared.storage.keyset import decode_position, encode_position

SHARE, SHARE_MESSAGE, SHARE_VIEW = "share", "message", "view"
SHARE_REF, VIEWED_SHARE = "shareRef", "viewedShare"
MAKING = "making"
SLOT_WIDTH = 4  # view slots 0000..0999

# In the owner's partition of the active container: their shares, newest first, from the
# (type, updatedAt, id) composite index the session list uses (a ref's updatedAt is the
# share's creation time).
OWNER_REFS_QUERY = (
    "SELECT TOP {n} c.id, c.shareId, c.updatedAt, c.expiresAt FROM c"
    " WHERE c.type = 'shareRef'{after} ORDER BY c.type DESC, c.updatedAt DESC, c.id DESC"
)
OWNER_REFS_AFTER = " AND (c.updatedAt < @u OR (c.updatedAt = @u AND c.id < @i))"
# ... and every share of theirs, whole or not (erasure).
OWNER_SHARE_IDS_QUERY = "SELECT TOP {n} VALUE c.shareId FROM c WHERE c.type = 'shareRef'"
# In a viewer's partition: the shares they viewed.
VIEWER_NOTES_QUERY = (
    "SELECT c.id, c.shareId, c.owner, c.title, c.viewedAt FROM c WHERE c.type = 'viewedShare'"
)
# In a share's partition.
SHARE_MESSAGES_QUERY = "SELECT TOP {n} * FROM c WHERE c.seq > @after ORDER BY c.seq ASC"
SHARE_VIEWS_QUERY = "SELECT c.email, c.viewedAt FROM c WHERE c.type = 'view'"
SHARE_VIEWER_QUERY = "SELECT c.id FROM c WHERE c.type = 'view' AND c.email = @e"
SHARE_ITEMS_QUERY = "SELECT c.id FROM c"


def ttl_until(expires_at: datetime, now: datetime) -> int:
    """An item's ``ttl``: whole seconds from now to the share's expiry, at least 1."""
    return max(1, math.ceil((expires_at - now).total_seconds()))


def ref_id(share_id: str) -> str:
    return f"share:{share_id}"


def note_id(share_id: str) -> str:
    return f"viewed:{share_id}"


def ref_body(share: ShareRecord) -> dict[str, Any]:
    """The owner's index item. No ``sessionId`` or ``seq``: not a session's item."""
    return {
        "id": ref_id(share.id),
        "type": SHARE_REF,
        "EmailID": share.owner,
        "shareId": share.id,
        "updatedAt": stored_time(share.created_at),
        "expiresAt": stored_time(share.expires_at),
    }


def note_body(share: ShareRecord, viewer: str, at: datetime) -> dict[str, Any]:
    """The viewer's note of a share they viewed. No ``sessionId`` or ``seq`` either."""
    return {
        "id": note_id(share.id),
        "type": VIEWED_SHARE,
        "EmailID": viewer,
        "shareId": share.id,
        "owner": share.owner,
        "title": share.title,
        "viewedAt": stored_time(at),
    }


def share_body(share: ShareRecord, ttl: int) -> dict[str, Any]:
    return {
        "id": share.id,
        "shareId": share.id,
        "type": SHARE,
        "owner": share.owner,
        "sessionId": share.session_id,
        "title": share.title,
        "audience": share.audience,
        "people": list(share.people),
        "createdAt": stored_time(share.created_at),
        "expiresAt": stored_time(share.expires_at),
        "messageCount": share.message_count,
        "views": share.views,
        "ttl": ttl,
    }


def share_from_item(item: dict[str, Any]) -> ShareRecord:
    return ShareRecord(
        id=item["id"],
        owner=item["owner"],
        session_id=item["sessionId"],
        title=item["title"],
        audience=item["audience"],
        people=item.get("people") or [],
        created_at=parse_iso(item["createdAt"]),
        expires_at=parse_iso(item["expiresAt"]),
        message_count=item["messageCount"],
        views=int(item.get("views") or 0),
    )


def message_item(share_id: str, message: MessageRecord, ttl: int) -> dict[str, Any]:
    return {
        "id": f"m:{message.seq:0{SEQ_WIDTH}d}",
        "shareId": share_id,
        "type": SHARE_MESSAGE,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "timestamp": stored_time(message.timestamp),
        "sessionId": message.session_id,
        "ttl": ttl,
    }


def _message_from_item(item: dict[str, Any]) -> MessageRecord:
    return MessageRecord(
        session_id=item["sessionId"],
        seq=item["seq"],
        role=item["role"],
        content=item["content"],
        timestamp=parse_iso(item["timestamp"]),
    )


class CosmosShares:
    """The ShareStore half of the Cosmos store."""

    def __init__(self, conn: CosmosConnection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock

    async def _write_one(self, target: Target, key: str, op: BatchOp) -> dict[str, Any] | None:
        """One write as a batch of one; None when it lost to a race (404, 409, 412)."""
        try:
            results = await self.conn.batch(target, key, [op])
        except BatchRefused:
            return None
        body: dict[str, Any] | None = results[0].get("resourceBody")
        return body if body is not None else {}

    # ---- making ---------------------------------------------------------------------------------

    async def create_share(self, share: ShareRecord, messages: list[MessageRecord]) -> None:
        # Timed by the share's own clock (the service's, which set its expiry).
        ttl = ttl_until(share.expires_at, share.created_at)
        # 1. The share item, invisible: a reader meeting it now treats it as absent.
        making = {**share_body(share, ttl), "state": MAKING}
        await self.conn.batch("shares", share.id, [("create", (making,))])
        # 2. Its messages, in batches cut by count and size (a batch may not exceed 2 MB).
        ops: list[BatchOp] = [("create", (message_item(share.id, m, ttl),)) for m in messages]
        for batch in chunks(ops):
            await self.conn.batch("shares", share.id, batch)
        # 3. The owner's index entry, so that revoking, listing and erasing find it from now on.
        await self.conn.batch("active", share.owner, [("upsert", (ref_body(share),))])
        # 4. Visible, last: a share interrupted before this is never read, and its items
        #    expire with it.
        whole = share_body(share, ttl)
        await self.conn.batch("shares", share.id, [("replace", (share.id, whole))])

    # ---- reading --------------------------------------------------------------------------------

    async def get_share(self, share_id: str) -> ShareRecord | None:
        item = await self.conn.read("shares", share_id, share_id)
        if item is None or item.get("type") != SHARE or item.get("state") is not None:
            return None
        return share_from_item(item)

    async def open_share(
        self, share: ShareRecord, viewer: str | None, at: datetime
    ) -> ShareRecord | None:
        # A write: Cosmos applies it to the latest state of the item whatever replica a read
        # would have gone to, so a share revoked on another instance is 404 here at once.
        ops: list[dict[str, Any]] = [
            {"op": "set", "path": "/ttl", "value": ttl_until(share.expires_at, at)}
        ]
        if viewer is not None:
            ops.append({"op": "incr", "path": "/views", "value": 1})
        item = await self._write_one("shares", share.id, ("patch", (share.id, ops)))
        if item is None or item.get("state") is not None:
            return None
        opened = share_from_item(item)
        if viewer is not None:
            # The viewer's note first: whoever erases the viewer finds this log through it.
            note = note_body(share, viewer, at)
            await self.conn.batch("active", viewer, [("upsert", (note,))])
            slot = (opened.views - 1) % MAX_SHARE_VIEWS
            view = {
                "id": f"v:{slot:0{SLOT_WIDTH}d}",
                "shareId": share.id,
                "type": SHARE_VIEW,
                "email": viewer,
                "viewedAt": stored_time(at),
                "ttl": ttl_until(share.expires_at, at),
            }
            await self.conn.batch("shares", share.id, [("upsert", (view,))])
        return opened

    async def share_messages(
        self, share_id: str, *, after_seq: int, limit: int
    ) -> tuple[list[MessageRecord], bool]:
        items = await self.conn.query(
            "shares",
            SHARE_MESSAGES_QUERY.format(n=int(limit) + 1),
            [{"name": "@after", "value": after_seq}],
            email=share_id,
        )
        return [_message_from_item(item) for item in items[:limit]], len(items) > limit

    async def list_shares(
        self, email: str, *, limit: int, after: str | None
    ) -> tuple[list[ShareRecord], str | None]:
        clause = ""
        params: list[dict[str, object]] = []
        if after is not None:
            updated_at, item_id = decode_position(after, 2)
            clause = OWNER_REFS_AFTER
            params = [{"name": "@u", "value": updated_at}, {"name": "@i", "value": item_id}]
        refs = await self.conn.query(
            "active", OWNER_REFS_QUERY.format(n=int(limit) + 1, after=clause), params, email=email
        )
        page = refs[:limit]
        shares: list[ShareRecord] = []
        for ref in page:
            share = await self._share_of_ref(email, ref)
            if share is not None:
                shares.append(share)
        position = None
        if len(refs) > limit:
            position = encode_position(page[-1]["updatedAt"], page[-1]["id"])
        return shares, position

    async def _share_of_ref(self, email: str, ref: dict[str, Any]) -> ShareRecord | None:
        """The share an index entry stands for; the entry (and any leftovers of the share) go
        when the share is confirmed gone."""
        share_id = ref["shareId"]
        item = await self.conn.read("shares", share_id, share_id)
        if item is not None:
            return share_from_item(item) if item.get("state") is None else None
        expires_at = parse_iso(ref["expiresAt"])
        now = self.clock.now()
        if expires_at > now:
            # Absent on this replica; confirm by a write (it sees the latest state) before
            # removing anything: a lagging replica must not cost the owner a live share.
            ops = [{"op": "set", "path": "/ttl", "value": ttl_until(expires_at, now)}]
            confirmed = await self._write_one("shares", share_id, ("patch", (share_id, ops)))
            if confirmed is not None:
                return share_from_item(confirmed) if confirmed.get("state") is None else None
        await self._remove(email, share_id)
        return None

    async def share_views(self, share_id: str) -> list[ShareView]:
        items = await self.conn.query("shares", SHARE_VIEWS_QUERY, [], email=share_id)
        return [
            ShareView(share_id=share_id, email=item["email"], viewed_at=parse_iso(item["viewedAt"]))
            for item in items
        ]

    async def viewed_shares(self, email: str) -> list[ViewedShare]:
        items = await self.conn.query("active", VIEWER_NOTES_QUERY, [], email=email)
        return [
            ViewedShare(
                share_id=item["shareId"],
                owner=item["owner"],
                title=item["title"],
                viewed_at=parse_iso(item["viewedAt"]),
            )
            for item in items
        ]

    # ---- removing -------------------------------------------------------------------------------

    async def owned_share_ids(self, email: str, *, limit: int) -> list[str]:
        values: list[Any] = await self.conn.query(
            "active", OWNER_SHARE_IDS_QUERY.format(n=int(limit)), [], email=email
        )
        return [value for value in values if isinstance(value, str)]

    async def delete_share(self, email: str, share_id: str) -> bool:
        if await self.conn.read("active", ref_id(share_id), email) is None:
            return False  # not this owner's (or never whole: it expires by itself)
        await self._remove(email, share_id)
        return True

    async def _remove(self, email: str, share_id: str) -> None:
        """The share item first (from then on it is 404 everywhere: the next open is a write),
        then its messages and view log, then the owner's index entry, last, so that an
        interrupted removal is found again and finished."""
        await self._delete("shares", share_id, share_id)
        items = await self.conn.query("shares", SHARE_ITEMS_QUERY, [], email=share_id)
        await self._delete_all("shares", share_id, [item["id"] for item in items])
        await self._delete("active", email, ref_id(share_id))

    async def revoke_session(self, email: str, session_id: str) -> None:
        """Revoke every share of one session (retention deleted it)."""
        after: str | None = None
        while True:
            shares, after = await self.list_shares(email, limit=100, after=after)
            for share in shares:
                if share.session_id == session_id:
                    await self._remove(email, share.id)
            if after is None:
                return

    async def forget_viewer(self, email: str) -> None:
        notes = await self.conn.query("active", VIEWER_NOTES_QUERY, [], email=email)
        for note in notes:
            share_id = note["shareId"]
            views = await self.conn.query(
                "shares", SHARE_VIEWER_QUERY, [{"name": "@e", "value": email}], email=share_id
            )
            await self._delete_all("shares", share_id, [item["id"] for item in views])
            # The note last: an erasure interrupted before this finds the log again.
            await self._delete("active", email, note["id"])

    async def _delete(self, target: Target, key: str, item_id: str) -> None:
        await self._write_one(target, key, ("delete", (item_id,)))  # gone already: fine

    async def _delete_all(self, target: Target, key: str, ids: list[str]) -> None:
        ops: list[BatchOp] = [("delete", (item_id,)) for item_id in ids]
        for batch in chunks(ops):
            try:
                await self.conn.batch(target, key, batch)
            except BatchRefused:
                # One of them went meanwhile (a concurrent removal): the rest one by one.
                for op in batch:
                    await self._write_one(target, key, op)
