"""The export in the formats besides JSON, from the same streaming walk (``shared/export/``):

- ``markdown``: a zip (``application/zip``, the standard library's ``zipfile``) holding one
  readable ``.md`` file per conversation: its title, times, and each message with its role,
  time and feedback; and one per group the user belongs to (under ``groups/``), each message
  with its sender;
- ``csv``: one row per message (``sessionId, title, seq, role, timestamp, content, rating,
  version``; a regenerated answer's earlier versions are rows of their own, with the same
  seq and their version number, before the current one, whose ``version`` is their count),
  a group's messages after the conversations' (the group's id and name in the first columns),
  RFC 4180 (the standard library's ``csv``: fields quoted when they hold a comma, a quote or a
  line break, quotes doubled, CRLF between rows), UTF-8 with a byte-order mark so spreadsheet
  programs read it as UTF-8.

Memory stays flat: each is written into a small buffer that is handed on and emptied after
every page of messages; the zip writes each file as it goes (no seeking: sizes and checksums go
in data descriptors), and keeps only its directory (one small entry per conversation) until the
end. A failure part-way ends the stream without the zip's directory (the file does not open) or
mid-CSV (the HTTP response is cut off, never finished: ``docs/http.md``, "Export").
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.answers import ShownAt
from shared.clock import iso
from shared.errors import InvalidRequest
from shared.export import ExportCount, export_document, walk_sessions
from shared.groups.models import GroupMessageRecord, GroupRecord
from shared.groups.service import group_pages, member_groups
from shared.models import MessageRecord, SessionRecord
from shared.sharing import SharingStore

ExportFormat = Literal["json", "markdown", "csv"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("json", "markdown", "csv")
CSV_COLUMNS = ("sessionId", "title", "seq", "role", "timestamp", "content", "rating", "version")
BOM = "\ufeff"
SLUG_MAX_CHARS = 40


@dataclass(frozen=True)
class FormatInfo:
    media_type: str
    extension: str


FORMATS: dict[ExportFormat, FormatInfo] = {
    "json": FormatInfo("application/json; charset=utf-8", "json"),
    "markdown": FormatInfo("application/zip", "zip"),
    "csv": FormatInfo("text/csv; charset=utf-8", "csv"),
}


def parse_format(raw: str | None) -> ExportFormat:
    """The ``format`` a caller asked for (absent: json); anything else is 400."""
    if raw is None:
        return "json"
    for known in EXPORT_FORMATS:
        if raw == known:
            return known
    raise InvalidRequest(f"format must be one of {', '.join(EXPORT_FORMATS)}.")


def export_stream(
    store: SharingStore,
    email: str,
    export_format: ExportFormat,
    *,
    now: datetime,
    count: ExportCount,
    shown: ShownAt | None = None,
) -> AsyncIterator[bytes]:
    """The export in ``export_format``, in pieces of bytes; ``shown``: how answers are shown
    (a dead "streaming" one as "interrupted"), as every read shows them."""
    if export_format == "markdown":
        return markdown_zip(store, email, now=now, count=count, shown=shown)
    if export_format == "csv":
        return csv_rows(store, email, count=count, shown=shown)
    return _encoded(export_document(store, email, now=now, count=count, shown=shown))


async def _encoded(pieces: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for piece in pieces:
        yield piece.encode()


# ---- CSV ---------------------------------------------------------------------------------------


async def csv_rows(
    store: SharingStore, email: str, *, count: ExportCount, shown: ShownAt | None = None
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180: CRLF, minimal quoting
    buffer.write(BOM)
    writer.writerow(CSV_COLUMNS)
    async for exported in walk_sessions(store, email, count=count, shown=shown):
        session = exported.session
        async for page in exported.messages:
            for message in page:
                earlier = await exported.earlier(message)
                for number, one in enumerate([*earlier, message], start=1):
                    writer.writerow(
                        (
                            session.id,
                            session.title,
                            one.seq,
                            one.role,
                            iso(one.timestamp),
                            one.content,
                            one.feedback.rating if one.feedback else "",
                            number if message.versions else "",
                        )
                    )
            yield _drain(buffer).encode()
    # Then each group the user belongs to: its id and name stand in the first two columns.
    for group in await member_groups(store, email):
        async for group_page in group_pages(store, group.id):
            for said in group_page:
                writer.writerow(
                    (
                        group.id,
                        group.name,
                        said.seq,
                        said.role,
                        iso(said.timestamp),
                        said.content,
                        "",
                        "",
                    )
                )
            yield _drain(buffer).encode()
    count.complete = True
    rest = _drain(buffer)
    if rest:
        yield rest.encode()


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


# ---- Markdown in a zip ---------------------------------------------------------------------------


class _Sink(io.RawIOBase):
    """Where the zip writes: bytes collected until the next piece is handed on. Not seekable,
    so ``zipfile`` streams (data descriptors after each file)."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pending += data
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        data = bytes(self.pending)
        self.pending.clear()
        return data


