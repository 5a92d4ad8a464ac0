"""What the archival suites share besides fixtures: the suites' time, another host's clock, the
stores they run on, and the service on a store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest

from shared.clock import Clock, FixedClock
from shared.config import Settings, load_settings
from shared.llm.echo import EchoModel
from shared.storage.base import Store
from tests.support.conversations import Conversations
from tests.support.cosmos import COSMOS_MODE_FIXTURES, account_for

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


def settings(**overrides: str) -> Settings:
    return load_settings({"AUTH_MODE": "dev", "STORAGE_BACKEND": "sqlite", **overrides})


def service(store: Store, clock: FixedClock) -> Conversations:
    async def no_pause(_: float) -> None:
        return None

    return Conversations(store, EchoModel(), settings(), clock=clock, sleep=no_pause)


def make_store_factory(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, clock: FixedClock
) -> StoreFactory:
    """Opens stores of ``backend`` (``sqlite`` or one of COSMOS_MODE_FIXTURES) on one fresh
    database of the test's own."""
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
