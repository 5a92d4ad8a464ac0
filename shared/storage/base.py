"""The ConversationStore protocol: everything the service needs from a database.

A store persists what the service decides; it knows no rule of API.md. Each write is atomic
(one Cosmos transactional batch, one SQLite transaction) and guarded by the session's ETag.
Every call names the caller's email, the partition key, except the archival scans.

``where`` picks the container: ``"active"`` (Conversations) or ``"archive"``
(ConversationsArchive); both hold the same kinds of items.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel

from shared.models import MessageRecord, SessionRecord

Where = Literal["active", "archive"]

MAX_BATCH_OPERATIONS = 100  # Cosmos' limit for one transactional batch; SQLite follows it too


class SessionRef(BaseModel):
    """A session found by an archival scan: just enough to move it safely."""

    email: str
    session_id: str
    updated_at: datetime
    etag: str


class OrphanRef(BaseModel):
    """Message items whose session item is gone (an interrupted delete)."""

    email: str
    session_id: str


class ConversationStore(Protocol):
    # ---- reads -------------------------------------------------------------------------------

    async def get_session(
        self, email: str, session_id: str, where: Where = "active"
    ) -> SessionRecord | None:
        """One point read of the session item; None when missing or being deleted."""
        ...

    async def get_message(
        self, email: str, session_id: str, seq: int, where: Where = "active"
    ) -> MessageRecord | None:
        """One point read of a message item."""
        ...

    async def list_messages(
        self, email: str, session_id: str, where: Where = "active"
    ) -> list[MessageRecord]:
        """Every message item of the session, in sequence order (one partition query)."""
        ...

    async def list_sessions(
        self, email: str, *, limit: int, continuation: str | None, where: Where = "active"
    ) -> tuple[list[SessionRecord], str | None]:
        """Session items only, newest ``updated_at`` first (ties by id), and the next page's
        token (None on the last page). Tokens are the store's own and opaque to callers."""
        ...

    # ---- the turn's writes ---------------------------------------------------------------------

    async def commit(
        self,
        session: SessionRecord,
        messages: list[MessageRecord],
        *,
        expected_etag: str | None,
        where: Where = "active",
    ) -> SessionRecord:
        """Atomically create ``messages`` and write ``session``: created when ``expected_etag``
        is None, else replaced only if its ETag still matches. Raises ConcurrencyConflict when
        another writer got there first (nothing is written). Returns the session with its new
        ETag."""
        ...

    async def delete_session(self, email: str, session_id: str, where: Where = "active") -> bool:
        """Mark the session deleted, remove its messages in batches of at most 100, then the
        session item. Safe to repeat after a crash. True if there was anything to delete."""
        ...

    # ---- archival primitives (shared.archive) --------------------------------------------------

    async def scan_sessions(
        self,
        where: Where,
        *,
        updated_before: datetime,
        limit: int,
        continuation: str | None,
    ) -> tuple[list[SessionRef], str | None]:
        """One page of sessions (all users) not updated since ``updated_before``."""
        ...

    async def put_items(
        self, where: Where, session: SessionRecord | None, messages: list[MessageRecord]
    ) -> None:
        """Upsert items as they are (a copy between containers): repeatable, batched."""
        ...

    async def delete_messages(
        self, where: Where, email: str, session_id: str, seqs: list[int]
    ) -> None:
        """Delete these message items (missing ones are fine), in batches of at most 100."""
        ...

    async def delete_session_item(
        self, where: Where, email: str, session_id: str, *, expected_etag: str | None
    ) -> None:
        """Delete the session item, only if its ETag still matches (ConcurrencyConflict if
        not); a missing item is fine."""
        ...

    async def scan_orphans(
        self, where: Where, *, older_than: datetime, limit: int
    ) -> list[OrphanRef]:
        """Sessions whose message items older than ``older_than`` outlive their session
        item."""
        ...

    async def close(self) -> None: ...
