"""The export as Markdown (a zip) and CSV, on every store (``openapi.yaml``: GET /api/export
``format``; ``shared/export_formats.py``), read back by readers that share nothing with the
writers: a small RFC 4180 parser written here, and Info-ZIP's ``unzip`` next to ``zipfile``.
And memory: 20,000 messages export in either format with a flat peak (SQLite)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import tracemalloc
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from shared.export_formats import CSV_COLUMNS, ExportFormat
from shared.models import FeedbackRequest, MessageRecord, SessionRecord
from shared.storage.base import Store
from shared.storage.sqlite import SqliteStore
from tests.support.conversations import Conversations
from tests.support.scenarios import START, chat_request, make_service, seed_session
from tests.support.stores import Runner
from tools.local.seeding import append_in_batches

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
EXPORTED_AT = START + timedelta(days=1)
TRICKY = 'Commas, "quotes", and\nline breaks\r\nand ünïcödé 🎉 and =1+1'


async def exported(svc: Conversations, email: str, export_format: ExportFormat) -> bytes:
    return b"".join([p async for p in svc.export_as(email, export_format, now=EXPORTED_AT)])


def parse_rfc4180(text: str) -> list[list[str]]:
    """Records of RFC 4180 text, by the RFC's grammar: a field is quoted (quotes doubled inside,
    any character allowed) or plain (no comma, quote or line break); records end in CRLF."""
    records: list[list[str]] = []
    record: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            field, i = "", i + 1
            while True:
                end = text.index('"', i)
                field += text[i:end]
                if text.startswith('""', end):
                    field, i = field + '"', end + 2
                else:
                    i = end + 1
                    break
        else:
            end = i
            while end < len(text) and text[end] not in ",\r\n":
                assert text[end] != '"', "a quote in a plain field is not RFC 4180"
                end += 1
            field, i = text[i:end], end
        record.append(field)
        if text.startswith(",", i):
            i += 1
        elif text.startswith("\r\n", i):
            records.append(record)
            record, i = [], i + 2
        else:
            raise AssertionError(f"expected a comma or CRLF at {i}: {text[i : i + 10]!r}")
    assert not record, "the last record must end in CRLF"
    return records


def test_csv_is_rfc_4180_with_a_bom_one_row_per_message(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        turn = await svc.chat(alice, chat_request(TRICKY))
        await svc.set_feedback(
            alice,
            turn.session_id,
            turn.assistant.id,
            FeedbackRequest.model_validate({"rating": "down", "comment": "no"}),
        )
        await svc.rename(alice, turn.session_id, 'A "quoted", title')
        archived = await seed_session(store, alice, ["old question", "old answer"], archived=True)
        await seed_session(store, bob, ["not alice's"])
        data = await exported(svc, alice, "csv")
        assert data.startswith(b"\xef\xbb\xbf")  # the byte-order mark, then UTF-8
        rows = parse_rfc4180(data[3:].decode("utf-8"))
        assert tuple(rows[0]) == CSV_COLUMNS
        by_session: dict[str, list[list[str]]] = {}
        for row in rows[1:]:
            assert len(row) == len(CSV_COLUMNS)
            by_session.setdefault(row[0], []).append(row)
        assert set(by_session) == {turn.session_id, archived.id}
        live = by_session[turn.session_id]
        assert [r[1:5] for r in live] == [
            ['A "quoted", title', "1", "user", live[0][4]],
            ['A "quoted", title', "2", "assistant", live[1][4]],
        ]
        assert [r[5] for r in live] == [TRICKY, f"echo[0]:\n{TRICKY}"]
        assert [r[6] for r in live] == ["", "down"]
        assert all(r[4].endswith("Z") for r in live)
        assert [(r[2], r[5]) for r in by_session[archived.id]] == [
            ("1", "old question"),
            ("2", "old answer"),
        ]
        assert "not alice's" not in data.decode("utf-8")

    run(scenario)


def test_markdown_is_a_zip_of_one_readable_file_per_conversation(
    run: Runner[None], emails: tuple[str, str], tmp_path: Path
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        turn = await svc.chat(alice, chat_request(TRICKY))
        await svc.set_feedback(
            alice,
            turn.session_id,
            turn.assistant.id,
            FeedbackRequest.model_validate({"rating": "up", "comment": "spot on"}),
        )
        await svc.update_session(alice, turn.session_id, title="Ünïcode / slashes", pinned=True)
        archived = await seed_session(store, alice, ["old question", "old answer"], archived=True)
        data = await exported(svc, alice, "markdown")
        path = tmp_path / "export.zip"
        path.write_bytes(data)
        # Info-ZIP's own check of every file's CRC, and its listing.
        tested = await asyncio.to_thread(
            subprocess.run, ["unzip", "-t", str(path)], capture_output=True, text=True
        )
        assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None
            names = archive.namelist()
            assert len(names) == 2 and all(n.endswith(".md") and "/" not in n for n in names)
            texts = {n: archive.read(n).decode("utf-8") for n in names}
        [live_name] = [n for n in names if turn.session_id in n]
        assert live_name.startswith("0") and "unicode-slashes" in live_name
        live = texts[live_name]
        assert live.startswith("# Ünïcode / slashes\n")
        assert "- Pinned" in live and "- Archived" not in live
        assert "- Created: 2031-06-01T09:00:00.000Z" in live
        assert live.index("### User ·") < live.index(TRICKY) < live.index("### Assistant ·")
        assert "> Feedback: 👍 up: spot on" in live
        [old_name] = [n for n in names if archived.id in n]
        old = texts[old_name]
        assert "- Archived" in old and "old question" in old and "old answer" in old

    run(scenario)


def test_an_empty_history_exports_a_header_and_an_empty_zip(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        assert (
            await exported(svc, alice, "csv")
            == b"\xef\xbb\xbf" + ",".join(CSV_COLUMNS).encode() + b"\r\n"
        )
        with zipfile.ZipFile(io.BytesIO(await exported(svc, alice, "markdown"))) as archive:
            assert archive.namelist() == []

    run(scenario)


# ---- memory ------------------------------------------------------------------------------------

VOLUME_SESSIONS, VOLUME_MESSAGES = 100, 200  # 20,000 messages
MESSAGE_CHARS = 500  # ~10 MB of text in all
PEAK_LIMIT_BYTES = 3 * 1024 * 1024


@pytest.mark.volume
@pytest.mark.parametrize("export_format", ["json", "markdown", "csv"])
def test_20000_messages_export_with_flat_memory(
    tmp_path: Path, export_format: ExportFormat
) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "volume.db")
        email = "volume@example.com"
        for s in range(VOLUME_SESSIONS):
            session_id = f"s_{s:032x}"
            at = START + timedelta(minutes=s)
            records = [
                MessageRecord(
                    session_id=session_id,
                    seq=seq,
                    role="user" if seq % 2 else "assistant",
                    content=(f"{s}:{seq} " * MESSAGE_CHARS)[:MESSAGE_CHARS],
                    timestamp=at + timedelta(milliseconds=seq),
                )
                for seq in range(1, VOLUME_MESSAGES + 1)
            ]
            session = SessionRecord(
                id=session_id, email=email, title=f"t{s}", preview="p", created_at=at, updated_at=at
            )
            await append_in_batches(store, session, records, batch=100)
        svc = make_service(store)
        total = 0
        tracemalloc.start()
        try:
            async for piece in svc.export_as(email, export_format, now=EXPORTED_AT):
                total += len(piece)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await store.close()
        data_bytes = VOLUME_SESSIONS * VOLUME_MESSAGES * MESSAGE_CHARS
        print(f"{export_format}: {total} bytes out, tracemalloc peak {peak} bytes")
        if export_format != "markdown":  # the zip compresses the repeated text
            assert total > data_bytes
        assert peak < PEAK_LIMIT_BYTES, peak

    asyncio.run(scenario())
