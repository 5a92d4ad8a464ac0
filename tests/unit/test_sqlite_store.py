"""SQLite specifics that the store contract suite does not cover: the file and its schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared.storage.sqlite import SCHEMA_VERSION, SqliteStore


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
