"""Importing conversations: a ChatGPT data export or a Parley export, for ``POST /api/import``
and for the operators' command (``import`` itself is a Python keyword):

    python -m shared.importer --email alice@example.com FILE

Accepted (``docs/http.md``, "Import"):

- ChatGPT's data export: its ``conversations.json`` (a list of conversations, each a tree of
  messages in ``mapping`` with the branch last shown in ``current_node``), or the export's zip
  holding it. Of each tree, the current branch is imported (``current_node`` up through the
  parents, then in order), with its original times; system and tool messages (and hidden,
  empty ones) are left out and counted; an attachment becomes a placeholder line.
- A Parley export (``GET /api/export``, JSON, ``"complete": true``): sessions with their titles,
  times, pins and messages with their feedback.

Each conversation becomes a session whose id is derived from the user and the conversation's
source id (``import_session_id``), so importing the same file again imports nothing new
(``skipped``). Each succeeds or fails on its own; a store writes each one whole or not at all
(``ConversationStore.import_session``). A file that cannot be read at all is 400 with what is
wrong. The file is decoded once, and each conversation's part of the decoded tree is let go as
soon as it has been converted, so the tree is never held twice.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from shared.audit import audit
from shared.clock import parse_iso
from shared.errors import InvalidRequest
from shared.ids import hashed_session_id
from shared.models import ApiModel, Feedback, MessageRecord, Role, SessionRecord, TitleSource
from shared.storage.base import ConversationStore
from shared.titles import TITLE_MAX_CHARS, make_preview

CHATGPT_FILE = "conversations.json"
UNTITLED = "Imported conversation"
ZIP_MEDIA_TYPE = "application/zip"
JSON_MEDIA_TYPE = "application/json"
Source = Literal["chatgpt", "parley"]


class ImportFailure(ApiModel):
    title: str
    reason: str


class ImportReport(ApiModel):
    """What an import did: ``imported`` new sessions (their ids in ``sessions``), ``skipped``
    ones imported before, ``failed`` ones with why, and ``leftOut`` system and tool messages."""

    imported: int
    skipped: int
    failed: list[ImportFailure]
    sessions: list[str]
    left_out: int = Field(alias="leftOut")


@dataclass
class Conversation:
    """One conversation as read from a file, before it is a session of anyone's."""

    source_id: str
    title: str
    created_at: datetime
    messages: list[tuple[Role, str, datetime, Feedback | None]] = field(default_factory=list)
    title_source: TitleSource = "user"
    pinned: bool = False
    updated_at: datetime | None = None


class BadConversation(ValueError):
    """One conversation cannot be imported (the others still are)."""


def import_session_id(email: str, source: Source, source_id: str) -> str:
    """The session id of an imported conversation: the same for the same user and source
    conversation, every time (re-imports find it), unguessable like any other id."""
    return hashed_session_id(email, f"import:{source}", source_id)


# ---- reading a file ------------------------------------------------------------------------


def decode_file(data: bytes | bytearray, media_type: str) -> tuple[Source, list[Any]]:
    """The file's conversations, still as decoded JSON (converted one at a time later). 400
    with what is wrong for anything that is not one of the accepted files."""
    if media_type == ZIP_MEDIA_TYPE or data[:4] == b"PK\x03\x04":
        data = _from_zip(data)
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("The file is not valid JSON.") from None
    del data
    if isinstance(decoded, list):
        return "chatgpt", decoded
    if isinstance(decoded, dict) and isinstance(decoded.get("sessions"), list):
        if decoded.get("complete") is not True:
            raise InvalidRequest(
                'This Parley export is incomplete (it lacks "complete": true); export again.'
            )
        sessions: list[Any] = decoded["sessions"]
        return "parley", sessions
    raise InvalidRequest(
        "The file is neither a ChatGPT export (conversations.json: a list of conversations)"
        ' nor a Parley export (an object with "sessions").'
    )


def _from_zip(data: bytes | bytearray) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if Path(n).name == CHATGPT_FILE]
            if not names:
                raise InvalidRequest(f"The zip holds no {CHATGPT_FILE}.")
            return archive.read(min(names, key=len))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError):
        raise InvalidRequest("The file is not a readable zip.") from None


def _title_of(item: Any) -> str:
    title = item.get("title") if isinstance(item, dict) else None
    return _clean_title(title) if isinstance(title, str) else UNTITLED


def _clean_title(title: str) -> str:
    text = " ".join(title.split())[:TITLE_MAX_CHARS]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return UNTITLED
    return text or UNTITLED


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


# ---- ChatGPT ---------------------------------------------------------------------------------


@dataclass
class LeftOut:
    count: int = 0


