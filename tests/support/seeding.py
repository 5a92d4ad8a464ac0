"""Writing a made-up conversation through a store, the way turns would have written it."""

from __future__ import annotations

from typing import Any

from shared.models import MessageRecord, SessionRecord

SEED_BATCH = 50  # messages per write: well inside one Cosmos batch of 100 operations


async def append_in_batches(
    store: Any, session: SessionRecord, records: list[MessageRecord], *, batch: int = SEED_BATCH
) -> SessionRecord:
    """Store ``records`` (seq 1, 2, ...) under ``session`` through ``store.append``, ``batch``
    at a time, each write guarded by the ETag of the one before, as turns are. Returns the
    session as stored."""
    stored: SessionRecord | None = None
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        session = session.model_copy(
            update={
                "message_count": chunk[-1].seq,
                "last_seq": chunk[-1].seq,
                "updated_at": chunk[-1].timestamp,
            }
        )
        stored = await store.append(session, chunk, expected_etag=stored.etag if stored else None)
    if stored is None:
        raise ValueError("a session needs at least one message")
    return stored
