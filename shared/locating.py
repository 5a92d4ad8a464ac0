"""Where a conversation is now, for the reads and the writes that follow it through moves
(``docs/design.md``, "Moving a session"): locating it, bringing an archived one back, and
what a read or a write that keeps losing it answers. Shared by the service
(``shared/service.py``) and the turn (``shared/turns/``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.backoff import Sleep, backoff_delay
from shared.errors import ApiError, NotFound, StorageUnavailable
from shared.ids import is_session_id, parse_message_id
from shared.models import SessionRecord
from shared.storage.base import ConversationStore, MoveOutcome, Presence, Where

# The service's log lines about a session (docs/operations.md), wherever the step runs.
log = logging.getLogger("parley.service")

# Reads of a session's messages that may each find it moved away since it was located (each
# move leaves it for good, so a few suffice) before answering 503.
MAX_MOVED_READS = 4


@dataclass(frozen=True)
class Located:
    session: SessionRecord
    where: Where


async def locate(store: ConversationStore, email: str, session_id: str) -> Located | None:
    """Where the session is now; None only when it does not exist (a move in flight is
    followed by the store, never taken for a missing session)."""
    if not is_session_id(session_id):
        return None
    found = await store.locate(email, session_id)
    return Located(*found) if found is not None else None


async def find(store: ConversationStore, email: str, session_id: str) -> Located:
    """Where the session is now; 404 when it does not exist."""
    located = await locate(store, email, session_id)
    if located is None:
        raise NotFound()
    return located


async def restore(
    store: ConversationStore, email: str, session_id: str, attempt: int, sleep: Sleep
) -> None:
    """Bring an archived session back to the active store (before it changes). When another
    request is moving it right now, let that finish (a backoff pause): the caller reads again."""
    outcome = await store.restore(email, session_id)
    if outcome is MoveOutcome.MOVED:
        log.info("session_restored", extra={"session_id": session_id})
    elif outcome in (MoveOutcome.BUSY, MoveOutcome.CHANGED):
        await sleep(backoff_delay(attempt))


async def live_session(
    store: ConversationStore, email: str, session_id: str, attempt: int, sleep: Sleep
) -> SessionRecord:
    """The session item as it is now, restoring it if it was archived meanwhile; 404 if it
    was deleted (an answer being stored then goes with it)."""
    while True:
        view = await store.read_turn(email, session_id, history=0)
        if view.presence is Presence.LIVE and view.session is not None:
            return view.session
        if view.presence is Presence.MISSING:
            raise NotFound()
        await restore(store, email, session_id, attempt, sleep)
        attempt += 1


def seq_in(session_id: str, message_id: str) -> int:
    """The seq of a message id of this session; any other id cannot be here: 404."""
    parsed = parse_message_id(message_id)
    if parsed is None or parsed[0] != session_id:
        raise NotFound("No such message.")
    return parsed[1]


def still_moving() -> StorageUnavailable:
    return StorageUnavailable("The conversation is being moved; try again.", retry_after_s=1)


def too_contended(session_id: str) -> ApiError:
    log.warning("commit_gave_up", extra={"session_id": session_id})
    return StorageUnavailable("The session is too busy right now; try again.", retry_after_s=1)
