"""Archival suites: the stores under test, data seeding, state snapshots and fault injection.

Every scenario runs inside one ``asyncio.run`` (the Cosmos client belongs to one event loop):
a test asks ``stores`` for an async context manager and does its work in it. The Cosmos store
gets the test's FixedClock, so the ages its moves stamp are the test's to decide.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from shared.clock import Clock, FixedClock
from shared.config import Settings, load_settings
from shared.ids import new_session_id
from shared.llm.echo import EchoModel
from shared.models import MessageRecord
from shared.service import ConversationService
from shared.storage.base import MoveOutcome, SessionRef, Store, Where
from tests.support.cosmos import COSMOS_MODE_FIXTURES, account_for
from tools.local.seeding import append_in_batches, new_session

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


class StoreFactory(Protocol):
    """Opens a store on the test's database; another call is another host on the same data.
    ``clock`` is that host's clock (the test's FixedClock unless told otherwise)."""

    def __call__(self, clock: Clock | None = None) -> AbstractAsyncContextManager[Store]: ...


class SkewedClock:
    """Another host's clock: the test's clock, ``offset`` off (it follows the test's clock as
    that one advances)."""

    def __init__(self, base: Clock, offset: timedelta) -> None:
        self.base = base
        self.offset = offset

    def now(self) -> datetime:
        return self.base.now() + self.offset


# SQLite, and the local Cosmos server as it is by default, with lagging replicas, and under a
# tight request-unit budget (tests/support/cosmos.py: COSMOS_MODE_FIXTURES).
BACKENDS = ["sqlite", *COSMOS_MODE_FIXTURES]


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock) -> StoreFactory:
    """Opens the store under test (a fresh SQLite file, or a fresh Cosmos database)."""
    return _store_factory(request, request.param, tmp_path, clock)


@pytest.fixture
def cosmos_stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock
) -> StoreFactory:
    """The Cosmos store only: for what exists only there (the steps of a move)."""
    return _store_factory(request, "cosmos", tmp_path, clock)


def _store_factory(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, clock: FixedClock
) -> StoreFactory:
    if backend == "sqlite":
        path = tmp_path / "archive.db"

        @asynccontextmanager
        async def open_sqlite(clock: Clock | None = None) -> AsyncIterator[Store]:
            from shared.storage.sqlite import SqliteStore

            store = SqliteStore(path)
            try:
                yield store
            finally:
                await store.close()

        return open_sqlite

    test_clock = clock
    account = account_for(request, backend)
    # A database of its own: the archival scans read every partition of a container.
    database = f"archive-{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        {
            "STORAGE_BACKEND": "cosmos",
            "COSMOS_ENDPOINT": account.endpoint,
            "COSMOS_KEY": account.key,
            "COSMOS_VERIFY_TLS": str(account.verify_tls).lower(),
            "COSMOS_DATABASE": database,
        }
    )

    @asynccontextmanager
    async def open_cosmos(clock: Clock | None = None) -> AsyncIterator[Store]:
        from shared.storage.cosmos import CosmosStore

        store = CosmosStore.from_settings(settings, clock=clock or test_clock)
        try:
            yield store
        finally:
            await store.close()

    return open_cosmos


def settings(**overrides: str) -> Settings:
    return load_settings({"AUTH_MODE": "dev", "STORAGE_BACKEND": "sqlite", **overrides})


def service(store: Store, clock: FixedClock) -> ConversationService:
    async def no_pause(_: float) -> None:
        return None

    return ConversationService(store, EchoModel(), settings(), clock=clock, sleep=no_pause)


# ---- seeding ------------------------------------------------------------------------------


async def seed(
    store: Store,
    email: str,
    updated_at: datetime,
    messages: int = 2,
    *,
    where: Where = "active",
) -> str:
    """A session whose last message (and updatedAt) is ``updated_at``, one second apart;
    moved to the archive when ``where`` says so."""
    session_id = new_session_id()
    records = [
        MessageRecord(
            session_id=session_id,
            seq=seq,
            role="user" if seq % 2 else "assistant",
            content=f"message {seq} of {session_id}",
            timestamp=updated_at - timedelta(seconds=messages - seq),
        )
        for seq in range(1, messages + 1)
    ]
    session = new_session(records, email=email, title="seeded")
    stored = await append_in_batches(store, session, records)
    if where == "archive":
        assert stored is not None and stored.etag
        ref = SessionRef(email, session_id, stored.updated_at, stored.etag)
        assert await store.archive(ref) is MoveOutcome.MOVED
    return session_id


# ---- state ----------------------------------------------------------------------------------


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


# ---- fault injection ----------------------------------------------------------------------------


class Crash(RuntimeError):
    """An injected failure (stands in for a process crash or a storage error mid-step)."""


Hook = Callable[..., Awaitable[Any]]


class FaultyStore:
    """Delegates to a real store; ``hooks[name]`` replaces a method and receives the real one
    first, so a hook can call it and then fail, fail part-way, or do something in between."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.hooks: dict[str, Hook] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.inner, name)
        hook = self.hooks.get(name)
        if hook is None:
            return real

        async def hooked(*args: Any, **kwargs: Any) -> Any:
            return await hook(real, *args, **kwargs)

        return hooked


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    yield FixedClock(NOW)
