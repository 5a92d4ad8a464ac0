"""Groups' stored records and API bodies (``openapi.yaml``, the ``Group*`` schemas).

The records are what both stores keep (``docs/design.md``, "Groups"): the group item (its
members, counters and ETag), one record per message (seq-ordered, gapless), one per
clientMessageId of a sender (idempotency), and in each member's own data an index entry.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from shared.clock import iso
from shared.ids import SEQ_WIDTH
from shared.models import ApiModel, Role

GroupRole = Literal["owner", "member"]

# 'g_' + 32 lowercase hex characters (128 random bits): unguessable, URL-safe, fixed shape.
GROUP_ID_RE = re.compile(r"^g_[0-9a-f]{32}$")
GROUP_MESSAGE_ID_RE = re.compile(r"^(g_[0-9a-f]{32}):([0-9]{8,})$")
GROUP_NAME_MAX_CHARS = 100
MEMBER_NAME_MAX_CHARS = 100


def new_group_id() -> str:
    return "g_" + secrets.token_hex(16)


def is_group_id(value: str) -> bool:
    """Ids of any other shape cannot exist: 404 without a read."""
    return bool(GROUP_ID_RE.match(value))


def group_message_id(group_id: str, seq: int) -> str:
    return f"{group_id}:{seq:0{SEQ_WIDTH}d}"


def parse_group_message_id(value: str) -> tuple[str, int] | None:
    match = GROUP_MESSAGE_ID_RE.match(value)
    return (match.group(1), int(match.group(2))) if match else None


def request_key(email: str, client_message_id: str) -> str:
    """A sender's clientMessageId within a group: two members may pick the same id."""
    return hashlib.sha256(f"{email}\n{client_message_id}".encode()).hexdigest()


# ---- stored records ---------------------------------------------------------------------------


class GroupMember(BaseModel):
    email: str
    name: str
    role: GroupRole
    added_at: datetime


class GroupRecord(BaseModel):
    """The group item: the truth of who belongs to it, and its message counters. Every write
    of the group (a message, a membership change, a rename) replaces it if-match its ETag."""

    id: str
    name: str
    created_at: datetime
    updated_at: datetime
    members: list[GroupMember]
    last_seq: int = 0
    message_count: int = 0
    etag: str | None = None

    def member(self, email: str) -> GroupMember | None:
        return next((m for m in self.members if m.email == email), None)


class GroupMessageRecord(BaseModel):
    group_id: str
    seq: int
    role: Role
    content: str
    timestamp: datetime
    sender_email: str | None = None  # None for the assistant and for a removed message
    sender_name: str | None = None
    client_message_id: str | None = None
    removed: bool = False  # the sender's erasure emptied it; it keeps its place (seq)
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def id(self) -> str:
        return group_message_id(self.group_id, self.seq)

    def to_api(self) -> GroupMessageOut:
        sender = (
            Sender(email=self.sender_email, name=self.sender_name or "")
            if self.sender_email is not None and not self.removed
            else None
        )
        return GroupMessageOut(
            id=self.id,
            seq=self.seq,
            role=self.role,
            sender=sender,
            content=self.content,
            timestamp=iso(self.timestamp),
            removed=True if self.removed else None,
        )


class GroupRequestRecord(BaseModel):
    """Where a retried send's messages are: one per (sender, clientMessageId) of a group."""

    group_id: str
    key: str  # request_key(sender, clientMessageId)
    client_message_id: str
    user_seq: int
    assistant_seq: int | None = None


# ---- requests ---------------------------------------------------------------------------------


class GroupCreateRequest(ApiModel):
    name: str
    members: list[str] = Field(default_factory=list)


class GroupRenameRequest(ApiModel):
    name: str


class MemberAddRequest(ApiModel):
    email: str
    role: GroupRole = "member"


class GroupSendRequest(ApiModel):
    # Lengths are checked by the service (400 empty, 413 too long), as for chat. A ``sender``
    # in the body is ignored: the server stamps it from the verified identity.
    content: str
    client_message_id: str | None = Field(
        None, alias="clientMessageId", min_length=1, max_length=100
    )
    ask: bool = Field(False, strict=True)


# ---- responses --------------------------------------------------------------------------------


class Sender(ApiModel):
    email: str
    name: str


class GroupMessageOut(ApiModel):
    id: str
    seq: int
    role: Role
    sender: Sender | None
    content: str
    timestamp: str
    removed: bool | SkipJsonSchema[None] = Field(None, exclude_if=lambda value: value is None)


class GroupMemberOut(ApiModel):
    email: str
    name: str
    role: GroupRole
    added_at: str = Field(alias="addedAt")


class GroupSummary(ApiModel):
    group_id: str = Field(alias="groupId")
    name: str
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    message_count: int = Field(alias="messageCount")
    member_count: int = Field(alias="memberCount")
    role: GroupRole


class GroupOut(GroupSummary):
    members: list[GroupMemberOut]
    messages: list[GroupMessageOut]
    has_more_messages: bool = Field(alias="hasMoreMessages")


class GroupList(ApiModel):
    groups: list[GroupSummary]
    continuation_token: str | None = Field(alias="continuationToken")


class GroupMessages(ApiModel):
    messages: list[GroupMessageOut]


class GroupMessagePage(ApiModel):
    messages: list[GroupMessageOut]
    has_more: bool = Field(alias="hasMore")


def summary_of(group: GroupRecord, caller: str) -> GroupSummary:
    member = group.member(caller)
    return GroupSummary(
        group_id=group.id,
        name=group.name,
        created_at=iso(group.created_at),
        updated_at=iso(group.updated_at),
        message_count=group.message_count,
        member_count=len(group.members),
        role=member.role if member else "member",
    )


def member_out(member: GroupMember) -> GroupMemberOut:
    return GroupMemberOut(
        email=member.email, name=member.name, role=member.role, added_at=iso(member.added_at)
    )
