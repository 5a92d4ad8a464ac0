"""Cosmos items <-> Parley records, and the states a session item can be in.

Items (``docs/design.md``, "Data model"), in containers partitioned on ``/EmailID``:

- session item: ``id`` = session id, ``type: "session"``, ``sessionId`` (its own id), ``seq``
  (a constant above every message's, so one query ordered by ``seq`` returns the session item
  and then its newest messages), title, titleSource, preview, createdAt, updatedAt,
  messageCount, lastSeq, pinned; ``live: true`` while it is live and not pinned (the archival
  scans' indexed marker, below); and, while a move or delete is under way, ``state`` and its fields;
- message item: ``id`` = ``<sessionId>:<seq>``, ``type: "message"``, sessionId, seq, role,
  content, timestamp, clientMessageId, model, token counts, contextFrom (an answer's window
  start), feedback;
- version item: ``id`` = ``<sessionId>:<seq>:v<n>``, ``type: "version"``, sessionId,
  messageSeq, version and the message's fields as they were: an earlier version of a
  regenerated answer (whose message item counts them in ``versions``). It has no ``seq``, so
  a turn's read, paging and search never read it; queries by ``sessionId`` (moves, deletes,
  erasure, re-homing) carry it with its session;
- request item: ``id`` = ``<sessionId>:r:<digest of clientMessageId>``, ``type: "request"``,
  sessionId, clientMessageId, userSeq, assistantSeq: one per clientMessageId, for retries;
- identity item (active container only): ``id`` = ``identity``, ``type: "identity"``,
  tenantId, objectId, boundAt: the account the address is bound to (``shared.identity``). It
  has no ``sessionId`` or ``seq``, so no query of sessions or messages ever reads it.

Times are fixed-width strings (``shared.clock.stored_time``), so text order is time order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from shared.auth.claims import Account
from shared.clock import parse_iso, stored_time
from shared.ids import message_item_id
from shared.models import Feedback, MessageRecord, RequestRecord, SessionRecord
from shared.search import folded_copy
from shared.storage.base import ArchiveRun, Binding, Where
from shared.storage.containers import CONTENT_FOLDED, TITLE_FOLDED

SESSION, MESSAGE, REQUEST, IDENTITY = "session", "message", "request", "identity"
VERSION = "version"
ARCHIVE_RUN = "archiveRun"
# The partition of the operators' own items (one per archival pass, in the active container).
# Every identity holds exactly one '@' (``parse_email`` in shared/auth/claims.py refuses any
# other), and this holds none: it can never be a user's partition, so no user's list, export
# or erasure (each reads or deletes its own partition) ever meets these items.
OPS_PARTITION = "#ops"
# The identity item's id: one per partition, and never a session id (those start with "s_").
IDENTITY_ITEM_ID = "identity"
# Above any message's seq: ORDER BY seq DESC puts the session item first. Safe in JSON doubles.
SESSION_ITEM_SEQ = 2**53 - 1
# Cosmos' own properties, left out when comparing what was written with what was sent.
SYSTEM_PROPERTIES = frozenset({"_rid", "_self", "_etag", "_attachments", "_ts", "_lsn"})

# A session item's states (``state`` absent: live, the only state readers see).
#   active container:  archived (a stub: the session lives in the archive; ``cleanup`` while
#                      the active copies of its items are still being removed),
#                      restoring (on its way back: items arriving, fenced by this item),
#                      deleting (being deleted everywhere);
#   archive container: incoming (a copy being built, fenced by this item),
#                      moved (moved back to active: leftovers being removed),
#                      deleting.
State = Literal["archived", "restoring", "incoming", "moved", "deleting"]
ARCHIVED: State = "archived"
RESTORING: State = "restoring"
INCOMING: State = "incoming"
MOVED: State = "moved"
DELETING: State = "deleting"
# An imported conversation's session item while its messages are written: shown by no reader,
# offered to no scan, not a move (``CosmosStore.import_session``).
IMPORTING = "importing"
STATE_FIELDS = ("state", "since", "from", "complete", "cleanup", "touched", "mover")
# The archival scans read only what the index serves as an equality or a range
# (``docs/design.md``, "Indexing"): "no state" cannot be one (``NOT IS_DEFINED`` reads every
# session item, stubs included), so a live session item also carries ``live: true``, which a
# stub and every other state's item lack (``state_body`` writes none). ``state`` stays the
# truth: a fence patch that moves a live item to ``deleting`` leaves the marker on it until the
# delete removes the item, so the stale scan drops what it finds in a state.
LIVE_MARKER = "live"
# Pinned sessions: always written (true or false), so the list's ORDER BY on it sees a value on
# every item written since pinning exists; items written before lack it (``store.LIST_QUERY``).
# Pinned items carry no LIVE_MARKER: a pinned session is offered to no archival scan.
PINNED = "pinned"
# The unfinished work housekeeping looks for, by container: each state is one equality, and a
# stub still removing the active copies of its items is ``archived`` with ``cleanup: true``.
UNFINISHED_STATES: dict[Where, tuple[State, ...]] = {
    "active": (RESTORING, DELETING),
    "archive": (INCOMING, MOVED, DELETING),
}


@dataclass(frozen=True)
class SessionItem:
    """A session item as read: the record, its state and the state's fields."""

    record: SessionRecord
    etag: str
    state: State | None
    since: str | None = None
    origin: str | None = None  # "from": the source ETag a copy or stub stands for
    complete: bool = False
    cleanup: bool = False
    mover: str | None = None  # which store instance wrote the claim (``Moves.mover``)

    @property
    def live(self) -> bool:
        return self.state is None


