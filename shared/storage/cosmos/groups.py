"""Group conversations on Cosmos DB (``docs/design.md``, "Groups").

A group lives in the groups container (``GroupChatHistory``), in a partition of its own
(``/groupId``), so that every member's message is one transactional batch with the group item:

- group item: ``id`` = group id, ``type: "group"``, name, createdAt, updatedAt, members
  (email, name, role, addedAt), lastSeq, messageCount; ``state: "deleting"`` while a delete
  removes the rest (readers treat it as absent);
- message items: ``id`` = ``m:<seq, 8 digits>``, ``type: "groupMessage"``, seq, role,
  content, timestamp, senderEmail, senderName, clientMessageId, removed, token counts;
- request items: ``id`` = ``r:<sha-256 of sender and clientMessageId>``, ``type:
  "groupRequest"``: where a retried send's messages are.

Each write of a group (a message, a membership change, a rename, an erasure's redaction) is
one batch whose last operation replaces the group item if-match its ETag, so a message's seq
is assigned by the same conditional write that stores it: two senders that read the same
group cannot both store the same seq, and a loser stores nothing.

In the active container, in each member's ``/EmailID`` partition, an index item per group
(``type: "groupRef"``, ``id`` = ``group:<groupId>``) makes "my groups" one single-partition
read; the group item is its truth. It has no ``sessionId``: conversation queries, moves and
erasure's leftover sweep do not see it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from shared.clock import parse_iso, stored_time
from shared.errors import ConcurrencyConflict, DuplicateRequest
from shared.groups.models import GroupMember, GroupMessageRecord, GroupRecord, GroupRequestRecord
from shared.ids import SEQ_WIDTH
from shared.storage.cosmos.client import BatchOp, BatchRefused, CosmosConnection, chunks

GROUP, GROUP_MESSAGE, GROUP_REQUEST, GROUP_REF = "group", "groupMessage", "groupRequest", "groupRef"
DELETING = "deleting"
KEY_FIELD = "groupId"

MESSAGES_BEFORE_QUERY = (
    "SELECT TOP {n} * FROM c WHERE c.type = 'groupMessage' AND c.seq < @before"
    " ORDER BY c.type DESC, c.seq DESC"
)
MESSAGES_AFTER_QUERY = (
    "SELECT TOP {n} * FROM c WHERE c.type = 'groupMessage' AND c.seq > @after"
    " ORDER BY c.type ASC, c.seq ASC"
)
SENDER_QUERY = (
    "SELECT TOP {n} * FROM c WHERE c.type = 'groupMessage' AND c.senderEmail = @e"
    " ORDER BY c.type ASC, c.seq ASC"
)
# Everything of a group but its item (a delete removes the item last).
ITEM_IDS_QUERY = "SELECT TOP {n} VALUE c.id FROM c WHERE c.type != 'group'"
# In a member's partition of the active container: the groups their index names.
REFS_QUERY = "SELECT TOP {n} VALUE c.groupId FROM c WHERE c.type = 'groupRef'"
DELETE_PAGE = 99  # items removed per batch (the batch limit is 100)
NO_SEQ_ABOVE = 2**53 - 1


def message_item_id(seq: int) -> str:
    return f"m:{seq:0{SEQ_WIDTH}d}"


def request_item_id(key: str) -> str:
    return f"r:{key}"


def ref_item_id(group_id: str) -> str:
    return f"group:{group_id}"


def ref_body(email: str, group_id: str) -> dict[str, Any]:
    """A member's index item. No ``sessionId`` or ``seq``: not a session's item."""
    return {"id": ref_item_id(group_id), "type": GROUP_REF, "EmailID": email, "groupId": group_id}


def group_body(group: GroupRecord) -> dict[str, Any]:
    return {
        "id": group.id,
        KEY_FIELD: group.id,
        "type": GROUP,
        "name": group.name,
        "createdAt": stored_time(group.created_at),
        "updatedAt": stored_time(group.updated_at),
        "members": [
            {
                "email": m.email,
                "name": m.name,
                "role": m.role,
                "addedAt": stored_time(m.added_at),
            }
            for m in group.members
        ],
        "lastSeq": group.last_seq,
        "messageCount": group.message_count,
    }


def group_from_item(item: dict[str, Any]) -> GroupRecord:
    return GroupRecord(
        id=item["id"],
        name=item["name"],
        created_at=parse_iso(item["createdAt"]),
        updated_at=parse_iso(item["updatedAt"]),
        members=[
            GroupMember(
                email=m["email"],
                name=m["name"],
                role=m["role"],
                added_at=parse_iso(m["addedAt"]),
            )
            for m in item.get("members") or []
        ],
        last_seq=int(item.get("lastSeq") or 0),
        message_count=int(item.get("messageCount") or 0),
        etag=item.get("_etag"),
    )


def message_body(message: GroupMessageRecord) -> dict[str, Any]:
    return {
        "id": message_item_id(message.seq),
        KEY_FIELD: message.group_id,
        "type": GROUP_MESSAGE,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "timestamp": stored_time(message.timestamp),
        "senderEmail": message.sender_email,
        "senderName": message.sender_name,
        "clientMessageId": message.client_message_id,
        "removed": message.removed,
        "model": message.model,
        "promptTokens": message.prompt_tokens,
        "completionTokens": message.completion_tokens,
    }


def message_from_item(item: dict[str, Any]) -> GroupMessageRecord:
    return GroupMessageRecord(
        group_id=item[KEY_FIELD],
        seq=item["seq"],
        role=item["role"],
        content=item["content"],
        timestamp=parse_iso(item["timestamp"]),
        sender_email=item.get("senderEmail"),
        sender_name=item.get("senderName"),
        client_message_id=item.get("clientMessageId"),
        removed=bool(item.get("removed")),
        model=item.get("model"),
        prompt_tokens=item.get("promptTokens"),
        completion_tokens=item.get("completionTokens"),
    )


def request_body(request: GroupRequestRecord) -> dict[str, Any]:
    return {
        "id": request_item_id(request.key),
        KEY_FIELD: request.group_id,
        "type": GROUP_REQUEST,
        "key": request.key,
        "clientMessageId": request.client_message_id,
        "userSeq": request.user_seq,
        "assistantSeq": request.assistant_seq,
    }


def request_from_item(item: dict[str, Any]) -> GroupRequestRecord:
    return GroupRequestRecord(
        group_id=item[KEY_FIELD],
        key=item["key"],
        client_message_id=item["clientMessageId"],
        user_seq=item["userSeq"],
        assistant_seq=item.get("assistantSeq"),
    )


class CosmosGroups:
    """The GroupStore half of the Cosmos store."""

    def __init__(self, conn: CosmosConnection) -> None:
        self.conn = conn

    async def create_group(self, group: GroupRecord) -> GroupRecord:
        try:
            results = await self.conn.batch("groups", group.id, [("create", (group_body(group),))])
        except BatchRefused as refused:
            raise ConcurrencyConflict(group.id) from refused
        return group.model_copy(update={"etag": results[-1].get("eTag")})

    async def read_group(self, group_id: str, *, latest: bool = False) -> GroupRecord | None:
        if latest:
            # Whatever replica serves the read: it sees every write acknowledged anywhere.
            await self.conn.catch_up_item("groups", group_id, KEY_FIELD, group_id)
        item = await self.conn.read("groups", group_id, group_id)
        if item is None or item.get("type") != GROUP:
            return None
        if item.get("state") == DELETING:
            # A delete stopped half-way (a crash): finish it, so nothing of it lingers.
            await self.delete_group(group_id, expected_etag=None)
            return None
        return group_from_item(item)

    async def write_group(
        self,
        group: GroupRecord,
        *,
        expected_etag: str,
        messages: Sequence[GroupMessageRecord] = (),
        rewrite: Sequence[GroupMessageRecord] = (),
        request: GroupRequestRecord | None = None,
    ) -> GroupRecord:
        ops: list[BatchOp] = [("create", (message_body(m),)) for m in messages]
        ops += [("replace", (message_item_id(m.seq), message_body(m))) for m in rewrite]
        request_index = None
        if request is not None:
            request_index = len(ops)
            # A new clientMessageId is created (409 when seen before: a retry); the answer's
            # write updates it.
            verb = "create" if request.assistant_seq is None else "upsert"
            ops.append((verb, (request_body(request),)))
        ops.append(("replace", (group.id, group_body(group)), {"if_match_etag": expected_etag}))
        try:
            results = await self.conn.batch("groups", group.id, ops)
        except BatchRefused as refused:
            if refused.index == request_index and refused.status == 409:
                raise DuplicateRequest() from refused
            # 409: that seq exists; 412: the ETag moved on; 404: the group is gone. Another
            # writer got there first: the rules re-read and decide.
            raise ConcurrencyConflict(group.id) from refused
        return group.model_copy(update={"etag": results[-1].get("eTag")})

    async def delete_group(self, group_id: str, *, expected_etag: str | None) -> bool:
        item = await self.conn.read("groups", group_id, group_id)
        if item is not None and item.get("state") != DELETING:
            if expected_etag is not None and item.get("_etag") != expected_etag:
                return False
            # 1. Unreadable from here on, and no sender's if-match write can land any more.
            marked = {**item, "state": DELETING}
            marked = {k: v for k, v in marked.items() if not k.startswith("_")}
            try:
                await self.conn.batch(
                    "groups",
                    group_id,
                    [("replace", (group_id, marked), {"if_match_etag": item["_etag"]})],
                )
            except BatchRefused:
                if expected_etag is not None:
                    return False  # changed meanwhile: the caller decides again
                return await self.delete_group(group_id, expected_etag=None)
        # 2. Its messages and request items, a batch at a time; 3. the item itself, last, so
        #    that an interrupted delete is found (read_group) and finished.
        while True:
            ids = await self.conn.query(
                "groups", ITEM_IDS_QUERY.format(n=DELETE_PAGE), [], email=group_id
            )
            if not ids:
                break
            ops: list[BatchOp] = [("delete", (item_id,)) for item_id in ids]
            for batch in chunks(ops):
                # Refused: someone else deleted some of them; the next query says what is left.
                with contextlib.suppress(BatchRefused):
                    await self.conn.batch("groups", group_id, batch)
        await self.conn.delete("groups", group_id, group_id)
        return True

    async def group_messages(
        self,
        group_id: str,
        *,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[GroupMessageRecord], bool]:
        if after_seq is not None:
            items = await self.conn.query(
                "groups",
                MESSAGES_AFTER_QUERY.format(n=int(limit) + 1),
                [{"name": "@after", "value": after_seq}],
                email=group_id,
            )
            page = items[:limit]
        else:
            before = before_seq if before_seq is not None else NO_SEQ_ABOVE
            items = await self.conn.query(
                "groups",
                MESSAGES_BEFORE_QUERY.format(n=int(limit) + 1),
                [{"name": "@before", "value": before}],
                email=group_id,
            )
            page = list(reversed(items[:limit]))
        return [message_from_item(item) for item in page], len(items) > limit

    async def messages_of_sender(
        self, group_id: str, email: str, *, limit: int
    ) -> list[GroupMessageRecord]:
        items = await self.conn.query(
            "groups",
            SENDER_QUERY.format(n=int(limit)),
            [{"name": "@e", "value": email}],
            email=group_id,
        )
        return [message_from_item(item) for item in items]

    async def get_group_request(self, group_id: str, key: str) -> GroupRequestRecord | None:
        item = await self.conn.read("groups", request_item_id(key), group_id)
        return request_from_item(item) if item is not None else None

    async def put_group_ref(self, email: str, group_id: str) -> None:
        ref = {
            "id": ref_item_id(group_id),
            "type": GROUP_REF,
            "EmailID": email,
            "groupId": group_id,
        }
        await self.conn.batch("active", email, [("upsert", (ref,))])

    async def drop_group_ref(self, email: str, group_id: str) -> None:
        await self.conn.delete("active", ref_item_id(group_id), email)

    async def group_ref_ids(self, email: str, *, limit: int) -> list[str]:
        items = await self.conn.query("active", REFS_QUERY.format(n=int(limit)), [], email=email)
        return [str(group_id) for group_id in items]
