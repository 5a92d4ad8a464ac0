"""The embedded store: one SQLite file (WAL), the same items as the Cosmos data model.

Tables mirror the Cosmos containers: ``sessions`` holds session items and ``messages`` one row
per message, each row tagged with its container (``active`` or ``archive``) and keyed by the
caller's email first, as Cosmos partitions by it. Each write is one ``BEGIN IMMEDIATE``
transaction, so several processes can share the file safely; the session row's ``etag`` plays
Cosmos' ``_etag`` for optimistic concurrency.

sqlite3 blocks, so every call runs in a worker thread with a connection of its own thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from shared.errors import ConcurrencyConflict, InvalidRequest, StorageUnavailable
from shared.models import MessageRecord, SessionRecord
from shared.storage.base import MAX_BATCH_OPERATIONS, OrphanRef, SessionRef, Where

T = TypeVar("T")

# Each entry migrates the schema from version i to i + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
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
)
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_MS = 5000


def _sortable(when: datetime) -> str:
    # Fixed width with microseconds, so string order is time order.
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_etag() -> str:
    return secrets.token_hex(8)


def _session_body(session: SessionRecord) -> str:
    return session.model_dump_json(exclude={"etag", "archived"})


def _session_from_row(body: str, etag: str, where: Where) -> SessionRecord:
    record = SessionRecord.model_validate_json(body)
    return record.model_copy(update={"etag": etag, "archived": where == "archive"})


def _encode_token(updated_at: str, session_id: str) -> str:
    raw = json.dumps([updated_at, session_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        updated_at, session_id = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(updated_at, str) or not isinstance(session_id, str):
            raise ValueError("token fields")
        return updated_at, session_id
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("continuationToken is not valid.") from exc


def _insert_messages(
    conn: sqlite3.Connection,
    where: Where,
    email: str,
    messages: list[MessageRecord],
    *,
    replace: bool = False,
) -> None:
    """Insert message rows; a copy between containers (``replace``) overwrites, a turn's write
    must not (an existing seq means the writer's view is stale)."""
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    conn.executemany(
        f"{verb} INTO messages (container, email, session_id, seq, timestamp, body)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (where, email, m.session_id, m.seq, _sortable(m.timestamp), m.model_dump_json())
            for m in messages
        ],
    )


def _write_session(
    conn: sqlite3.Connection, where: Where, session: SessionRecord, etag: str
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO sessions (container, email, id, updated_at, deleting, etag, body)"
        " VALUES (?, ?, ?, ?, 0, ?, ?)",
        (
            where,
            session.email,
            session.id,
            _sortable(session.updated_at),
            etag,
            _session_body(session),
        ),
    )