async def markdown_zip(
    store: SharingStore,
    email: str,
    *,
    now: datetime,
    count: ExportCount,
    shown: ShownAt | None = None,
) -> AsyncIterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        index = 0
        async for exported in walk_sessions(store, email, count=count, shown=shown):
            index += 1
            session = exported.session
            info = zipfile.ZipInfo(markdown_name(index, session), _zip_time(session.updated_at))
            info.compress_type = zipfile.ZIP_DEFLATED
            # force_zip64: the size is unknown up front and a conversation may pass 2 GiB.
            with archive.open(info, "w", force_zip64=True) as file:
                file.write(markdown_head(session).encode())
                async for page in exported.messages:
                    for message in page:
                        file.write(markdown_message(message).encode())
                        for number, version in enumerate(await exported.earlier(message), 1):
                            file.write(markdown_version(number, version).encode())
                    yield sink.take()
            yield sink.take()
        # Then one file per group the user belongs to, under groups/.
        for group in await member_groups(store, email):
            index += 1
            name = f"groups/{index:04d}-{_slug(group.name)}-{group.id}.md"
            info = zipfile.ZipInfo(name, _zip_time(group.updated_at))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as file:
                file.write(group_markdown_head(group).encode())
                async for group_page in group_pages(store, group.id):
                    for said in group_page:
                        file.write(group_markdown_message(said).encode())
                    yield sink.take()
            yield sink.take()
        count.complete = True
    yield sink.take()  # the directory: the zip opens only once it is there


def markdown_name(index: int, session: SessionRecord) -> str:
    """A file name every system accepts, unique by the session id, in export order."""
    return f"{index:04d}-{_slug(session.title)}-{session.id}.md"


def _slug(title: str) -> str:
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", folded).strip("-").lower()[:SLUG_MAX_CHARS].strip("-")
    return slug or "untitled"


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    # Zip stores local-less times from 1980 on.
    year = max(moment.year, 1980)
    return (year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def markdown_head(session: SessionRecord) -> str:
    lines = [
        f"# {_one_line(session.title)}",
        "",
        f"- Session: `{session.id}`",
        f"- Created: {iso(session.created_at)}",
        f"- Last activity: {iso(session.updated_at)}",
        f"- Messages: {session.message_count}",
    ]
    if session.pinned:
        lines.append("- Pinned")
    if session.archived:
        lines.append("- Archived")
    return "\n".join(lines) + "\n"


def markdown_message(message: MessageRecord) -> str:
    role = "User" if message.role == "user" else "Assistant"
    parts = ["", "---", "", f"### {role} · {iso(message.timestamp)}", "", message.content, ""]
    if message.feedback is not None:
        rating = "👍 up" if message.feedback.rating == "up" else "👎 down"
        feedback = f"> Feedback: {rating}"
        if message.feedback.comment:
            feedback += f": {_one_line(message.feedback.comment)}"
        parts += [feedback, ""]
    return "\n".join(parts)


def markdown_version(number: int, version: MessageRecord) -> str:
    """An earlier version of the answer above it, quoted."""
    quoted = "\n".join("> " + line for line in version.content.splitlines())
    parts = ["", f"> *Earlier version {number} · {iso(version.timestamp)}*", ">", quoted, ""]
    if version.feedback is not None:
        parts.insert(-1, f"> Feedback: {version.feedback.rating}")
    return "\n".join(parts)


def group_markdown_head(group: GroupRecord) -> str:
    lines = [
        f"# {_one_line(group.name)}",
        "",
        f"- Group: `{group.id}`",
        f"- Created: {iso(group.created_at)}",
        f"- Last activity: {iso(group.updated_at)}",
        f"- Messages: {group.message_count}",
        "- Members: "
        + ", ".join(f"{_one_line(m.name)} <{m.email}> ({m.role})" for m in group.members),
    ]
    return "\n".join(lines) + "\n"


def group_markdown_message(message: GroupMessageRecord) -> str:
    if message.removed:
        who = "A former member (removed)"
    elif message.role == "assistant":
        who = "Assistant"
    else:
        who = f"{_one_line(message.sender_name or '')} <{message.sender_email}>"
    return "\n".join(
        [
            "",
            "---",
            "",
            f"### {who} · #{message.seq} · {iso(message.timestamp)}",
            "",
            message.content,
            "",
        ]
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())