def request_item_id(session_id: str, client_message_id: str) -> str:
    # A digest: a client's id may hold characters Cosmos ids refuse (/, \\, #, ?).
    digest = hashlib.sha256(client_message_id.encode()).hexdigest()[:32]
    return f"{session_id}:r:{digest}"


def session_body(session: SessionRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": session.id,
        "type": SESSION,
        "EmailID": session.email,
        "sessionId": session.id,
        "seq": SESSION_ITEM_SEQ,
        "title": session.title,
        "titleSource": session.title_source,
        "preview": session.preview,
        "createdAt": stored_time(session.created_at),
        "updatedAt": stored_time(session.updated_at),
        "messageCount": session.message_count,
        "lastSeq": session.last_seq,
        PINNED: session.pinned,
    }
    folded = folded_copy(session.title)
    if folded is not None:
        body[TITLE_FOLDED] = folded
    if not session.pinned:
        # A pinned session is never archived nor deleted by retention: the scans, which
        # read only items with the marker, never see it (and the scan stays a positive filter).
        body[LIVE_MARKER] = True
    return body


def state_body(
    session: SessionRecord,
    state: State,
    *,
    since: str,
    origin: str | None = None,
    complete: bool = False,
    cleanup: bool = False,
    mover: str | None = None,
) -> dict[str, Any]:
    """The session item in a state: the record (so anyone can finish the work) and the state."""
    body = session_body(session)
    body.pop(LIVE_MARKER, None)  # only live items are offered to the stale scan
    body.update({"state": state, "since": since, "complete": complete, "cleanup": cleanup})
    if origin is not None:
        body["from"] = origin
    if mover is not None:
        body["mover"] = mover
    return body


def session_from_item(item: dict[str, Any], archived: bool) -> SessionItem:
    record = SessionRecord(
        id=item["id"],
        email=item["EmailID"],
        title=item["title"],
        title_source=item.get("titleSource") or "first-message",
        preview=item["preview"],
        created_at=parse_iso(item["createdAt"]),
        updated_at=parse_iso(item["updatedAt"]),
        message_count=item["messageCount"],
        last_seq=item["lastSeq"],
        archived=archived,
        pinned=bool(item.get(PINNED)),
        etag=item.get("_etag"),
    )
    return SessionItem(
        record=record,
        etag=str(item.get("_etag")),
        state=item.get("state"),
        since=item.get("since"),
        origin=item.get("from"),
        complete=bool(item.get("complete")),
        cleanup=bool(item.get("cleanup")),
        mover=item.get("mover"),
    )


def message_body(email: str, message: MessageRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": message_item_id(message.session_id, message.seq),
        "type": MESSAGE,
        "EmailID": email,
        "sessionId": message.session_id,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "timestamp": stored_time(message.timestamp),
    }
    optional = {
        "clientMessageId": message.client_message_id,
        "model": message.model,
        "promptTokens": message.prompt_tokens,
        "completionTokens": message.completion_tokens,
        "contextFrom": message.context_from,
        "firstTokenMs": message.first_token_ms,
        "totalMs": message.total_ms,
        "feedback": feedback_body(message.feedback),
        # A whole answer (nearly all of them) stores no status: absent is "complete".
        "status": None if message.status == "complete" else message.status,
        "checkpointAt": stored_time(message.checkpoint_at) if message.checkpoint_at else None,
        "stopRequested": True if message.stop_requested else None,
        "versions": message.versions,
        CONTENT_FOLDED: folded_copy(message.content),
    }
    item.update({key: value for key, value in optional.items() if value is not None})
    return item


