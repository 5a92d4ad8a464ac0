"""The embedded store: one SQLite file (WAL), with the same records as the Cosmos data model.

Tables mirror the Cosmos containers: ``sessions``, ``messages`` and ``requests`` rows are each
tagged with their container (``active`` or ``archive``) and keyed by the caller's email first,
as Cosmos partitions by it. The session row's ``etag`` plays Cosmos' ``_etag``.

Every write, including a whole move between containers, a delete and an expiry, is one
``BEGIN IMMEDIATE`` transaction: SQLite can make them atomic, so nothing is ever half-moved or
half-deleted here and several processes can share the file (``docs/design.md``, "SQLite").

sqlite3 blocks, so every call runs in a worker thread with a connection of its own thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from shared.auth.claims import Account
from shared.clock import parse_iso, stored_time
from shared.errors import (
    ConcurrencyConflict,
    DuplicateRequest,
    InvalidRequest,
    StorageUnavailable,
)
from shared.groups.models import GroupMessageRecord, GroupRecord, GroupRequestRecord
from shared.models import (
    ContextMessage,
    Feedback,
    MessageRecord,
    RequestRecord,
    SessionRecord,
    ShareRecord,
    ShareView,
    ViewedShare,
)
from shared.search import SEARCH_SCAN_LIMIT, holds_all, relevance, words_of
from shared.storage.base import (
    MAX_SHARE_VIEWS,
    WHERES,
    AnswerFacts,
    ArchiveRun,
    Binding,
    Checkpoint,
    MatchedSession,
    MoveOutcome,
    Presence,
    RehomeOutcome,
    SearchHit,
    SessionRef,
    Spent,
    TurnView,
    Unfinished,
    UsageDay,
    Where,
)
from shared.storage.keyset import decode_position, encode_position

T = TypeVar("T")
log = logging.getLogger("parley.storage.sqlite")

# Each entry migrates the schema from version i to i + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    # 1: sessions and messages, tagged with their container.
    """
    CREATE TABLE sessions (
        container  TEXT    NOT NULL,
        email      TEXT    NOT NULL,
        id         TEXT    NOT NULL,
        updated_at TEXT    NOT NULL,
        deleting   INTEGER NOT NULL DEFAULT 0,
        etag       TEXT    NOT NULL,
        body       TEXT    NOT NULL,
        PRIMARY KEY (container, email, id)
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions (container, email, updated_at DESC, id DESC);
    CREATE INDEX sessions_by_age ON sessions (container, updated_at);
    CREATE TABLE messages (
        container  TEXT    NOT NULL,
        email      TEXT    NOT NULL,
        session_id TEXT    NOT NULL,
        seq        INTEGER NOT NULL,
        timestamp  TEXT    NOT NULL,
        body       TEXT    NOT NULL,
        PRIMARY KEY (container, email, session_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX messages_by_age ON messages (container, timestamp);
    """,
    # 2: clientMessageIds get rows of their own (kept for the session's life, not the newest
    # 100 on the session row); the context window is read from the messages, not the session
    # row; deletes interrupted under version 1 are finished; leftovers of version 1's
    # archival moves (messages whose session row went to the other container, where an equal
    # copy is) are removed. Moves and deletes are single transactions from now on.
    """
    CREATE TABLE requests (
        container         TEXT    NOT NULL,
        email             TEXT    NOT NULL,
        session_id        TEXT    NOT NULL,
        client_message_id TEXT    NOT NULL,
        user_seq          INTEGER NOT NULL,
        assistant_seq     INTEGER,
        PRIMARY KEY (container, email, session_id, client_message_id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO requests
        SELECT s.container, s.email, s.id, r.key,
               json_extract(r.value, '$.user_seq'), json_extract(r.value, '$.assistant_seq')
        FROM sessions s, json_each(s.body, '$.client_requests') r
        WHERE s.deleting = 0;
    UPDATE sessions SET body = json_remove(body, '$.context', '$.client_requests');
    DELETE FROM messages WHERE EXISTS (
        SELECT 1 FROM sessions s WHERE s.deleting = 1 AND s.container = messages.container
        AND s.email = messages.email AND s.id = messages.session_id);
    DELETE FROM sessions WHERE deleting = 1;
    DELETE FROM messages WHERE NOT EXISTS (
        SELECT 1 FROM sessions s WHERE s.container = messages.container
        AND s.email = messages.email AND s.id = messages.session_id)
      AND EXISTS (
        SELECT 1 FROM messages o WHERE o.container != messages.container
        AND o.email = messages.email AND o.session_id = messages.session_id
        AND o.seq = messages.seq AND o.body = messages.body);
    DROP INDEX messages_by_age;
    """,
    # 3: full-text search (a trigram index: any phrase of three or more characters, in any
    # script, case-insensitively), kept in step with every write, move and delete by triggers
    # and built here for what is stored already; and an index for a user's sessions across
    # both containers (exports).
    """
    CREATE VIRTUAL TABLE message_search USING fts5(
        text, container UNINDEXED, email UNINDEXED, session_id UNINDEXED, seq UNINDEXED,
        tokenize = 'trigram'
    );
    INSERT INTO message_search (rowid, text, container, email, session_id, seq)
        SELECT parley_search_rowid(email, session_id, seq), json_extract(body, '$.content'),
               container, email, session_id, seq
        FROM messages;
    CREATE TRIGGER message_search_add AFTER INSERT ON messages BEGIN
        INSERT INTO message_search (rowid, text, container, email, session_id, seq)
        VALUES (parley_search_rowid(new.email, new.session_id, new.seq),
                json_extract(new.body, '$.content'), new.container, new.email,
                new.session_id, new.seq);
    END;
    CREATE TRIGGER message_search_remove AFTER DELETE ON messages BEGIN
        DELETE FROM message_search
        WHERE rowid = parley_search_rowid(old.email, old.session_id, old.seq);
    END;
    CREATE TRIGGER message_search_move AFTER UPDATE OF container ON messages BEGIN
        UPDATE message_search SET container = new.container
        WHERE rowid = parley_search_rowid(new.email, new.session_id, new.seq);
    END;
    CREATE INDEX sessions_of_user ON sessions (email, updated_at, id);
    """,
    # 4: each address bound to the account that first used it (shared.identity): the primary
    # key makes the first writer win; nothing is bound for data stored before.
    """
    CREATE TABLE identities (
        email     TEXT NOT NULL PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        object_id TEXT NOT NULL,
        bound_at  TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 5: shares (shared/sharing.py): the snapshot, its messages, its bounded view log (a ring
    # of MAX_SHARE_VIEWS slots) and, per viewer, the shares they viewed.
    """
    CREATE TABLE shares (
        id         TEXT    NOT NULL PRIMARY KEY,
        owner      TEXT    NOT NULL,
        session_id TEXT    NOT NULL,
        created_at TEXT    NOT NULL,
        expires_at TEXT    NOT NULL,
        views      INTEGER NOT NULL DEFAULT 0,
        body       TEXT    NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX shares_of_owner ON shares (owner, created_at, id);
    CREATE INDEX shares_by_expiry ON shares (expires_at);
    CREATE TABLE share_messages (
        share_id TEXT    NOT NULL,
        seq      INTEGER NOT NULL,
        body     TEXT    NOT NULL,
        PRIMARY KEY (share_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE share_views (
        share_id  TEXT    NOT NULL,
        slot      INTEGER NOT NULL,
        email     TEXT    NOT NULL,
        viewed_at TEXT    NOT NULL,
        PRIMARY KEY (share_id, slot)
    ) WITHOUT ROWID;
    CREATE INDEX share_views_by_viewer ON share_views (email);
    CREATE TABLE viewed_shares (
        email     TEXT NOT NULL,
        share_id  TEXT NOT NULL,
        owner     TEXT NOT NULL,
        title     TEXT NOT NULL,
        viewed_at TEXT NOT NULL,
        PRIMARY KEY (email, share_id)
    ) WITHOUT ROWID;
    """,
    # 6: what each user's model calls cost, per UTC day and month (shared/usage/): one row
    # per user and period, incremented in place.
    """
    CREATE TABLE usage (
        email             TEXT    NOT NULL,
        period            TEXT    NOT NULL,
        prompt_tokens     INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens     INTEGER NOT NULL DEFAULT 0,
        turns             INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (email, period)
    ) WITHOUT ROWID;
    """,
    # 7: pinned sessions: listed first (one indexed query, pinned then newest first), never
    # offered to the archival scans. Existing rows are unpinned.
    """
    ALTER TABLE sessions ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX sessions_pinned_first
        ON sessions (container, email, pinned DESC, updated_at DESC, id DESC);
    """,
    # 8: the search index by words, as Cosmos DB's full-text index matches (shared/search.py):
    # ``unicode61`` splits text into runs of letters and digits and folds case, keeping accents
    # (``remove_diacritics 0``), rather than trigrams (which found substrings). The old index is
    # dropped and this one built from what is stored; the triggers are the same.
    """
    DROP TRIGGER message_search_add;
    DROP TRIGGER message_search_remove;
    DROP TRIGGER message_search_move;
    DROP TABLE message_search;
    CREATE VIRTUAL TABLE message_search USING fts5(
        text, container UNINDEXED, email UNINDEXED, session_id UNINDEXED, seq UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 0'
    );
    INSERT INTO message_search (rowid, text, container, email, session_id, seq)
        SELECT parley_search_rowid(email, session_id, seq), json_extract(body, '$.content'),
               container, email, session_id, seq
        FROM messages;
    CREATE TRIGGER message_search_add AFTER INSERT ON messages BEGIN
        INSERT INTO message_search (rowid, text, container, email, session_id, seq)
        VALUES (parley_search_rowid(new.email, new.session_id, new.seq),
                json_extract(new.body, '$.content'), new.container, new.email,
                new.session_id, new.seq);
    END;
    CREATE TRIGGER message_search_remove AFTER DELETE ON messages BEGIN
        DELETE FROM message_search
        WHERE rowid = parley_search_rowid(old.email, old.session_id, old.seq);
    END;
    CREATE TRIGGER message_search_move AFTER UPDATE OF container ON messages BEGIN
        UPDATE message_search SET container = new.container
        WHERE rowid = parley_search_rowid(new.email, new.session_id, new.seq);
    END;
    """,
    # 9: one row per archival pass, for the operators' report (shared/report/): counts and a
    # time, no user, so no user's list, export or erasure ever reads this table.
    """
    CREATE TABLE archive_runs (
        run_id TEXT PRIMARY KEY,
        at     TEXT NOT NULL,
        moved  INTEGER NOT NULL,
        failed INTEGER NOT NULL
    );
    CREATE INDEX archive_runs_by_time ON archive_runs (at, run_id);
    """,
    # 10: the earlier versions of regenerated answers, beside their session's rows (tagged
    # with its container, moved and deleted with it); a turn never reads them.
    """
    CREATE TABLE message_versions (
        container  TEXT    NOT NULL,
        email      TEXT    NOT NULL,
        session_id TEXT    NOT NULL,
        seq        INTEGER NOT NULL,
        version    INTEGER NOT NULL,
        body       TEXT    NOT NULL,
        PRIMARY KEY (container, email, session_id, seq, version)
    ) WITHOUT ROWID;
    """,
    # 11: group conversations (shared/groups): the group row (its members and counters, with
    # an etag as the session row has), its messages (gapless seq per group, the sender kept
    # in a column for erasure), its clientMessageIds, and each member's index of their groups.
    """
    CREATE TABLE groups (
        id   TEXT NOT NULL PRIMARY KEY,
        etag TEXT NOT NULL,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE group_messages (
        group_id TEXT    NOT NULL,
        seq      INTEGER NOT NULL,
        sender   TEXT,
        body     TEXT    NOT NULL,
        PRIMARY KEY (group_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX group_messages_by_sender ON group_messages (group_id, sender, seq);
    CREATE TABLE group_requests (
        group_id TEXT NOT NULL,
        key      TEXT NOT NULL,
        body     TEXT NOT NULL,
        PRIMARY KEY (group_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE group_refs (
        email    TEXT NOT NULL,
        group_id TEXT NOT NULL,
        PRIMARY KEY (email, group_id)
    ) WITHOUT ROWID;
    """,
    # 12: the search index folds accents and stems English words, as a search matches
    # (shared/search.py): ``remove_diacritics 2`` (``cafe`` finds ``café``, every Latin
    # letter's accents dropped) under ``porter`` (``run`` finds ``running``). The index is
    # dropped and built again from the stored messages; the triggers are the same.
    """
    DROP TRIGGER message_search_add;
    DROP TRIGGER message_search_remove;
    DROP TRIGGER message_search_move;
    DROP TABLE message_search;
    CREATE VIRTUAL TABLE message_search USING fts5(
        text, container UNINDEXED, email UNINDEXED, session_id UNINDEXED, seq UNINDEXED,
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    INSERT INTO message_search (rowid, text, container, email, session_id, seq)
        SELECT parley_search_rowid(email, session_id, seq), json_extract(body, '$.content'),
               container, email, session_id, seq
        FROM messages;
    CREATE TRIGGER message_search_add AFTER INSERT ON messages BEGIN
        INSERT INTO message_search (rowid, text, container, email, session_id, seq)
        VALUES (parley_search_rowid(new.email, new.session_id, new.seq),
                json_extract(new.body, '$.content'), new.container, new.email,
                new.session_id, new.seq);
    END;
    CREATE TRIGGER message_search_remove AFTER DELETE ON messages BEGIN
        DELETE FROM message_search
        WHERE rowid = parley_search_rowid(old.email, old.session_id, old.seq);
    END;
    CREATE TRIGGER message_search_move AFTER UPDATE OF container ON messages BEGIN
        UPDATE message_search SET container = new.container
        WHERE rowid = parley_search_rowid(new.email, new.session_id, new.seq);
    END;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_MS = 5000
TABLES = ("sessions", "messages", "requests", "message_versions")
# Expired shares removed by each new share (SQLite has no time-to-live of its own).
SHARE_PURGE_BATCH = 100
SHARE_TABLES = ("share_messages", "share_views")
# The session id column of each table.
SESSION_COLUMN = {
    "sessions": "id",
    "messages": "session_id",
    "requests": "session_id",
    "message_versions": "session_id",
}


def _new_etag() -> str:
    return secrets.token_hex(8)


def _search_rowid(email: str, session_id: str, seq: int) -> int:
    """The search index's row for a message: a 63-bit digest of its key (the messages table
    has no rowid of its own), so triggers can find it again without scanning the index."""
    digest = hashlib.sha256(f"{email}\n{session_id}\n{seq}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _lower(text: str | None) -> str | None:
    """Unicode lower case inside SQL (SQLite's own lower() folds ASCII only)."""
    return text.lower() if text is not None else None


def _statements(script: str) -> Iterator[str]:
    """A migration's statements, whole (triggers hold semicolons of their own)."""
    buffer = ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                yield buffer
            buffer = ""


def _group_body(group: GroupRecord) -> str:
    return group.model_dump_json(exclude={"etag"})


def _group_row(conn: sqlite3.Connection, group_id: str) -> GroupRecord | None:
    row = conn.execute("SELECT body, etag FROM groups WHERE id = ?", (group_id,)).fetchone()
    if row is None:
        return None
    return GroupRecord.model_validate_json(row[0]).model_copy(update={"etag": row[1]})


def _session_body(session: SessionRecord) -> str:
    return session.model_dump_json(exclude={"etag", "archived"})


def _session_from_row(body: str, etag: str, where: str) -> SessionRecord:
    record = SessionRecord.model_validate_json(body)
    return record.model_copy(update={"etag": etag, "archived": where == "archive"})


def _request_from_row(row: tuple[Any, ...]) -> RequestRecord:
    session_id, client_message_id, user_seq, assistant_seq = row
    return RequestRecord(
        session_id=session_id,
        client_message_id=client_message_id,
        user_seq=user_seq,
        assistant_seq=assistant_seq,
    )


def _insert_messages(
    conn: sqlite3.Connection, where: Where, email: str, messages: list[MessageRecord]
) -> None:
    """Insert message rows; an existing seq means the writer's view is stale (IntegrityError)."""
    conn.executemany(
        "INSERT INTO messages (container, email, session_id, seq, timestamp, body)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (where, email, m.session_id, m.seq, stored_time(m.timestamp), m.model_dump_json())
            for m in messages
        ],
    )


def _write_session(
    conn: sqlite3.Connection, where: Where, session: SessionRecord, etag: str
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO sessions"
        " (container, email, id, updated_at, deleting, etag, body, pinned)"
        " VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
        (
            where,
            session.email,
            session.id,
            stored_time(session.updated_at),
            etag,
            _session_body(session),
            int(session.pinned),
        ),
    )


def _set_search_text(
    conn: sqlite3.Connection, email: str, session_id: str, seq: int, text: str
) -> None:
    """Keep the search index in step with an answer whose text grew (its row was updated, not
    inserted: the triggers of migration 3 do not see that)."""
    conn.execute(
        "UPDATE message_search SET text = ? WHERE rowid = ?",
        (text, _search_rowid(email, session_id, seq)),
    )


def _write_request(conn: sqlite3.Connection, email: str, request: RequestRecord) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO requests"
        " (container, email, session_id, client_message_id, user_seq, assistant_seq)"
        " VALUES ('active', ?, ?, ?, ?, ?)",
        (
            email,
            request.session_id,
            request.client_message_id,
            request.user_seq,
            request.assistant_seq,
        ),
    )


def _session_etag(
    conn: sqlite3.Connection, where: Where, email: str, session_id: str
) -> str | None:
    row = conn.execute(
        "SELECT etag FROM sessions WHERE container = ? AND email = ? AND id = ?",
        (where, email, session_id),
    ).fetchone()
    return str(row[0]) if row else None


def _move_rows(
    conn: sqlite3.Connection, email: str, session_id: str, source: Where, target: Where
) -> None:
    """Every row of the session from ``source`` to ``target``, with a new ETag."""
    for table in TABLES:
        conn.execute(
            f"UPDATE {table} SET container = ?"  # noqa: S608 (table names are constants)
            f" WHERE container = ? AND email = ? AND {SESSION_COLUMN[table]} = ?",
            (target, source, email, session_id),
        )
    conn.execute(
        "UPDATE sessions SET etag = ? WHERE container = ? AND email = ? AND id = ?",
        (_new_etag(), target, email, session_id),
    )


def _delete_rows(
    conn: sqlite3.Connection, email: str, session_id: str, where: Where | None = None
) -> int:
    """Every row of the session (in ``where``, or both containers); how many rows went."""
    removed = 0
    for table in TABLES:
        sql = f"DELETE FROM {table} WHERE email = ? AND {SESSION_COLUMN[table]} = ?"  # noqa: S608
        params: list[object] = [email, session_id]
        if where is not None:
            sql += " AND container = ?"
            params.append(where)
        removed += conn.execute(sql, params).rowcount
    return removed


def _rehome_rows(conn: sqlite3.Connection, old: str, new: str, session_id: str) -> int:
    """Every row of the session from address ``old`` to ``new`` (sessions with a new ETag);
    how many rows moved. Messages are inserted anew and deleted, so that the search index's
    triggers (keyed by address) follow them."""
    moved = conn.execute(
        "UPDATE sessions SET email = ?, etag = ?, body = json_set(body, '$.email', ?)"
        " WHERE email = ? AND id = ?",
        (new, _new_etag(), new, old, session_id),
    ).rowcount
    for table in ("requests", "message_versions"):
        moved += conn.execute(
            f"UPDATE {table} SET email = ? WHERE email = ? AND session_id = ?",  # noqa: S608
            (new, old, session_id),
        ).rowcount
    conn.execute(
        "INSERT INTO messages (container, email, session_id, seq, timestamp, body)"
        " SELECT container, ?, session_id, seq, timestamp, body FROM messages"
        " WHERE email = ? AND session_id = ?",
        (new, old, session_id),
    )
    moved += conn.execute(
        "DELETE FROM messages WHERE email = ? AND session_id = ?", (old, session_id)
    ).rowcount
    return moved


def _share_row(conn: sqlite3.Connection, share_id: str) -> ShareRecord | None:
    row = conn.execute("SELECT body, views FROM shares WHERE id = ?", (share_id,)).fetchone()
    if row is None:
        return None
    return ShareRecord.model_validate_json(row[0]).model_copy(update={"views": row[1]})


def _delete_share_rows(conn: sqlite3.Connection, share_id: str) -> None:
    """A share and everything of it; the viewers' notes of it stay (their own data: what
    they viewed), as on Cosmos."""
    conn.execute("DELETE FROM shares WHERE id = ?", (share_id,))
    for table in SHARE_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE share_id = ?", (share_id,))  # noqa: S608


def _keyset_sessions(
    conn: sqlite3.Connection,
    columns: str,
    condition: str,
    params: list[object],
    *,
    newest_first: bool,
    limit: int,
    after: str | None,
) -> tuple[list[tuple[Any, ...]], str | None]:
    """One page of session rows in (updated_at, id) order, and the position after it. The
    selected ``columns`` must end with ``updated_at, id``."""
    sql = f"SELECT {columns} FROM sessions WHERE {condition}"  # noqa: S608 (constants only)
    params = list(params)
    if after is not None:
        updated_at, session_id = decode_position(after, 2)
        beyond = "<" if newest_first else ">"
        sql += f" AND (updated_at {beyond} ? OR (updated_at = ? AND id {beyond} ?))"
        params += [updated_at, updated_at, session_id]
    order = "DESC" if newest_first else "ASC"
    sql += f" ORDER BY updated_at {order}, id {order} LIMIT ?"
    params.append(limit + 1)
    rows = conn.execute(sql, params).fetchall()
    page = rows[:limit]
    position = encode_position(page[-1][-2], page[-1][-1]) if len(rows) > limit else None
    return page, position


def _binding(conn: sqlite3.Connection, email: str) -> Binding | None:
    row = conn.execute(
        "SELECT tenant_id, object_id, bound_at FROM identities WHERE email = ?", (email,)
    ).fetchone()
    if row is None:
        return None
    tenant_id, object_id, bound_at = row
    return Binding(email, Account(tenant_id=tenant_id, object_id=object_id), parse_iso(bound_at))


class SqliteStore:
    """ConversationStore and ArchiveStore on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        # One connection per worker thread, kept here (not in thread-local storage) so that
        # ``close`` can close them all: SQLite checkpoints the write-ahead log and removes it
        # when the last connection closes.
        self._connections: dict[int, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as conn:
            self._migrate(conn)

    # ---- connections and transactions ------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        thread = threading.get_ident()
        with self._lock:
            conn = self._connections.get(thread)
        if conn is None:
            # check_same_thread=False only so that ``close`` may close it from another thread;
            # each connection is used by its own thread alone.
            conn = sqlite3.connect(
                self._path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed transaction survives a process crash; an OS crash
            # may lose the last commits but never corrupts the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Deleted content is overwritten with zeros, in the database and in the log, rather
            # than left in free space: said explicitly, since the default depends on how SQLite
            # was built (docs/privacy.md).
            conn.execute("PRAGMA secure_delete=ON")
            # Used by the search index's triggers and queries: every connection needs them.
            conn.create_function("parley_search_rowid", 3, _search_rowid, deterministic=True)
            conn.create_function("parley_lower", 1, _lower, deterministic=True)
            with self._lock:
                self._connections[thread] = conn
        return conn

    def _forget(self) -> None:
        """After a delete: drop the search index's traces of the deleted text and empty the
        write-ahead log, where the deleted rows (and their earlier versions) still are.

        FTS5 deletes by adding entries that cancel the old ones (each names the deleted text's
        trigrams) until segments merge: ``optimize`` merges them all now. A ``TRUNCATE``
        checkpoint copies the log into the database, whose deleted content ``secure_delete``
        zeroes, and truncates the log to nothing. It waits (the busy timeout) for readers of
        older snapshots; one still reading then leaves the log for the next delete or
        ``close``."""
        try:
            with self._transaction() as conn:
                conn.execute("INSERT INTO message_search (message_search) VALUES ('optimize')")
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except (sqlite3.OperationalError, StorageUnavailable):
            # The delete itself is committed: report it done (a retry would find nothing to
            # delete, and so nothing to forget); the next delete or ``close`` empties the log.
            busy = 1
        if busy:
            log.warning("sqlite_wal_not_truncated")

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """IMMEDIATE (writes) takes the write lock up front: no deadlock between read-then-write
        transactions of different processes. DEFERRED (reads) gives a consistent snapshot."""
        conn = self._connection()
        try:
            conn.execute(f"BEGIN {mode}")
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable() from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except sqlite3.OperationalError as exc:  # locked for too long, disk I/O errors
            raise StorageUnavailable() from exc

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._transaction() as conn:
                return fn(conn)

        return await self._run(run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._transaction("DEFERRED") as conn:
                return fn(conn)

        return await self._run(run)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self._path} has schema version {version}; this code knows {SCHEMA_VERSION}"
            )
        for script in MIGRATIONS[version:]:
            for statement in _statements(script):
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # ---- a turn --------------------------------------------------------------------------------

    async def read_turn(self, email: str, session_id: str, *, history: int) -> TurnView:
        def read(conn: sqlite3.Connection) -> TurnView:
            rows = conn.execute(
                "SELECT container, body, etag FROM sessions WHERE email = ? AND id = ?",
                (email, session_id),
            ).fetchall()
            places = {container: (body, etag) for container, body, etag in rows}
            if "active" in places:
                body, etag = places["active"]
                window = conn.execute(
                    "SELECT body FROM messages WHERE container = 'active' AND email = ?"
                    " AND session_id = ? ORDER BY seq DESC LIMIT ?",
                    (email, session_id, history),
                ).fetchall()
                return TurnView(
                    Presence.LIVE,
                    _session_from_row(body, etag, "active"),
                    tuple(ContextMessage.model_validate_json(b) for (b,) in reversed(window)),
                )
            return TurnView(Presence.ARCHIVED if "archive" in places else Presence.MISSING)

        return await self._read(read)

    async def append(
        self,
        session: SessionRecord,
        messages: list[MessageRecord],
        *,
        expected_etag: str | None,
        request: RequestRecord | None = None,
    ) -> SessionRecord:
        etag = _new_etag()
        email = session.email

        def write(conn: sqlite3.Connection) -> SessionRecord:
            if expected_etag is None:
                # A session id names one session of a user across both containers.
                exists = conn.execute(
                    "SELECT 1 FROM sessions WHERE email = ? AND id = ?", (email, session.id)
                ).fetchone()
                if exists:
                    raise ConcurrencyConflict(session.id)
            elif _session_etag(conn, "active", email, session.id) != expected_etag:
                raise ConcurrencyConflict(session.id)
            if request is not None and request.assistant_seq is None:
                row = conn.execute(
                    "SELECT session_id, client_message_id, user_seq, assistant_seq FROM requests"
                    " WHERE container = 'active' AND email = ? AND session_id = ?"
                    " AND client_message_id = ?",
                    (email, session.id, request.client_message_id),
                ).fetchone()
                if row is not None:
                    raise DuplicateRequest(_request_from_row(row))
            try:
                _insert_messages(conn, "active", email, messages)
            except sqlite3.IntegrityError as exc:  # that seq exists: a stale view
                raise ConcurrencyConflict(session.id) from exc
            if request is not None:
                _write_request(conn, email, request)
            _write_session(conn, "active", session, etag)
            return session.model_copy(update={"etag": etag, "archived": False})

        return await self._write(write)

    async def replace_answer(
        self,
        session: SessionRecord,
        answer: MessageRecord,
        previous: MessageRecord,
        *,
        expected_etag: str,
        request: RequestRecord | None = None,
    ) -> SessionRecord:
        etag = _new_etag()
        email = session.email

        def write(conn: sqlite3.Connection) -> SessionRecord:
            if _session_etag(conn, "active", email, session.id) != expected_etag:
                raise ConcurrencyConflict(session.id)
            if request is not None:
                row = conn.execute(
                    "SELECT session_id, client_message_id, user_seq, assistant_seq FROM requests"
                    " WHERE container = 'active' AND email = ? AND session_id = ?"
                    " AND client_message_id = ?",
                    (email, session.id, request.client_message_id),
                ).fetchone()
                if row is not None:
                    raise DuplicateRequest(_request_from_row(row))
            try:
                conn.execute(
                    "INSERT INTO message_versions"
                    " (container, email, session_id, seq, version, body)"
                    " VALUES ('active', ?, ?, ?, ?, ?)",
                    (
                        email,
                        session.id,
                        previous.seq,
                        previous.versions or 1,
                        previous.model_copy(update={"versions": None}).model_dump_json(),
                    ),
                )
            except sqlite3.IntegrityError as exc:  # that version exists: a stale view
                raise ConcurrencyConflict(session.id) from exc
            # Deleted and inserted, not updated: the search index's triggers follow inserts
            # and deletes (its text is the new answer's).
            conn.execute(
                "DELETE FROM messages"
                " WHERE container = 'active' AND email = ? AND session_id = ? AND seq = ?",
                (email, session.id, answer.seq),
            )
            _insert_messages(conn, "active", email, [answer])
            if request is not None:
                _write_request(conn, email, request)
            _write_session(conn, "active", session, etag)
            return session.model_copy(update={"etag": etag, "archived": False})

        return await self._write(write)

    async def message_versions(
        self, email: str, session_id: str, seq: int, *, where: Where, count: int
    ) -> list[MessageRecord]:
        def read(conn: sqlite3.Connection) -> list[MessageRecord]:
            rows = conn.execute(
                "SELECT body FROM message_versions WHERE container = ? AND email = ?"
                " AND session_id = ? AND seq = ? AND version < ? ORDER BY version",
                (where, email, session_id, seq, count),
            ).fetchall()
            return [MessageRecord.model_validate_json(body) for (body,) in rows]

        return await self._read(read)

    async def restore(self, email: str, session_id: str) -> MoveOutcome:
        def move(conn: sqlite3.Connection) -> MoveOutcome:
            if _session_etag(conn, "active", email, session_id) is not None:
                return MoveOutcome.MOVED  # a concurrent request restored it first
            if _session_etag(conn, "archive", email, session_id) is None:
                return MoveOutcome.GONE
            _move_rows(conn, email, session_id, "archive", "active")
            return MoveOutcome.MOVED

        return await self._write(move)

    # ---- reads ---------------------------------------------------------------------------------

    async def get_session(
        self, email: str, session_id: str, *, where: Where
    ) -> SessionRecord | None:
        def read(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute(
                "SELECT body, etag FROM sessions WHERE container = ? AND email = ? AND id = ?",
                (where, email, session_id),
            ).fetchone()
            return _session_from_row(row[0], row[1], where) if row else None

        return await self._read(read)

    async def locate(self, email: str, session_id: str) -> tuple[SessionRecord, Where] | None:
        # Both containers in one statement of one read transaction: a move (one transaction
        # too) is entirely before it or entirely after, so a session that exists is found.
        def read(conn: sqlite3.Connection) -> tuple[SessionRecord, Where] | None:
            row = conn.execute(
                "SELECT body, etag, container FROM sessions WHERE email = ? AND id = ?"
                " AND container IN ('active', 'archive') ORDER BY container = 'active' DESC",
                (email, session_id),
            ).fetchone()
            if row is None:
                return None
            where: Where = "archive" if row[2] == "archive" else "active"
            return _session_from_row(row[0], row[1], where), where

        return await self._read(read)

    async def get_message(
        self, email: str, session_id: str, seq: int, *, where: Where
    ) -> MessageRecord | None:
        def read(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(
                "SELECT body FROM messages"
                " WHERE container = ? AND email = ? AND session_id = ? AND seq = ?",
                (where, email, session_id, seq),
            ).fetchone()
            return MessageRecord.model_validate_json(row[0]) if row else None

        return await self._read(read)

    async def get_request(
        self, email: str, session_id: str, client_message_id: str, *, where: Where
    ) -> RequestRecord | None:
        def read(conn: sqlite3.Connection) -> RequestRecord | None:
            row = conn.execute(
                "SELECT session_id, client_message_id, user_seq, assistant_seq FROM requests"
                " WHERE container = ? AND email = ? AND session_id = ? AND client_message_id = ?",
                (where, email, session_id, client_message_id),
            ).fetchone()
            return _request_from_row(row) if row else None

        return await self._read(read)

    async def page_messages(
        self,
        email: str,
        session_id: str,
        *,
        where: Where,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[MessageRecord], bool]:
        forward = after_seq is not None

        def read(conn: sqlite3.Connection) -> tuple[list[MessageRecord], bool]:
            sql = "SELECT body FROM messages WHERE container = ? AND email = ? AND session_id = ?"
            params: list[object] = [where, email, session_id]
            if forward:
                sql += " AND seq > ? ORDER BY seq ASC LIMIT ?"
                params += [after_seq, limit + 1]
            else:
                if before_seq is not None:
                    sql += " AND seq < ?"
                    params.append(before_seq)
                sql += " ORDER BY seq DESC LIMIT ?"
                params.append(limit + 1)
            rows = conn.execute(sql, params).fetchall()
            page = [MessageRecord.model_validate_json(body) for (body,) in rows[:limit]]
            return (page if forward else page[::-1]), len(rows) > limit

        return await self._read(read)

    async def list_sessions(
        self, email: str, *, where: Where, limit: int, after: str | None
    ) -> tuple[list[SessionRecord], str | None]:
        def read(conn: sqlite3.Connection) -> tuple[list[SessionRecord], str | None]:
            # Pinned first, then newest first: one query on sessions_pinned_first, paged by
            # the (pinned, updated_at, id) of the last row.
            sql = (
                "SELECT body, etag, pinned, updated_at, id FROM sessions"
                " WHERE container = ? AND email = ?"
            )
            params: list[object] = [where, email]
            if after is not None:
                pinned, updated_at, session_id = decode_position(after, 3)
                if pinned not in ("0", "1"):
                    raise InvalidRequest("continuationToken is not valid.")
                sql += (
                    " AND (pinned < ? OR (pinned = ? AND"
                    " (updated_at < ? OR (updated_at = ? AND id < ?))))"
                )
                params += [int(pinned), int(pinned), updated_at, updated_at, session_id]
            sql += " ORDER BY pinned DESC, updated_at DESC, id DESC LIMIT ?"
            params.append(limit + 1)
            rows = conn.execute(sql, params).fetchall()
            page = rows[:limit]
            position = None
            if len(rows) > limit:
                _, _, pinned_last, updated_last, id_last = page[-1]
                position = encode_position(str(pinned_last), updated_last, id_last)
            return [_session_from_row(row[0], row[1], where) for row in page], position

        return await self._read(read)

    async def search_matches(
        self, email: str, phrase: str, *, where: Where, hits_per_session: int
    ) -> list[MatchedSession]:
        # Each word a quoted FTS5 string (quotes doubled; a word has none, but nothing in a
        # phrase may ever become syntax), all of them required: implicit AND.
        match = " ".join('"' + word.replace('"', '""') + '"' for word in words_of(phrase))

        def read(conn: sqlite3.Connection) -> list[MatchedSession]:
            seqs: dict[str, list[int]] = {}
            for session_id, seq in conn.execute(
                "SELECT session_id, seq FROM message_search WHERE message_search MATCH ?"
                " AND email = ? AND container = ? LIMIT ?",
                (match, email, where, SEARCH_SCAN_LIMIT),
            ):
                seqs.setdefault(session_id, []).append(int(seq))
            # Titles are few (one per session): matched here by the same rules (folded,
            # stemmed words: shared/search.py), with each session's order key.
            matches = []
            for session_id, updated_at, title in conn.execute(
                "SELECT id, updated_at, json_extract(body, '$.title') FROM sessions"
                " WHERE container = ? AND email = ?",
                (where, email),
            ):
                titled = holds_all(title or "", phrase)
                if titled or session_id in seqs:
                    found = sorted(seqs.get(session_id, []))
                    score = relevance(len(found), titled)
                    matches.append(
                        MatchedSession(session_id, updated_at, score, found[:hits_per_session])
                    )
            return matches

        return await self._read(read)

    async def search_page(
        self, email: str, *, where: Where, matches: list[MatchedSession]
    ) -> list[tuple[SessionRecord, list[SearchHit]]]:
        def read(conn: sqlite3.Connection) -> list[tuple[SessionRecord, list[SearchHit]]]:
            page = []
            for match in matches:
                row = conn.execute(
                    "SELECT body, etag FROM sessions WHERE container = ? AND email = ? AND id = ?",
                    (where, email, match.session_id),
                ).fetchone()
                if row is None:
                    continue
                hits = []
                for seq in match.seqs:
                    found = conn.execute(
                        "SELECT body FROM messages"
                        " WHERE container = ? AND email = ? AND session_id = ? AND seq = ?",
                        (where, email, match.session_id, seq),
                    ).fetchone()
                    if found is not None:
                        message = MessageRecord.model_validate_json(found[0])
                        hits.append(SearchHit(seq=seq, role=message.role, text=message.content))
                page.append((_session_from_row(row[0], row[1], where), hits))
            return page

        return await self._read(read)

    async def all_sessions(
        self, email: str, *, limit: int, after: str | None
    ) -> tuple[list[SessionRecord], str | None]:
        def read(conn: sqlite3.Connection) -> tuple[list[SessionRecord], str | None]:
            rows, position = _keyset_sessions(
                conn,
                "container, body, etag, updated_at, id",
                "email = ?",
                [email],
                newest_first=False,
                limit=limit,
                after=after,
            )
            return [_session_from_row(body, etag, c) for c, body, etag, _, _ in rows], position

        return await self._read(read)

    async def usage(self, email: str) -> tuple[int, int]:
        def read(conn: sqlite3.Connection) -> tuple[int, int]:
            (sessions,) = conn.execute(
                "SELECT COUNT(*) FROM sessions WHERE email = ?", (email,)
            ).fetchone()
            (messages,) = conn.execute(
                "SELECT COUNT(*) FROM messages WHERE email = ?", (email,)
            ).fetchone()
            return int(sessions), int(messages)

        return await self._read(read)

    # ---- other writes --------------------------------------------------------------------------

    async def save_session(
        self, session: SessionRecord, *, where: Where, expected_etag: str
    ) -> SessionRecord:
        etag = _new_etag()

        def write(conn: sqlite3.Connection) -> SessionRecord:
            if _session_etag(conn, where, session.email, session.id) != expected_etag:
                raise ConcurrencyConflict(session.id)
            _write_session(conn, where, session, etag)
            return session.model_copy(update={"etag": etag, "archived": where == "archive"})

        return await self._write(write)

    async def checkpoint_answer(
        self, email: str, session_id: str, seq: int, content: str | None, *, at: datetime
    ) -> Checkpoint:
        def write(conn: sqlite3.Connection) -> Checkpoint:
            # The message row only, and only while it is streaming and no stop was asked for: a
            # finished, stopped or deleted answer is never written again by a late checkpoint.
            # The session row (and its ETag) is untouched (docs/design.md, "Streaming
            # checkpoints").
            key = (email, session_id, seq)
            changed = conn.execute(
                "UPDATE messages SET body = json_set(body, '$.content',"
                " coalesce(?, json_extract(body, '$.content')), '$.checkpoint_at', ?)"
                " WHERE container = 'active' AND email = ? AND session_id = ? AND seq = ?"
                " AND json_extract(body, '$.status') = 'streaming'"
                " AND NOT coalesce(json_extract(body, '$.stop_requested'), 0)",
                (content, stored_time(at), *key),
            ).rowcount
            if changed:
                if content is not None:
                    _set_search_text(conn, email, session_id, seq, content)
                return Checkpoint.WRITTEN
            # Why not: the one read a refused checkpoint costs.
            stopping = conn.execute(
                "SELECT 1 FROM messages"
                " WHERE container = 'active' AND email = ? AND session_id = ? AND seq = ?"
                " AND json_extract(body, '$.status') = 'streaming'",
                key,
            ).fetchone()
            return Checkpoint.STOPPED if stopping else Checkpoint.GONE

        return await self._write(write)

    async def request_stop(self, email: str, session_id: str, seq: int) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            # The message row only (the session's ETag stays): read by its generator's next
            # checkpoint, which is then refused.
            return bool(
                conn.execute(
                    "UPDATE messages SET body = json_set(body, '$.stop_requested', json('true'))"
                    " WHERE container = 'active' AND email = ? AND session_id = ? AND seq = ?"
                    " AND json_extract(body, '$.status') = 'streaming'",
                    (email, session_id, seq),
                ).rowcount
            )

        return await self._write(write)

    async def finish_answer(
        self, session: SessionRecord, message: MessageRecord, *, expected_etag: str
    ) -> SessionRecord:
        etag = _new_etag()
        email = session.email

        def write(conn: sqlite3.Connection) -> SessionRecord:
            if _session_etag(conn, "active", email, session.id) != expected_etag:
                raise ConcurrencyConflict(session.id)
            changed = conn.execute(
                "UPDATE messages SET body = ?, timestamp = ?"
                " WHERE container = 'active' AND email = ? AND session_id = ? AND seq = ?",
                (
                    message.model_dump_json(),
                    stored_time(message.timestamp),
                    email,
                    session.id,
                    message.seq,
                ),
            ).rowcount
            if not changed:  # the session's reader saw another state: read it again
                raise ConcurrencyConflict(session.id)
            _set_search_text(conn, email, session.id, message.seq, message.content)
            _write_session(conn, "active", session, etag)
            return session.model_copy(update={"etag": etag, "archived": False})

        return await self._write(write)

    async def set_feedback(
        self,
        email: str,
        session_id: str,
        seq: int,
        feedback: Feedback | None,
        *,
        where: Where,
        expected_etag: str,
    ) -> MessageRecord | None:
        def write(conn: sqlite3.Connection) -> MessageRecord | None:
            if _session_etag(conn, where, email, session_id) != expected_etag:
                raise ConcurrencyConflict(session_id)
            row = conn.execute(
                "SELECT body FROM messages"
                " WHERE container = ? AND email = ? AND session_id = ? AND seq = ?",
                (where, email, session_id, seq),
            ).fetchone()
            if row is None:
                return None
            message = MessageRecord.model_validate_json(row[0]).model_copy(
                update={"feedback": feedback}
            )
            conn.execute(
                "UPDATE messages SET body = ?"
                " WHERE container = ? AND email = ? AND session_id = ? AND seq = ?",
                (message.model_dump_json(), where, email, session_id, seq),
            )
            # Any change to a session's items moves its ETag (see base.py).
            conn.execute(
                "UPDATE sessions SET etag = ? WHERE container = ? AND email = ? AND id = ?",
                (_new_etag(), where, email, session_id),
            )
            return message

        return await self._write(write)

    async def delete_session(self, email: str, session_id: str) -> bool:
        def delete() -> bool:
            with self._transaction() as conn:
                deleted = _delete_rows(conn, email, session_id) > 0
            if deleted:
                self._forget()
            return deleted

        return await self._run(delete)

    async def import_session(self, session: SessionRecord, messages: list[MessageRecord]) -> bool:
        etag = _new_etag()

        def write(conn: sqlite3.Connection) -> bool:
            # One transaction: the whole conversation, or (it exists already) nothing.
            exists = conn.execute(
                "SELECT 1 FROM sessions WHERE email = ? AND id = ?", (session.email, session.id)
            ).fetchone()
            if exists:
                return False
            _insert_messages(conn, "active", session.email, messages)
            _write_session(conn, "active", session, etag)
            return True

        return await self._write(write)

    async def session_ids(self, email: str, *, limit: int) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM sessions WHERE email = ?"
                " UNION SELECT session_id FROM messages WHERE email = ?"
                " UNION SELECT session_id FROM requests WHERE email = ?"
                " UNION SELECT session_id FROM message_versions WHERE email = ? LIMIT ?",
                (email, email, email, email, limit),
            ).fetchall()
            return [session_id for (session_id,) in rows]

        return await self._read(read)

    # ---- shares --------------------------------------------------------------------------------
    # One transaction each: a share is whole or absent, so nothing half-made is ever read.

    async def create_share(self, share: ShareRecord, messages: list[MessageRecord]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            expired = conn.execute(
                "SELECT id FROM shares WHERE expires_at <= ? LIMIT ?",
                (stored_time(share.created_at), SHARE_PURGE_BATCH),
            ).fetchall()
            for (share_id,) in expired:
                _delete_share_rows(conn, share_id)
            conn.execute(
                "INSERT INTO shares (id, owner, session_id, created_at, expires_at, views, body)"
                " VALUES (?, ?, ?, ?, ?, 0, ?)",
                (
                    share.id,
                    share.owner,
                    share.session_id,
                    stored_time(share.created_at),
                    stored_time(share.expires_at),
                    share.model_dump_json(exclude={"views"}),
                ),
            )
            conn.executemany(
                "INSERT INTO share_messages (share_id, seq, body) VALUES (?, ?, ?)",
                [(share.id, m.seq, m.model_dump_json()) for m in messages],
            )

        await self._write(write)

    async def get_share(self, share_id: str) -> ShareRecord | None:
        return await self._read(lambda conn: _share_row(conn, share_id))

    async def open_share(
        self, share: ShareRecord, viewer: str | None, at: datetime
    ) -> ShareRecord | None:
        def write(conn: sqlite3.Connection) -> ShareRecord | None:
            if viewer is not None:
                row = conn.execute(
                    "UPDATE shares SET views = views + 1 WHERE id = ? RETURNING views",
                    (share.id,),
                ).fetchone()
                if row is None:
                    return None
                conn.execute(
                    "INSERT OR REPLACE INTO share_views (share_id, slot, email, viewed_at)"
                    " VALUES (?, ?, ?, ?)",
                    (share.id, (int(row[0]) - 1) % MAX_SHARE_VIEWS, viewer, stored_time(at)),
                )
                conn.execute(
                    "INSERT OR REPLACE INTO viewed_shares"
                    " (email, share_id, owner, title, viewed_at) VALUES (?, ?, ?, ?, ?)",
                    (viewer, share.id, share.owner, share.title, stored_time(at)),
                )
            return _share_row(conn, share.id)

        return await self._write(write)

    async def share_messages(
        self, share_id: str, *, after_seq: int, limit: int
    ) -> tuple[list[MessageRecord], bool]:
        def read(conn: sqlite3.Connection) -> tuple[list[MessageRecord], bool]:
            rows = conn.execute(
                "SELECT body FROM share_messages WHERE share_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (share_id, after_seq, limit + 1),
            ).fetchall()
            page = [MessageRecord.model_validate_json(body) for (body,) in rows[:limit]]
            return page, len(rows) > limit

        return await self._read(read)

    async def list_shares(
        self, email: str, *, limit: int, after: str | None
    ) -> tuple[list[ShareRecord], str | None]:
        def read(conn: sqlite3.Connection) -> tuple[list[ShareRecord], str | None]:
            sql = "SELECT body, views, created_at, id FROM shares WHERE owner = ?"
            params: list[object] = [email]
            if after is not None:
                created_at, share_id = decode_position(after, 2)
                sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
                params += [created_at, created_at, share_id]
            sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
            params.append(limit + 1)
            rows = conn.execute(sql, params).fetchall()
            page = rows[:limit]
            position = encode_position(page[-1][2], page[-1][3]) if len(rows) > limit else None
            shares = [
                ShareRecord.model_validate_json(body).model_copy(update={"views": views})
                for body, views, _, _ in page
            ]
            return shares, position

        return await self._read(read)

    async def owned_share_ids(self, email: str, *, limit: int) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM shares WHERE owner = ? LIMIT ?", (email, limit)
            ).fetchall()
            return [share_id for (share_id,) in rows]

        return await self._read(read)

    async def delete_share(self, email: str, share_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM shares WHERE id = ? AND owner = ?", (share_id, email)
            ).fetchone()
            if row is None:
                return False
            _delete_share_rows(conn, share_id)
            return True

        return await self._write(write)

    async def share_views(self, share_id: str) -> list[ShareView]:
        def read(conn: sqlite3.Connection) -> list[ShareView]:
            rows = conn.execute(
                "SELECT email, viewed_at FROM share_views WHERE share_id = ?", (share_id,)
            ).fetchall()
            return [
                ShareView(share_id=share_id, email=email, viewed_at=parse_iso(viewed_at))
                for email, viewed_at in rows
            ]

        return await self._read(read)

    async def viewed_shares(self, email: str) -> list[ViewedShare]:
        def read(conn: sqlite3.Connection) -> list[ViewedShare]:
            rows = conn.execute(
                "SELECT share_id, owner, title, viewed_at FROM viewed_shares WHERE email = ?",
                (email,),
            ).fetchall()
            return [
                ViewedShare(
                    share_id=share_id, owner=owner, title=title, viewed_at=parse_iso(viewed_at)
                )
                for share_id, owner, title, viewed_at in rows
            ]

        return await self._read(read)

    async def forget_viewer(self, email: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM share_views WHERE email = ?", (email,))
            conn.execute("DELETE FROM viewed_shares WHERE email = ?", (email,))

        await self._write(write)

    # ---- token usage ---------------------------------------------------------------------------

    async def add_usage(self, email: str, periods: Sequence[str], spent: Spent) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for period in periods:
                # One statement per period: the increment happens inside the write lock.
                conn.execute(
                    "INSERT INTO usage (email, period, prompt_tokens, completion_tokens,"
                    " cached_tokens, turns) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (email, period) DO UPDATE SET"
                    " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
                    " completion_tokens = completion_tokens + excluded.completion_tokens,"
                    " cached_tokens = cached_tokens + excluded.cached_tokens,"
                    " turns = turns + excluded.turns",
                    (
                        email,
                        period,
                        spent.prompt_tokens,
                        spent.completion_tokens,
                        spent.cached_tokens,
                        spent.turns,
                    ),
                )

        await self._write(write)

    async def read_usage(
        self, email: str, periods: Sequence[str] | None = None
    ) -> dict[str, Spent]:
        def read(conn: sqlite3.Connection) -> dict[str, Spent]:
            sql = (
                "SELECT period, prompt_tokens, completion_tokens, cached_tokens, turns"
                " FROM usage WHERE email = ?"
            )
            params: list[object] = [email]
            if periods is not None:
                sql += f" AND period IN ({', '.join('?' * len(periods))})"
                params += list(periods)
            rows = conn.execute(sql + " ORDER BY period", params).fetchall()
            return {row[0]: Spent(*row[1:]) for row in rows}

        if periods is not None and not periods:
            return {}
        return await self._read(read)

    async def clear_usage(self, email: str) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM usage WHERE email = ?", (email,)).rowcount

        cleared = await self._write(write)
        if cleared:
            # The rows hold the address: off the disk too, as after a delete (``_forget``).
            await self._run(self._forget)
        return cleared

    # ---- analytics (python -m shared.report) ---------------------------------------------------

    async def scan_usage_days(
        self, first_day: str, last_day: str, *, limit: int, after: str | None
    ) -> tuple[list[UsageDay], str | None]:
        # Pages in primary-key order (an index range per page); the period is a filter.
        key = json.loads(after) if after else ["", ""]

        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT email, period, prompt_tokens, completion_tokens, cached_tokens, turns"
                " FROM usage WHERE (email, period) > (?, ?) AND period >= ? AND period <= ?"
                " ORDER BY email, period LIMIT ?",
                (key[0], key[1], first_day, last_day, limit),
            ).fetchall()

        rows = await self._read(read)
        days = [UsageDay(row[1], *row[2:]) for row in rows]
        token = json.dumps([rows[-1][0], rows[-1][1]]) if len(rows) == limit else None
        return days, token

    async def scan_answers(
        self, since: datetime, *, where: Where, limit: int, after: str | None
    ) -> tuple[list[AnswerFacts], str | None]:
        key = json.loads(after) if after else ["", "", 0]

        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            # Only the fields the report counts leave the database: never the text.
            return conn.execute(
                "SELECT email, session_id, seq, json_extract(body, '$.model'),"
                " json_extract(body, '$.prompt_tokens'), json_extract(body, '$.completion_tokens'),"
                " json_extract(body, '$.feedback.rating'), json_extract(body, '$.first_token_ms'),"
                " json_extract(body, '$.total_ms')"
                " FROM messages WHERE container = ? AND (email, session_id, seq) > (?, ?, ?)"
                " AND timestamp >= ? AND json_extract(body, '$.role') = 'assistant'"
                " ORDER BY email, session_id, seq LIMIT ?",
                (where, key[0], key[1], key[2], stored_time(since), limit),
            ).fetchall()

        rows = await self._read(read)
        facts = [
            AnswerFacts(row[3], row[4] or 0, row[5] or 0, row[6], row[7], row[8]) for row in rows
        ]
        token = json.dumps(list(rows[-1][:3])) if len(rows) == limit else None
        return facts, token

    async def scan_archive_runs(
        self, since: datetime, *, limit: int, after: str | None
    ) -> tuple[list[ArchiveRun], str | None]:
        key = json.loads(after) if after else [stored_time(since), ""]

        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT at, run_id, moved, failed FROM archive_runs"
                " WHERE at >= ? AND (at, run_id) > (?, ?) ORDER BY at, run_id LIMIT ?",
                (stored_time(since), key[0], key[1], limit),
            ).fetchall()

        rows = await self._read(read)
        runs = [ArchiveRun(row[1], parse_iso(row[0]), row[2], row[3]) for row in rows]
        token = json.dumps(list(rows[-1][:2])) if len(rows) == limit else None
        return runs, token

    # ---- archival ------------------------------------------------------------------------------

    async def record_archive_run(self, run: ArchiveRun) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO archive_runs (run_id, at, moved, failed)"
                " VALUES (?, ?, ?, ?)",
                (run.run_id, stored_time(run.at), run.moved, run.failed),
            )

        await self._write(write)

    async def scan_stale(
        self, *, where: Where, updated_before: datetime, limit: int, after: str | None
    ) -> tuple[list[SessionRef], str | None]:
        def read(conn: sqlite3.Connection) -> tuple[list[SessionRef], str | None]:
            rows, position = _keyset_sessions(
                conn,
                "email, etag, updated_at, id",
                # Pinned sessions are never archived nor deleted by retention.
                "container = ? AND updated_at < ? AND pinned = 0",
                [where, stored_time(updated_before)],
                newest_first=False,
                limit=limit,
                after=after,
            )
            refs = [
                SessionRef(
                    email=email,
                    session_id=sid,
                    updated_at=parse_iso(updated),
                    etag=etag,
                    where=where,
                )
                for email, etag, updated, sid in rows
            ]
            return refs, position

        return await self._read(read)

    async def archive(self, ref: SessionRef) -> MoveOutcome:
        def move(conn: sqlite3.Connection) -> MoveOutcome:
            etag = _session_etag(conn, "active", ref.email, ref.session_id)
            if etag is None:
                return MoveOutcome.GONE
            if etag != ref.etag:
                return MoveOutcome.CHANGED
            _move_rows(conn, ref.email, ref.session_id, "active", "archive")
            return MoveOutcome.MOVED

        return await self._write(move)

    async def expire(self, ref: SessionRef) -> bool:
        def delete() -> bool:
            with self._transaction() as conn:
                if _session_etag(conn, ref.where, ref.email, ref.session_id) != ref.etag:
                    return False  # a turn, a move, a rename, a pin, a rating or a delete since
                # A session's shares go with it (shared/sharing.py), in the same transaction.
                shared = conn.execute(
                    "SELECT id FROM shares WHERE owner = ? AND session_id = ?",
                    (ref.email, ref.session_id),
                ).fetchall()
                for (share_id,) in shared:
                    _delete_share_rows(conn, share_id)
                deleted = _delete_rows(conn, ref.email, ref.session_id) > 0
            if deleted:
                self._forget()
            return deleted

        return await self._run(delete)

    async def scan_unfinished(
        self, *, older_than: datetime, limit: int, after: str | None
    ) -> tuple[list[Unfinished], str | None]:
        # Moves and deletes are single transactions here: nothing is ever left half-done.
        return [], None

    async def finish(self, item: Unfinished) -> bool:
        return False

    # ---- identities ----------------------------------------------------------------------------

    async def read_binding(self, email: str) -> Binding | None:
        return await self._read(lambda conn: _binding(conn, email))

    async def bind(self, binding: Binding) -> Binding:
        def write(conn: sqlite3.Connection) -> Binding:
            conn.execute(
                "INSERT OR IGNORE INTO identities (email, tenant_id, object_id, bound_at)"
                " VALUES (?, ?, ?, ?)",
                (
                    binding.email,
                    binding.account.tenant_id,
                    binding.account.object_id,
                    stored_time(binding.bound_at),
                ),
            )
            held = _binding(conn, binding.email)
            assert held is not None  # inserted, or there already, in this transaction
            return held

        return await self._write(write)

    async def release_binding(self, email: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM identities WHERE email = ?", (email,))
            return cursor.rowcount > 0

        return await self._write(write)

    async def rehome_session(self, old: str, new: str, session_id: str) -> RehomeOutcome:
        # One transaction: every row of the session, in whichever container it is, changes
        # address at once, or none does; there is nothing in between to finish later.
        def move(conn: sqlite3.Connection) -> RehomeOutcome:
            taken = conn.execute(
                "SELECT 1 FROM sessions WHERE email = ? AND id = ?", (new, session_id)
            ).fetchone()
            if taken is not None:
                return RehomeOutcome.TAKEN
            found = _rehome_rows(conn, old, new, session_id)
            return RehomeOutcome.MOVED if found else RehomeOutcome.GONE

        return await self._write(move)

    async def rehome_pending(self, old: str) -> list[str]:
        return []  # a move is one transaction here: never half-done

    # ---- groups --------------------------------------------------------------------------------
    # One transaction each: a message, a membership change or a whole delete is atomic here.

    async def create_group(self, group: GroupRecord) -> GroupRecord:
        etag = _new_etag()

        def write(conn: sqlite3.Connection) -> GroupRecord:
            try:
                conn.execute(
                    "INSERT INTO groups (id, etag, body) VALUES (?, ?, ?)",
                    (group.id, etag, _group_body(group)),
                )
            except sqlite3.IntegrityError as exc:
                raise ConcurrencyConflict(group.id) from exc
            return group.model_copy(update={"etag": etag})

        return await self._write(write)

    async def read_group(self, group_id: str, *, latest: bool = False) -> GroupRecord | None:
        del latest  # one file: every read sees every committed write
        return await self._read(lambda conn: _group_row(conn, group_id))

    async def write_group(
        self,
        group: GroupRecord,
        *,
        expected_etag: str,
        messages: Sequence[GroupMessageRecord] = (),
        rewrite: Sequence[GroupMessageRecord] = (),
        request: GroupRequestRecord | None = None,
    ) -> GroupRecord:
        etag = _new_etag()

        def write(conn: sqlite3.Connection) -> GroupRecord:
            row = conn.execute("SELECT etag FROM groups WHERE id = ?", (group.id,)).fetchone()
            if row is None or row[0] != expected_etag:
                raise ConcurrencyConflict(group.id)
            if request is not None and request.assistant_seq is None:
                found = conn.execute(
                    "SELECT body FROM group_requests WHERE group_id = ? AND key = ?",
                    (group.id, request.key),
                ).fetchone()
                if found is not None:
                    raise DuplicateRequest(None)
            try:
                conn.executemany(
                    "INSERT INTO group_messages (group_id, seq, sender, body) VALUES (?, ?, ?, ?)",
                    [(m.group_id, m.seq, m.sender_email, m.model_dump_json()) for m in messages],
                )
            except sqlite3.IntegrityError as exc:  # that seq exists: a stale view
                raise ConcurrencyConflict(group.id) from exc
            for m in rewrite:
                conn.execute(
                    "UPDATE group_messages SET sender = ?, body = ? WHERE group_id = ? AND seq = ?",
                    (m.sender_email, m.model_dump_json(), m.group_id, m.seq),
                )
            if request is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO group_requests (group_id, key, body) VALUES (?, ?, ?)",
                    (request.group_id, request.key, request.model_dump_json()),
                )
            conn.execute(
                "UPDATE groups SET etag = ?, body = ? WHERE id = ?",
                (etag, _group_body(group), group.id),
            )
            return group.model_copy(update={"etag": etag})

        return await self._write(write)

    async def delete_group(self, group_id: str, *, expected_etag: str | None) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT etag FROM groups WHERE id = ?", (group_id,)).fetchone()
            if row is not None and expected_etag is not None and row[0] != expected_etag:
                return False
            for table in ("group_messages", "group_requests"):
                conn.execute(f"DELETE FROM {table} WHERE group_id = ?", (group_id,))  # noqa: S608
            conn.execute("DELETE FROM groups WHERE id = ?", (group_id,))
            return True

        deleted = await self._write(write)
        if deleted:
            await asyncio.to_thread(self._forget)
        return deleted

    async def group_messages(
        self,
        group_id: str,
        *,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[GroupMessageRecord], bool]:
        def read(conn: sqlite3.Connection) -> tuple[list[GroupMessageRecord], bool]:
            if after_seq is not None:
                rows = conn.execute(
                    "SELECT body FROM group_messages WHERE group_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (group_id, after_seq, limit + 1),
                ).fetchall()
                page = rows[:limit]
            else:
                rows = conn.execute(
                    "SELECT body FROM group_messages WHERE group_id = ? AND seq < ?"
                    " ORDER BY seq DESC LIMIT ?",
                    (group_id, before_seq if before_seq is not None else 2**62, limit + 1),
                ).fetchall()
                page = list(reversed(rows[:limit]))
            messages = [GroupMessageRecord.model_validate_json(b) for (b,) in page]
            return messages, len(rows) > limit

        return await self._read(read)

    async def messages_of_sender(
        self, group_id: str, email: str, *, limit: int
    ) -> list[GroupMessageRecord]:
        def read(conn: sqlite3.Connection) -> list[GroupMessageRecord]:
            rows = conn.execute(
                "SELECT body FROM group_messages WHERE group_id = ? AND sender = ?"
                " ORDER BY seq LIMIT ?",
                (group_id, email, limit),
            ).fetchall()
            return [GroupMessageRecord.model_validate_json(b) for (b,) in rows]

        return await self._read(read)

    async def get_group_request(self, group_id: str, key: str) -> GroupRequestRecord | None:
        def read(conn: sqlite3.Connection) -> GroupRequestRecord | None:
            row = conn.execute(
                "SELECT body FROM group_requests WHERE group_id = ? AND key = ?", (group_id, key)
            ).fetchone()
            return GroupRequestRecord.model_validate_json(row[0]) if row else None

        return await self._read(read)

    async def put_group_ref(self, email: str, group_id: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO group_refs (email, group_id) VALUES (?, ?)",
                (email, group_id),
            )
        )

    async def drop_group_ref(self, email: str, group_id: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "DELETE FROM group_refs WHERE email = ? AND group_id = ?", (email, group_id)
            )
        )

    async def group_ref_ids(self, email: str, *, limit: int) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT group_id FROM group_refs WHERE email = ? LIMIT ?", (email, limit)
            ).fetchall()
            return [group_id for (group_id,) in rows]

        return await self._read(read)

    async def close(self) -> None:
        """Close every connection. The last one to close checkpoints the write-ahead log into
        the database and removes it (and the shared-memory file), so nothing deleted stays
        in them once the host has stopped."""

        def close_all() -> None:
            with self._lock:
                connections, self._connections = list(self._connections.values()), {}
            for conn in connections:
                conn.close()

        await asyncio.to_thread(close_all)


__all__ = ["WHERES", "SqliteStore"]
