"""Exporting a user: one JSON document with every session, active and archived, and all of
their messages (feedback included), streamed from paged reads.

Used by ``GET /api/export`` and by the operators' command for requests that come by support:

    python -m shared.export --email alice@example.com [--out FILE] [--format json|markdown|csv]

The document is ``{"exportedAt", "email", "sessions": [summary + "titleSource" + "messages":
[...]], "shares": [share + "viewLog" + "messages"], "sharesViewed": [...],
"usage": [{"period", "promptTokens", "completionTokens", "cachedTokens", "turns"}],
"complete": true}``, each message with everything stored with it (feedback, the model that
answered and its token counts, the client's message id, and a regenerated answer's
``versions`` count with its ``earlierVersions``, oldest first); the user's shares with their view
logs and the shares they viewed (``shared/sharing.py``).

Memory does not grow with the user's data: sessions are read a page at a time, in an order a
session keeps while it moves between the containers (so none is missed or doubled), and each
session's messages a page at a time. Once the first byte is out the status cannot change, so a
failure part-way ends the stream without its closing ``"complete": true`` and with the document
unterminated: it does not parse, and the HTTP response is cut off (``docs/http.md``,
"Export"). The command writes to a temporary file that becomes ``FILE`` only when the document
is whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from shared.answers import ShownAt
from shared.audit import audit
from shared.clock import iso
from shared.errors import StorageUnavailable
from shared.groups.service import export_groups
from shared.models import MessageRecord, SessionRecord
from shared.sharing import SharingStore, export_shares
from shared.storage.base import ConversationStore, Where
from shared.usage import spent_json

SESSIONS_PAGE = 50
MESSAGES_PAGE = 200


@dataclass
class ExportCount:
    sessions: int = 0
    messages: int = 0
    complete: bool = False


@dataclass(frozen=True)
class ExportedSession:
    """One session of an export, as the walk reaches it: the record, then its messages."""

    session: SessionRecord
    messages: AsyncIterator[list[MessageRecord]]
    # A regenerated answer's earlier versions, oldest first (none for other messages).
    earlier: Callable[[MessageRecord], Awaitable[list[MessageRecord]]]


async def walk_sessions(
    store: ConversationStore, email: str, *, count: ExportCount, shown: ShownAt | None = None
) -> AsyncIterator[ExportedSession]:
    """Every session of the user once, each with its messages a page at a time: the one
    streaming read every export format is written from (``shared/export_formats.py``). A
    session's pages must be read before the next session is asked for."""
    after: str | None = None
    while True:
        sessions, after = await store.all_sessions(email, limit=SESSIONS_PAGE, after=after)
        for session in sessions:
            count.sessions += 1
            yield ExportedSession(
                session,
                _message_pages(store, email, session, count, shown),
                _earlier_versions(store, email, session),
            )
        if after is None:
            break


async def _message_pages(
    store: ConversationStore,
    email: str,
    session: SessionRecord,
    count: ExportCount,
    shown: ShownAt | None,
) -> AsyncIterator[list[MessageRecord]]:
    where: Where = "archive" if session.archived else "active"
    sent = 0
    after_seq = 0
    while True:
        page, more = await store.page_messages(
            email, session.id, where=where, limit=MESSAGES_PAGE, after_seq=after_seq
        )
        if page:
            sent += len(page)
            # As every read shows them: a dead "streaming" answer is "interrupted".
            yield [shown(m) for m in page] if shown is not None else page
        if not more or not page:
            break
        after_seq = page[-1].seq
    if sent < session.message_count:
        # It moved (archived or restored) while its messages were being read: what went out
        # is short, and a short export must never look whole.
        raise StorageUnavailable(
            "A conversation moved while it was exported; export again.", retry_after_s=1
        )
    count.messages += sent


def _earlier_versions(
    store: ConversationStore, email: str, session: SessionRecord
) -> Callable[[MessageRecord], Awaitable[list[MessageRecord]]]:
    where: Where = "archive" if session.archived else "active"

    async def earlier(message: MessageRecord) -> list[MessageRecord]:
        wanted = (message.versions or 1) - 1
        if not wanted:
            return []
        found = await store.message_versions(
            email, session.id, message.seq, where=where, count=wanted + 1
        )
        if len(found) < wanted:
            # Moved while it was exported: an export must never look whole when it is short.
            raise StorageUnavailable(
                "A conversation moved while it was exported; export again.", retry_after_s=1
            )
        return found

    return earlier


async def exported_message(exported: ExportedSession, message: MessageRecord) -> str:
    """One message of the JSON document, with its earlier versions if it has any."""
    out = message.to_export()
    earlier = await exported.earlier(message)
    if earlier:
        out.earlier_versions = [
            version.model_copy(update={"versions": None}).to_export() for version in earlier
        ]
    return out.model_dump_json(by_alias=True)


async def export_document(
    store: SharingStore,
    email: str,
    *,
    now: datetime,
    count: ExportCount | None = None,
    shown: ShownAt | None = None,
) -> AsyncIterator[str]:
    """The document, in pieces of text. ``count`` (if given) tallies what went out."""
    count = count if count is not None else ExportCount()
    head = json.dumps({"exportedAt": iso(now), "email": email}, separators=(",", ":"))
    yield head[:-1] + ',"sessions":['
    first = True
    async for exported in walk_sessions(store, email, count=count, shown=shown):
        session = exported.session
        summary = session.to_summary().model_dump_json(by_alias=True)
        # Who set the title is stored too: everything stored goes into an export.
        title_source = json.dumps(session.title_source)
        yield (
            ("" if first else ",") + summary[:-1] + f',"titleSource":{title_source},"messages":['
        )
        first = False
        sent = 0
        async for page in exported.messages:
            for message in page:
                yield ("," if sent else "") + await exported_message(exported, message)
                sent += 1
        yield "]}"
    yield "]"
    async for piece in export_shares(store, email):
        yield piece
    async for piece in export_groups(store, email):
        yield piece
    # What the user's model calls cost, per period (shared/usage/): personal data too.
    usage = spent_json(await store.read_usage(email))
    count.complete = True
    yield ',"usage":' + json.dumps(usage, separators=(",", ":")) + ',"complete":true}'


def audit_export(user: str, by: str, export_format: str, count: ExportCount) -> None:
    """The audit line of one export, by the API or an operator: how much went out to whom
    (hashed), and whether it was whole; never the data."""
    audit(
        "export",
        user=user,
        by=by,
        format=export_format,
        sessions=count.sessions,
        messages=count.messages,
        complete=count.complete,
    )
