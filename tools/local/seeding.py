"""Writing a made-up conversation through a store, the way turns would have written it (tests
and the benchmark seed stores with it)."""

from __future__ import annotations

from typing import Any

from shared.models import MessageRecord, SessionRecord
from shared.titles import make_preview
from shared.turns.storing import with_messages

SEED_BATCH = 50  # messages per write: well inside one Cosmos batch of 100 operations


def new_session(records: list[MessageRecord], *, email: str, title: str) -> SessionRecord:
    """The session item of ``records`` before any is stored: their session id, the preview of
    the first message (the app's rule), created at the first message's time."""
    return SessionRecord(
        id=records[0].session_id,
        email=email,
        title=title,
        preview=make_preview(records[0].content),
        created_at=records[0].timestamp,
        updated_at=records[0].timestamp,
    )


async def append_in_batches(
    store: Any, session: SessionRecord, records: list[MessageRecord], *, batch: int = SEED_BATCH
) -> SessionRecord:
    """Store ``records`` (seq 1, 2, ...) under ``session`` through ``store.append``, ``batch``
    at a time, each write guarded by the ETag of the one before, as turns are; the session's
    counters move as a turn moves them (``with_messages``). Returns the session as stored."""
    stored: SessionRecord | None = None
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        session = with_messages(session, chunk)
        stored = await store.append(session, chunk, expected_etag=stored.etag if stored else None)
    if stored is None:
        raise ValueError("a session needs at least one message")
    return stored