class SqliteStore:
    """ConversationStore on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._local = threading.local()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as conn:
            self._migrate(conn)

    # ---- connections and transactions ------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed transaction survives a process crash; an OS crash
            # may lose the last commits but never corrupts the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            # IMMEDIATE takes the write lock up front: no deadlock between read-then-write
            # transactions of different processes.
            conn.execute("BEGIN IMMEDIATE")
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

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self._path} has schema version {version}; this code knows {SCHEMA_VERSION}"
            )
        for script in MIGRATIONS[version:]:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # ---- reads -------------------------------------------------------------------------------

    async def get_session(
        self, email: str, session_id: str, where: Where = "active"
    ) -> SessionRecord | None:
        def read() -> SessionRecord | None:
            row = (
                self._connection()
                .execute(
                    "SELECT body, etag FROM sessions"
                    " WHERE container = ? AND email = ? AND id = ? AND deleting = 0",
                    (where, email, session_id),
                )
                .fetchone()
            )
            return _session_from_row(row[0], row[1], where) if row else None

        return await self._run(read)

    async def get_message(
        self, email: str, session_id: str, seq: int, where: Where = "active"
    ) -> MessageRecord | None:
        def read() -> MessageRecord | None:
            row = (
                self._connection()
                .execute(
                    "SELECT body FROM messages"
                    " WHERE container = ? AND email = ? AND session_id = ? AND seq = ?",
                    (where, email, session_id, seq),
                )
                .fetchone()
            )
            return MessageRecord.model_validate_json(row[0]) if row else None

        return await self._run(read)

    async def list_messages(
        self, email: str, session_id: str, where: Where = "active"
    ) -> list[MessageRecord]:
        def read() -> list[MessageRecord]:
            rows = (
                self._connection()
                .execute(
                    "SELECT body FROM messages WHERE container = ? AND email = ? AND session_id = ?"
                    " ORDER BY seq",
                    (where, email, session_id),
                )
                .fetchall()
            )
            return [MessageRecord.model_validate_json(body) for (body,) in rows]

        return await self._run(read)

    async def list_sessions(
        self, email: str, *, limit: int, continuation: str | None, where: Where = "active"
    ) -> tuple[list[SessionRecord], str | None]:
        # Keyset paging on (updated_at, id): stable under concurrent writes, no OFFSET scans.
        after = _decode_token(continuation) if continuation else None

        def read() -> tuple[list[SessionRecord], str | None]:
            sql = (
                "SELECT body, etag, updated_at, id FROM sessions"
                " WHERE container = ? AND email = ? AND deleting = 0"
            )
            params: list[object] = [where, email]
            if after:
                sql += " AND (updated_at < ? OR (updated_at = ? AND id < ?))"
                params += [after[0], after[0], after[1]]
            sql += " ORDER BY updated_at DESC, id DESC LIMIT ?"
            params.append(limit + 1)
            rows = self._connection().execute(sql, params).fetchall()
            page = rows[:limit]
            sessions = [_session_from_row(body, etag, where) for body, etag, _, _ in page]
            token = _encode_token(page[-1][2], page[-1][3]) if len(rows) > limit else None
            return sessions, token

        return await self._run(read)

    # ---- writes ------------------------------------------------------------------------------

    async def commit(
        self,
        session: SessionRecord,
        messages: list[MessageRecord],
        *,
        expected_etag: str | None,
        where: Where = "active",
    ) -> SessionRecord:
        etag = _new_etag()

        def write() -> SessionRecord:
            with self._transaction() as conn:
                row = conn.execute(
                    "SELECT etag, deleting FROM sessions"
                    " WHERE container = ? AND email = ? AND id = ?",
                    (where, session.email, session.id),
                ).fetchone()
                if expected_etag is None and row is not None:
                    raise ConcurrencyConflict(session.id)
                if expected_etag is not None and (row is None or row[0] != expected_etag or row[1]):
                    raise ConcurrencyConflict(session.id)
                try:
                    _insert_messages(conn, where, session.email, messages)
                except sqlite3.IntegrityError as exc:  # that seq exists: a stale view
                    raise ConcurrencyConflict(session.id) from exc
                _write_session(conn, where, session, etag)
            return session.model_copy(update={"etag": etag, "archived": where == "archive"})

        return await self._run(write)

    async def delete_session(self, email: str, session_id: str, where: Where = "active") -> bool:
        def mark() -> bool:
            with self._transaction() as conn:
                cursor = conn.execute(
                    "UPDATE sessions SET deleting = 1 WHERE container = ? AND email = ? AND id = ?",
                    (where, email, session_id),
                )
                if cursor.rowcount:
                    return True
                # No session item: an interrupted delete may have left messages behind.
                leftover = conn.execute(
                    "SELECT 1 FROM messages WHERE container = ? AND email = ? AND session_id = ?"
                    " LIMIT 1",
                    (where, email, session_id),
                ).fetchone()
                return leftover is not None

        def seqs() -> list[int]:
            rows = (
                self._connection()
                .execute(
                    "SELECT seq FROM messages WHERE container = ? AND email = ? AND session_id = ?",
                    (where, email, session_id),
                )
                .fetchall()
            )
            return [seq for (seq,) in rows]

        if not await self._run(mark):
            return False
        await self.delete_messages(where, email, session_id, await self._run(seqs))
        await self.delete_session_item(where, email, session_id, expected_etag=None)
        return True

    # ---- archival primitives -----------------------------------------------------------------

    async def scan_sessions(
        self,
        where: Where,
        *,
        updated_before: datetime,
        limit: int,
        continuation: str | None,
    ) -> tuple[list[SessionRef], str | None]:
        after = _decode_token(continuation) if continuation else None

        def read() -> tuple[list[SessionRef], str | None]:
            sql = (
                "SELECT email, id, updated_at, etag FROM sessions"
                " WHERE container = ? AND deleting = 0 AND updated_at < ?"
            )
            params: list[object] = [where, _sortable(updated_before)]
            if after:
                sql += " AND (updated_at > ? OR (updated_at = ? AND id > ?))"
                params += [after[0], after[0], after[1]]
            sql += " ORDER BY updated_at, id LIMIT ?"
            params.append(limit + 1)
            rows = self._connection().execute(sql, params).fetchall()
            page = rows[:limit]
            refs = [
                SessionRef(
                    email=email,
                    session_id=sid,
                    updated_at=datetime.fromisoformat(updated.replace("Z", "+00:00")),
                    etag=etag,
                )
                for email, sid, updated, etag in page
            ]
            token = _encode_token(page[-1][2], page[-1][1]) if len(rows) > limit else None
            return refs, token

        return await self._run(read)

    async def put_items(
        self, where: Where, session: SessionRecord | None, messages: list[MessageRecord]
    ) -> None:
        email = session.email if session else None

        def write(chunk: list[MessageRecord], with_session: bool) -> None:
            with self._transaction() as conn:
                _insert_messages(conn, where, email or "", chunk, replace=True)
                if with_session and session is not None:
                    _write_session(conn, where, session, _new_etag())

        if session is None:
            raise ValueError("put_items needs the session record (it carries the partition key)")
        # Messages first, the session item last: a copy interrupted half-way has no session item
        # and so is invisible to readers until it is complete.
        for start in range(0, len(messages), MAX_BATCH_OPERATIONS):
            chunk = messages[start : start + MAX_BATCH_OPERATIONS]
            await self._run(lambda chunk=chunk: write(chunk, False))  # type: ignore[misc]
        await self._run(lambda: write([], True))

    async def delete_messages(
        self, where: Where, email: str, session_id: str, seqs: list[int]
    ) -> None:
        def delete(chunk: list[int]) -> None:
            with self._transaction() as conn:
                conn.executemany(
                    "DELETE FROM messages"
                    " WHERE container = ? AND email = ? AND session_id = ? AND seq = ?",
                    [(where, email, session_id, seq) for seq in chunk],
                )

        for start in range(0, len(seqs), MAX_BATCH_OPERATIONS):
            chunk = seqs[start : start + MAX_BATCH_OPERATIONS]
            await self._run(lambda chunk=chunk: delete(chunk))  # type: ignore[misc]

    async def delete_session_item(
        self, where: Where, email: str, session_id: str, *, expected_etag: str | None
    ) -> None:
        def delete() -> None:
            with self._transaction() as conn:
                row = conn.execute(
                    "SELECT etag FROM sessions WHERE container = ? AND email = ? AND id = ?",
                    (where, email, session_id),
                ).fetchone()
                if row is None:
                    return
                if expected_etag is not None and row[0] != expected_etag:
                    raise ConcurrencyConflict(session_id)
                conn.execute(
                    "DELETE FROM sessions WHERE container = ? AND email = ? AND id = ?",
                    (where, email, session_id),
                )

        await self._run(delete)

    async def scan_orphans(
        self, where: Where, *, older_than: datetime, limit: int
    ) -> list[OrphanRef]:
        def read() -> list[OrphanRef]:
            rows = (
                self._connection()
                .execute(
                    "SELECT DISTINCT m.email, m.session_id FROM messages m"
                    " WHERE m.container = ? AND m.timestamp < ? AND NOT EXISTS ("
                    "   SELECT 1 FROM sessions s"
                    "   WHERE s.container = m.container AND s.email = m.email"
                    "   AND s.id = m.session_id"
                    " ) LIMIT ?",
                    (where, _sortable(older_than), limit),
                )
                .fetchall()
            )
            return [OrphanRef(email=email, session_id=sid) for email, sid in rows]

        return await self._run(read)

    async def close(self) -> None:
        # Connections belong to worker threads; they close when those threads end. Nothing
        # here holds state that matters for correctness.
        return None
