"""Archival: moving sessions between the active and archive containers.

(The timer's archival pass is built on the same move; see issue 6.)
"""

from __future__ import annotations

from shared.errors import StorageUnavailable
from shared.models import SessionRecord
from shared.storage.base import ConversationStore, Where


async def move_session(
    store: ConversationStore, email: str, session_id: str, source: Where, target: Where
) -> SessionRecord | None:
    """Copy every item of a session to ``target``, verify the copy, then delete it from
    ``source``, session item last. Safe to repeat after a crash at any step."""
    session = await store.get_session(email, session_id, source)
    if session is None:
        return None
    messages = await store.list_messages(email, session_id, source)
    await store.put_items(target, session, messages)
    copied = await store.list_messages(email, session_id, target)
    if [m.seq for m in copied] != [m.seq for m in messages]:
        raise StorageUnavailable("The copy of the session could not be verified.")
    await store.delete_messages(source, email, session_id, [m.seq for m in messages])
    await store.delete_session_item(source, email, session_id, expected_etag=session.etag)
    return await store.get_session(email, session_id, target)


async def restore_session(
    store: ConversationStore, email: str, session_id: str
) -> SessionRecord | None:
    """Bring an archived session back to the active container (None if it is not archived)."""
    return await move_session(store, email, session_id, "archive", "active")
