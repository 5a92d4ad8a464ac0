"""Pydantic models: the API's request and response bodies, and the stored records.

API models use the camelCase field names of the contract (``openapi.yaml``). Stored records
are what the stores keep, the same for Cosmos and SQLite (``docs/design.md``, "Data model").
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shared.clock import iso
from shared.ids import message_item_id

Role = Literal["user", "assistant"]
Rating = Literal["up", "down"]
# Who wrote a session's title: the first-message rule, the model, or the user (never replaced).
TitleSource = Literal["first-message", "model", "user"]
# An assistant message's state (shared/answers.py): stored as it grows ("streaming"), whole
# ("complete"), cut short by the user ("stopped"), or its generation died ("interrupted").
AnswerStatus = Literal["complete", "streaming", "stopped", "interrupted"]

FEEDBACK_COMMENT_MAX_CHARS = 2000


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


class RenameRequest(ApiModel):
    """PATCH of a session: a new title, pinning, or both (at least one; the service says 400)."""

    title: str | None = None
    # Strict: 1 or "yes" is a client's mistake (400), not a pin.
    pinned: bool | None = Field(None, strict=True)


class RegenerateRequest(ApiModel):
    """POST .../regenerate: a new answer to the last user message; a clientMessageId makes a
    retry answer what the first attempt answered (as for a turn)."""

    client_message_id: str | None = Field(
        None, alias="clientMessageId", min_length=1, max_length=100
    )


class ForkRequest(ApiModel):
    """POST .../fork: the message (of that session) the branch ends with."""

    message_id: str = Field(alias="messageId", min_length=1, max_length=200)


class FeedbackRequest(ApiModel):
    rating: Rating
    comment: str | None = Field(None, max_length=FEEDBACK_COMMENT_MAX_CHARS)


# ---- responses ------------------------------------------------------------------------------


class FeedbackOut(ApiModel):
    rating: Rating
    comment: str | None
    updated_at: str = Field(alias="updatedAt")


class MessageOut(ApiModel):
    id: str
    role: Role
    content: str
    timestamp: str
    # Only on assistant messages that have some: absent otherwise, never null (so the schema
    # does not offer null either).
    feedback: FeedbackOut | SkipJsonSchema[None] = Field(
        None, exclude_if=lambda value: value is None
    )
    # Only on assistant messages (absent on the user's).
    status: AnswerStatus | SkipJsonSchema[None] = Field(
        None, exclude_if=lambda value: value is None
    )
    # Only on an answer that was regenerated: how many versions it has (the earlier ones at
    # .../versions). Absent, never null.
    versions: int | SkipJsonSchema[None] = Field(None, exclude_if=lambda value: value is None)


def _absent_if_none(value: object) -> bool:
    return value is None


class ExportVersion(MessageOut):
    """A message as an export holds it: the API's message and everything else stored with it
    (a right-of-access request gets all of it). An earlier version of an answer is one too."""

    client_message_id: str | SkipJsonSchema[None] = Field(
        None, alias="clientMessageId", exclude_if=_absent_if_none
    )
    model: str | SkipJsonSchema[None] = Field(None, exclude_if=_absent_if_none)
    prompt_tokens: int | SkipJsonSchema[None] = Field(
        None, alias="promptTokens", exclude_if=_absent_if_none
    )
    completion_tokens: int | SkipJsonSchema[None] = Field(
        None, alias="completionTokens", exclude_if=_absent_if_none
    )
    context_from: int | SkipJsonSchema[None] = Field(
        None, alias="contextFrom", exclude_if=_absent_if_none
    )
    first_token_ms: int | SkipJsonSchema[None] = Field(
        None, alias="firstTokenMs", exclude_if=_absent_if_none
    )
    total_ms: int | SkipJsonSchema[None] = Field(None, alias="totalMs", exclude_if=_absent_if_none)


class ExportMessage(ExportVersion):
    """A message of an export, with a regenerated answer's earlier versions (oldest first;
    the current one is the message itself)."""

    earlier_versions: list[ExportVersion] | SkipJsonSchema[None] = Field(
        None, alias="earlierVersions", exclude_if=_absent_if_none
    )


class SessionSummary(ApiModel):
    session_id: str = Field(alias="sessionId")
    title: str
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    message_count: int = Field(alias="messageCount")
    preview: str
    archived: bool
    # Pinned sessions are listed first and are never archived nor deleted by retention.
    pinned: bool


class SessionDetail(SessionSummary):
    messages: list[MessageOut]
    # True when older messages exist than those returned (page them with .../messages).
    has_more_messages: bool = Field(alias="hasMoreMessages")


class VersionList(ApiModel):
    """GET .../messages/{messageId}/versions: oldest first, the current one last."""

    versions: list[MessageOut]


class MessagePage(ApiModel):
    messages: list[MessageOut]
    has_more: bool = Field(alias="hasMore")


class SessionList(ApiModel):
    sessions: list[SessionSummary]
    continuation_token: str | None = Field(alias="continuationToken")


class ChatResponse(ApiModel):
    session_id: str = Field(alias="sessionId")
    title: str
    messages: list[MessageOut]


class SearchMatch(ApiModel):
    message_id: str = Field(alias="messageId")
    role: Role
    snippet: str


class SearchResult(ApiModel):
    session_id: str = Field(alias="sessionId")
    title: str
    updated_at: str = Field(alias="updatedAt")
    archived: bool
    # Only with order=relevance (shared.search.relevance): absent, not null, otherwise.
    score: int | SkipJsonSchema[None] = Field(default=None, exclude_if=lambda v: v is None)
    matches: list[SearchMatch]


class SearchResults(ApiModel):
    results: list[SearchResult]
    continuation_token: str | None = Field(alias="continuationToken")


class EraseProgress(ApiModel):
    """202 of DELETE /api/sessions: the request's time ran out before everything was gone."""

    remaining: Literal[True]


