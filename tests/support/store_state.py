"""What a store holds of a user, read past the API's rules: per container, whole snapshots for
"nothing changed" checks, and the raw items as the database keeps them."""

from __future__ import annotations

from typing import Any

from shared.storage.base import Store, Where


async def messages_in(store: Store, email: str, session_id: str, where: Where) -> list[str]:
    page, more = await store.page_messages(email, session_id, where=where, limit=100_000)
    assert not more
    return [m.model_dump_json() for m in page]


async def items(store: Store, email: str, session_id: str) -> dict[Where, tuple[bool, list[str]]]:
    """Per container: is the session readable there, and its message items (as JSON)."""
    state: dict[Where, tuple[bool, list[str]]] = {}
    for where in ("active", "archive"):
        session = await store.get_session(email, session_id, where=where)
        state[where] = (session is not None, await messages_in(store, email, session_id, where))
    return state


async def assert_exactly_once(
    store: Store, email: str, session_id: str, expected: list[str], where: Where
) -> None:
    """The session and each of its messages are in ``where`` once, and nowhere else."""
    other: Where = "archive" if where == "active" else "active"
    state = await items(store, email, session_id)
    assert state[where] == (True, expected)
    assert state[other] == (False, [])


async def everything(store: Store, emails: list[str]) -> dict[str, Any]:
    """A full snapshot of these users' data, for 'nothing changed' checks."""
    snapshot: dict[str, Any] = {}
    for email in emails:
        for where in ("active", "archive"):
            sessions, _ = await store.list_sessions(email, where=where, limit=100, after=None)
            for session in sessions:
                snapshot[f"{where}/{email}/{session.id}"] = (
                    session.model_dump_json(exclude={"etag"}),
                    await messages_in(store, email, session.id, where),
                )
    return snapshot


async def raw_items(store: Store, email: str) -> dict[Where, list[dict[str, Any]]]:
    """Every item of a user, as the database holds it (Cosmos: the raw JSON; SQLite: rows)."""
    import sqlite3

    from shared.storage.sqlite import TABLES, SqliteStore

    found: dict[Where, list[dict[str, Any]]] = {}
    for where in ("active", "archive"):
        if isinstance(store, SqliteStore):
            # The file itself, read with a connection of the test's own.
            with sqlite3.connect(store._path) as db:
                db.row_factory = sqlite3.Row
                found[where] = [
                    {"table": table, **dict(row)}
                    for table in TABLES
                    for row in db.execute(
                        f"SELECT * FROM {table} WHERE email = ? AND container = ?",
                        (email, where),
                    )
                ]
        else:
            conn = store.conn  # type: ignore[attr-defined]
            found[where] = await conn.query(where, "SELECT * FROM c", [], email=email)
    return found