def from_chatgpt(item: Any, left_out: LeftOut | None = None) -> Conversation:
    if not isinstance(item, dict):
        raise BadConversation("not a conversation object")
    mapping = item.get("mapping")
    current = item.get("current_node")
    source_id = item.get("conversation_id") or item.get("id")
    if not isinstance(mapping, dict) or not isinstance(current, str):
        raise BadConversation("no message tree (mapping and current_node)")
    if not isinstance(source_id, str) or not source_id:
        raise BadConversation("no conversation id")
    # The current branch: from the node last shown up to the root, then in order.
    branch: list[dict[str, Any]] = []
    seen: set[str] = set()
    node_id: Any = current
    while isinstance(node_id, str):
        if node_id in seen:
            raise BadConversation("the message tree has a cycle")
        seen.add(node_id)
        node = mapping.get(node_id)
        if not isinstance(node, dict):
            raise BadConversation(f"the message tree names a missing node {node_id[:40]!r}")
        branch.append(node)
        node_id = node.get("parent")
    branch.reverse()
    created = _epoch(item.get("create_time")) or datetime.now(UTC)
    conversation = Conversation(
        source_id=source_id, title=_title_of(item), created_at=created, title_source="user"
    )
    counted = left_out if left_out is not None else LeftOut()
    last_time = created
    for node in branch:
        message = node.get("message")
        if not isinstance(message, dict):
            continue  # the tree's root holds none
        author = message.get("author")
        role = author.get("role") if isinstance(author, dict) else None
        text = _chatgpt_text(message.get("content"))
        metadata = message.get("metadata")
        hidden = isinstance(metadata, dict) and metadata.get("is_visually_hidden_from_conversation")
        if role not in ("user", "assistant") or hidden:
            counted.count += 1
            continue
        if not text.strip():
            continue
        _check_utf8(text)
        when = _epoch(message.get("create_time")) or last_time
        last_time = max(last_time, when)
        conversation.messages.append((role, text, when, None))
    if not conversation.messages:
        raise BadConversation("no user or assistant messages on its current branch")
    conversation.updated_at = _epoch(item.get("update_time")) or last_time
    return conversation


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadConversation("a message is not valid Unicode (a lone surrogate)") from None


def _chatgpt_text(content: Any) -> str:
    """The text of a message's content: its text parts, and a placeholder per attachment."""
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts")
    if isinstance(parts, list):
        pieces: list[str] = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict):
                kind = str(part.get("content_type") or "file").removesuffix("_asset_pointer")
                pieces.append(f"[attachment: {kind}]")
        return "\n".join(p for p in pieces if p)
    text = content.get("text")
    return text if isinstance(text, str) else ""


# ---- Parley --------------------------------------------------------------------------------


def from_parley(item: Any) -> Conversation:
    if not isinstance(item, dict) or not isinstance(item.get("sessionId"), str):
        raise BadConversation("not a session of a Parley export")
    try:
        conversation = Conversation(
            source_id=item["sessionId"],
            title=_title_of(item),
            created_at=parse_iso(item["createdAt"]),
            updated_at=parse_iso(item["updatedAt"]),
            title_source=item.get("titleSource", "user"),
            pinned=item.get("pinned") is True,
        )
        for message in item["messages"]:
            raw = message.get("feedback")
            feedback = (
                Feedback(
                    rating=raw["rating"],
                    comment=raw.get("comment"),
                    updated_at=parse_iso(raw["updatedAt"]),
                )
                if raw
                else None
            )
            role = message["role"]
            if role not in ("user", "assistant") or not isinstance(message["content"], str):
                raise BadConversation("a message is neither the user's nor the assistant's")
            message["content"].encode("utf-8")  # a lone surrogate: UnicodeEncodeError
            conversation.messages.append(
                (role, message["content"], parse_iso(message["timestamp"]), feedback)
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadConversation(f"a field is missing or malformed ({type(exc).__name__})") from None
    if conversation.title_source not in ("first-message", "model", "user"):
        conversation.title_source = "user"
    if not conversation.messages:
        raise BadConversation("no messages")
    return conversation


# ---- writing ---------------------------------------------------------------------------------


def records_of(
    email: str, source: Source, conversation: Conversation
) -> tuple[SessionRecord, list[MessageRecord]]:
    session_id = import_session_id(email, source, conversation.source_id)
    messages = [
        MessageRecord(
            session_id=session_id,
            seq=seq,
            role=role,
            content=content,
            timestamp=when,
            feedback=feedback,
        )
        for seq, (role, content, when, feedback) in enumerate(conversation.messages, start=1)
    ]
    first_user = next((m.content for m in messages if m.role == "user"), "")
    session = SessionRecord(
        id=session_id,
        email=email,
        title=conversation.title,
        title_source=conversation.title_source,
        preview=make_preview(first_user),
        created_at=conversation.created_at,
        updated_at=conversation.updated_at or messages[-1].timestamp,
        message_count=len(messages),
        last_seq=len(messages),
        pinned=conversation.pinned,
    )
    return session, messages


async def import_file(
    store: ConversationStore, email: str, data: bytes | bytearray, media_type: str
) -> ImportReport:
    """Import every conversation of the file, each on its own, and report."""
    source, raw = decode_file(data, media_type)
    report = ImportReport(imported=0, skipped=0, failed=[], sessions=[], left_out=0)
    left_out = LeftOut()
    for index in range(len(raw)):
        item, raw[index] = raw[index], None  # let the decoded tree go as we read it
        title = _title_of(item)
        try:
            conversation = (
                from_chatgpt(item, left_out) if source == "chatgpt" else from_parley(item)
            )
        except BadConversation as exc:
            report.failed.append(ImportFailure(title=title, reason=str(exc)))
            continue
        del item
        session, messages = records_of(email, source, conversation)
        if await store.import_session(session, messages):
            report.imported += 1
            report.sessions.append(session.id)
        else:
            report.skipped += 1
    report.left_out = left_out.count
    return report


def audit_import(user: str, by: str, report: ImportReport | None) -> None:
    """The audit line of one import, by the API or an operator: counts only, and whether it
    completed (``report`` None: it failed)."""
    audit(
        "import",
        user=user,
        by=by,
        imported=report.imported if report else None,
        skipped=report.skipped if report else None,
        failed=len(report.failed) if report else None,
        complete=report is not None,
    )