class RealtimeAccess(ApiModel):
    """200 of GET /api/realtime/negotiate: the client's WebSocket URL (its token inside) and
    when that token stops admitting new connections."""

    url: str
    expires_at: str = Field(alias="expiresAt")


class ErrorDetail(ApiModel):
    code: str
    message: str


class ErrorResponse(ApiModel):
    error: ErrorDetail


class HealthResponse(ApiModel):
    status: Literal["ok"]


# ---- stored records -------------------------------------------------------------------------


class Feedback(BaseModel):
    rating: Rating
    comment: str | None = None
    updated_at: datetime

    def to_api(self) -> FeedbackOut:
        return FeedbackOut(
            rating=self.rating, comment=self.comment, updated_at=iso(self.updated_at)
        )


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
    # On an answer: the seq of the first message of the window it was written from, so that
    # the next call can keep the same beginning (shared/context.py).
    context_from: int | None = None
    # On an answer: how long the model took (milliseconds to the first token and to the end of
    # the answer), stored with it so that the operators' report (shared/report/) can give
    # latency from the store; never part of the API object.
    first_token_ms: int | None = None
    total_ms: int | None = None
    feedback: Feedback | None = None
    # An answer's state as stored (shared/answers.py says how it is shown) and, while it is
    # "streaming", when its text was last written: what tells a live answer from a dead one.
    status: AnswerStatus = "complete"
    checkpoint_at: datetime | None = None
    # Set on a "streaming" answer by POST .../stop (any instance): its generator sees it at its
    # next checkpoint and stops (shared/answers.py). Never part of the API object.
    stop_requested: bool = False
    # On an answer that was regenerated: how many versions it has, this one the newest (the
    # earlier ones are stored beside it: ``docs/design.md``, "Regenerated answers and branches").
    versions: int | None = None

    @property
    def id(self) -> str:
        return message_item_id(self.session_id, self.seq)

    def to_api(self) -> MessageOut:
        return MessageOut(
            id=self.id,
            role=self.role,
            content=self.content,
            timestamp=iso(self.timestamp),
            feedback=self.feedback.to_api() if self.feedback else None,
            status=self.status if self.role == "assistant" else None,
            versions=self.versions,
        )

    def to_export(self) -> ExportMessage:
        return ExportMessage(
            id=self.id,
            role=self.role,
            content=self.content,
            timestamp=iso(self.timestamp),
            feedback=self.feedback.to_api() if self.feedback else None,
            status=self.status if self.role == "assistant" else None,
            client_message_id=self.client_message_id,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            context_from=self.context_from,
            first_token_ms=self.first_token_ms,
            total_ms=self.total_ms,
            versions=self.versions,
        )


