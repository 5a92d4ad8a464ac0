"""SQLite specifics that the store contract suite does not cover: the file and its schema."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.clock import stored_time
from shared.ids import new_session_id
from shared.models import MessageRecord, SessionRecord
from shared.storage.base import Where
from shared.storage.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteStore, _search_rowid

START = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)


def test_new_file_is_wal_and_at_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "c.db"
    SqliteStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "messages", "schema_version"} <= tables


def test_opening_again_migrates_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SqliteStore(path)
    SqliteStore(path)  # would fail with "table exists" if migrations re-ran
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SqliteStore(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="schema version"):
        SqliteStore(path)


def _version_2_file(path: Path, email: str) -> list[MessageRecord]:
    """A file as version 2 of the code left it: its schema, one active and one archived
    session, written as that code wrote rows (no search index existed yet)."""
    stored: list[MessageRecord] = []
    with closing(sqlite3.connect(path)) as conn:
        for script in MIGRATIONS[:2]:
            conn.executescript(script)
        conn.executescript(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);"
            " INSERT INTO schema_version (version) VALUES (2);"
        )
        for container, text in (("active", "Ünïcode kept Before"), ("archive", "archived words")):
            message = MessageRecord(
                session_id=new_session_id(), seq=1, role="user", content=text, timestamp=START
            )
            session = SessionRecord(
                id=message.session_id,
                email=email,
                title="old",
                preview=text,
                created_at=START,
                updated_at=START,
                message_count=1,
                last_seq=1,
            )
            conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, 0, 'v2', ?)",
                (
                    container,
                    email,
                    session.id,
                    stored_time(START),
                    session.model_dump_json(exclude={"etag", "archived"}),
                ),
            )
            conn.execute(
                "INSERT INTO messages VALUES (?, ?, ?, 1, ?, ?)",
                (container, email, session.id, stored_time(START), message.model_dump_json()),
            )
            stored.append(message)
        conn.commit()
    return stored


def test_upgrading_from_version_2_makes_old_messages_searchable(tmp_path: Path) -> None:
    path, email = tmp_path / "v2.db", "kate@example.com"
    active, archived = _version_2_file(path, email)
    store = SqliteStore(path)

    async def found(phrase: str, where: Where) -> list[tuple[str, list[str]]]:
        matches = await store.search_matches(email, phrase, where=where, hits_per_session=3)
        page = await store.search_page(email, where=where, matches=matches)
        return [(session.id, [hit.text for hit in hits]) for session, hits in page]

    # Words go to the index the upgrade built (migration 5 rebuilt the trigram index of 3 by
    # words), case-insensitively; a piece of a word is no longer found.
    assert asyncio.run(found("ünïcode KEPT", "active")) == [(active.session_id, [active.content])]
    assert asyncio.run(found("WORDS archived", "archive")) == [
        (archived.session_id, [archived.content])
    ]
    assert asyncio.run(found("ived wor", "archive")) == []
    assert asyncio.run(found("archived", "active")) == []  # each row keeps its container
    asyncio.run(store.close())
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_upgrading_from_version_9_folds_accents_and_stems_old_messages(tmp_path: Path) -> None:
    """Migration 12 builds the search index again, folding accents and stemming, from the rows
    already stored (written, and indexed with accents kept, by version 9)."""
    path, email = tmp_path / "v9.db", "lea@example.com"
    message = MessageRecord(
        session_id=new_session_id(),
        seq=1,
        role="user",
        content="Crème brûlée recipes",
        timestamp=START,
    )
    session = SessionRecord(
        id=message.session_id,
        email=email,
        title="old",
        preview=message.content,
        created_at=START,
        updated_at=START,
        message_count=1,
        last_seq=1,
    )
    with closing(sqlite3.connect(path)) as conn:
        conn.create_function("parley_search_rowid", 3, _search_rowid, deterministic=True)
        for script in MIGRATIONS[:9]:
            conn.executescript(script)
        conn.executescript(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);"
            " INSERT INTO schema_version (version) VALUES (9);"
        )
        conn.execute(
            "INSERT INTO sessions (container, email, id, updated_at, etag, body)"
            " VALUES ('active', ?, ?, ?, 'v9', ?)",
            (
                email,
                session.id,
                stored_time(START),
                session.model_dump_json(exclude={"etag", "archived"}),
            ),
        )
        conn.execute(
            "INSERT INTO messages (container, email, session_id, seq, timestamp, body)"
            " VALUES ('active', ?, ?, 1, ?, ?)",
            (email, session.id, stored_time(START), message.model_dump_json()),
        )
        conn.commit()
        # version 9's index keeps accents: "creme" is not there
        assert not conn.execute(
            "SELECT 1 FROM message_search WHERE message_search MATCH 'creme'"
        ).fetchall()
    store = SqliteStore(path)

    async def found(phrase: str) -> list[str]:
        matches = await store.search_matches(email, phrase, where="active", hits_per_session=3)
        return [m.session_id for m in matches]

    assert asyncio.run(found("creme brulee recipe")) == [session.id]
    assert asyncio.run(found("CRÈME")) == [session.id]
    asyncio.run(store.close())