def version_item_id(session_id: str, seq: int, version: int) -> str:
    return f"{message_item_id(session_id, seq)}:v{version}"


def version_body(email: str, message: MessageRecord, version: int) -> dict[str, Any]:
    """An earlier version of a message: its fields as they were, under an id of its own and
    without ``seq`` (so no query of messages ever returns it)."""
    item = message_body(email, message)
    item.pop("versions", None)
    item.update(
        {
            "id": version_item_id(message.session_id, message.seq, version),
            "type": VERSION,
            "messageSeq": item.pop("seq"),
            "version": version,
        }
    )
    return item


def archive_run_body(run: ArchiveRun) -> dict[str, Any]:
    return {
        "id": f"archiveRun:{run.run_id}",
        "type": ARCHIVE_RUN,
        "EmailID": OPS_PARTITION,
        "timestamp": stored_time(run.at),
        "moved": run.moved,
        "failed": run.failed,
    }


def archive_run_from_item(item: dict[str, Any]) -> ArchiveRun:
    return ArchiveRun(
        str(item["id"]).removeprefix("archiveRun:"),
        parse_iso(item["timestamp"]),
        int(item.get("moved") or 0),
        int(item.get("failed") or 0),
    )


def feedback_body(feedback: Feedback | None) -> dict[str, Any] | None:
    if feedback is None:
        return None
    return {
        "rating": feedback.rating,
        "comment": feedback.comment,
        "updatedAt": stored_time(feedback.updated_at),
    }


def message_from_item(item: dict[str, Any]) -> MessageRecord:
    raw = item.get("feedback")
    feedback = (
        Feedback(
            rating=raw["rating"], comment=raw.get("comment"), updated_at=parse_iso(raw["updatedAt"])
        )
        if raw
        else None
    )
    return MessageRecord(
        session_id=item["sessionId"],
        seq=item["seq"] if "seq" in item else item["messageSeq"],
        role=item["role"],
        content=item["content"],
        timestamp=parse_iso(item["timestamp"]),
        client_message_id=item.get("clientMessageId"),
        model=item.get("model"),
        prompt_tokens=item.get("promptTokens"),
        completion_tokens=item.get("completionTokens"),
        context_from=item.get("contextFrom"),
        first_token_ms=item.get("firstTokenMs"),
        total_ms=item.get("totalMs"),
        feedback=feedback,
        status=item.get("status", "complete"),
        checkpoint_at=parse_iso(item["checkpointAt"]) if item.get("checkpointAt") else None,
        stop_requested=bool(item.get("stopRequested")),
        versions=item.get("versions"),
    )


def request_body(email: str, request: RequestRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request_item_id(request.session_id, request.client_message_id),
        "type": REQUEST,
        "EmailID": email,
        "sessionId": request.session_id,
        "clientMessageId": request.client_message_id,
        "userSeq": request.user_seq,
    }
    if request.assistant_seq is not None:
        body["assistantSeq"] = request.assistant_seq
    return body


def request_from_item(item: dict[str, Any]) -> RequestRecord:
    return RequestRecord(
        session_id=item["sessionId"],
        client_message_id=item["clientMessageId"],
        user_seq=item["userSeq"],
        assistant_seq=item.get("assistantSeq"),
    )


def identity_body(binding: Binding) -> dict[str, Any]:
    return {
        "id": IDENTITY_ITEM_ID,
        "type": IDENTITY,
        "EmailID": binding.email,
        "tenantId": binding.account.tenant_id,
        "objectId": binding.account.object_id,
        "boundAt": stored_time(binding.bound_at),
    }


def binding_from_item(item: dict[str, Any]) -> Binding:
    account = Account(tenant_id=item["tenantId"], object_id=item["objectId"])
    return Binding(item["EmailID"], account, parse_iso(item["boundAt"]))


def user_fields(item: dict[str, Any]) -> dict[str, Any]:
    """An item without Cosmos' own properties: what a copy must reproduce exactly."""
    return {key: value for key, value in item.items() if key not in SYSTEM_PROPERTIES}