class ContextMessage(BaseModel):
    """A message as the model is given it: a turn reads its window of these."""

    seq: int
    role: Role
    content: str
    # An answer's window start (MessageRecord.context_from), as either store names it.
    context_from: int | None = Field(None, alias="contextFrom")

    model_config = ConfigDict(populate_by_name=True)


class RequestRecord(BaseModel):
    """Where the messages of one clientMessageId went, so that a retry stores nothing twice.
    One per clientMessageId per session, kept for the session's life."""

    session_id: str
    client_message_id: str
    user_seq: int
    assistant_seq: int | None = None


class SessionRecord(BaseModel):
    """The small session item: counters, title and times. The model's context window is read
    from the newest message items, in the same round trip (``docs/design.md``, "The turn")."""

    id: str
    email: str
    title: str
    title_source: TitleSource = "first-message"
    preview: str
    created_at: datetime
    updated_at: datetime
    message_count: int = 0
    last_seq: int = 0
    archived: bool = False
    pinned: bool = False
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
            pinned=self.pinned,
        )


# ---- sharing (shared/sharing.py, docs/http.md "Sharing") -------------------------------------

Audience = Literal["signed_in", "people"]
SHARE_EXPIRES_DEFAULT_DAYS, SHARE_EXPIRES_MIN_DAYS, SHARE_EXPIRES_MAX_DAYS = 30, 1, 365


class ShareCreateRequest(ApiModel):
    audience: Audience
    # Addresses are checked and normalised by the rules (shared/sharing.py), not here.
    people: list[str] = Field(default_factory=list)
    expires_in_days: int = Field(
        SHARE_EXPIRES_DEFAULT_DAYS,
        alias="expiresInDays",
        ge=SHARE_EXPIRES_MIN_DAYS,
        le=SHARE_EXPIRES_MAX_DAYS,
    )


class ShareOut(ApiModel):
    share_id: str = Field(alias="shareId")
    session_id: str = Field(alias="sessionId")
    title: str
    audience: Audience
    people: list[str]
    created_at: str = Field(alias="createdAt")
    expires_at: str = Field(alias="expiresAt")
    message_count: int = Field(alias="messageCount")
    views: int


class ShareList(ApiModel):
    shares: list[ShareOut]
    continuation_token: str | None = Field(alias="continuationToken")


class SharedBy(ApiModel):
    email: str
    name: str


class SharedConversation(ApiModel):
    share_id: str = Field(alias="shareId")
    title: str
    shared_by: SharedBy = Field(alias="sharedBy")
    created_at: str = Field(alias="createdAt")
    expires_at: str = Field(alias="expiresAt")
    messages: list[MessageOut]


class ShareViewOut(ApiModel):
    email: str
    viewed_at: str = Field(alias="viewedAt")


class ShareViews(ApiModel):
    views: list[ShareViewOut]


class ShareRecord(BaseModel):
    """A share: a snapshot of a session's messages, its audience and expiry. ``views`` counts
    every view by someone other than the owner (the log keeps the newest of them)."""

    id: str
    owner: str
    session_id: str
    title: str
    audience: Audience
    people: list[str] = Field(default_factory=list)
    created_at: datetime
    expires_at: datetime
    message_count: int
    views: int = 0

    def to_api(self) -> ShareOut:
        return ShareOut(
            share_id=self.id,
            session_id=self.session_id,
            title=self.title,
            audience=self.audience,
            people=list(self.people),
            created_at=iso(self.created_at),
            expires_at=iso(self.expires_at),
            message_count=self.message_count,
            views=self.views,
        )


class ShareView(BaseModel):
    """One view of a share by someone other than its owner."""

    share_id: str
    email: str
    viewed_at: datetime


class ViewedShare(BaseModel):
    """A share a user viewed, kept in the viewer's own data: their export lists it, and their
    erasure finds the view logs they appear in by it (no scan across shares)."""

    share_id: str
    owner: str
    title: str
    viewed_at: datetime
