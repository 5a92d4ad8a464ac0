"""Pydantic models: the API's request and response bodies, and the stored items.

API models use the camelCase field names of API.md. Stored records are what the stores keep;
they are the same for Cosmos and SQLite (DESIGN.md's data model).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import iso

Role = Literal["user", "assistant"]


class ApiModel(BaseModel):
    # Unknown JSON fields are ignored (additive clients keep working).
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# ---- requests -------------------------------------------------------------------------------


class ChatRequest(ApiModel):
    # Lengths are checked by the service (400 for empty, 413 for too long): keep the raw text here.
    message: str
    session_id: str | None = Field(None, alias="sessionId")
    client_message_id: str | None = Field(
        None, alias="clientMessageId", min_length=1, max_length=100
    )


# ---- responses ------------------------------------------------------------------------------


class MessageOut(ApiModel):
    id: str
    role: Role
    content: str
    timestamp: str


class SessionSummary(ApiModel):
    session_id: str = Field(alias="sessionId")
    title: str
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    message_count: int = Field(alias="messageCount")
    preview: str
    archived: bool


class SessionDetail(SessionSummary):
    messages: list[MessageOut]


class SessionList(ApiModel):
    sessions: list[SessionSummary]
    continuation_token: str | None = Field(alias="continuationToken")


class ChatResponse(ApiModel):
    session_id: str = Field(alias="sessionId")
    title: str
    messages: list[MessageOut]


class ErrorDetail(ApiModel):
    code: str
    message: str


class ErrorResponse(ApiModel):
    error: ErrorDetail


class HealthResponse(ApiModel):
    status: Literal["ok"]


# ---- stored records -------------------------------------------------------------------------


class ContextMessage(BaseModel):
    """A message as kept in the session's context window (what the model is given)."""

    seq: int
    role: Role
    content: str


class ClientRequestRef(BaseModel):
    """Where the messages of one clientMessageId went, for idempotent retries."""

    user_seq: int
    assistant_seq: int | None = None


class MessageRecord(BaseModel):
    session_id: str
    seq: int
    role: Role
    content: str
    timestamp: datetime
    client_message_id: str | None = None
    # Kept on assistant messages for cost accounting; never part of the API object.
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def to_api(self) -> MessageOut:
        from shared.ids import message_item_id

        return MessageOut(
            id=message_item_id(self.session_id, self.seq),
            role=self.role,
            content=self.content,
            timestamp=iso(self.timestamp),
        )


class SessionRecord(BaseModel):
    """The small session item: everything a turn needs in one point read."""

    id: str
    email: str
    title: str
    preview: str
    created_at: datetime
    updated_at: datetime
    message_count: int = 0
    last_seq: int = 0
    context: list[ContextMessage] = Field(default_factory=list)
    # clientMessageId -> where its messages are; bounded (see service.IDEMPOTENCY_WINDOW).
    client_requests: dict[str, ClientRequestRef] = Field(default_factory=dict)
    archived: bool = False
    # The store's concurrency token (Cosmos _etag, SQLite version); None for a new session.
    etag: str | None = None

    def to_summary(self) -> SessionSummary:
        return SessionSummary(
            session_id=self.id,
            title=self.title,
            created_at=iso(self.created_at),
            updated_at=iso(self.updated_at),
            message_count=self.message_count,
            preview=self.preview,
            archived=self.archived,
        )
