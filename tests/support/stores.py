"""The stores the API's scenarios run against, one parameter each (registered for every suite
by tests/conftest.py): ``store_factory``, ``run`` (a scenario on a new store in a new event
loop), ``emails`` (two callers of the test's own), ``throttled``.

- ``sqlite``: a fresh file per test.
- ``cosmos-local``: the local Cosmos wire-protocol server (tools/cosmos), one database for the
  test session; each test isolates itself with emails of its own.
- ``cosmos-lagging`` / ``cosmos-throttled``: the same on a local server whose replicas lag the
  writes (reads without a fresh session token see an older snapshot) or whose request-unit
  budget is tight (429s the SDK must ride out): what the app relies on must hold there too.
- ``cosmos-account``: the account named by ``COSMOS_ENDPOINT`` (a real account or the official
  emulator), skipped when it is not set. Its database is created here with the key, as a test
  fixture, and deleted at the end: the app itself never creates anything in Azure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shared.storage.base import Store
from shared.storage.sqlite import SqliteStore
from tests.support.databases import CosmosDatabase, cosmos_database
from tools.local.cosmos import CosmosAccount, cosmos_target, local_cosmos

T = TypeVar("T")
USER_ACCOUNT_SET = bool(os.environ.get("COSMOS_ENDPOINT", "").strip())

Runner = Callable[[Callable[[Store], Awaitable[T]]], T]


@pytest.fixture(scope="session")
def local_cosmos_database() -> Iterator[CosmosDatabase]:
    # The local server even when COSMOS_ENDPOINT names another account: both run then.
    context = local_cosmos() if USER_ACCOUNT_SET else cosmos_target()
    with context as account, cosmos_database(account) as database:
        yield database


@pytest.fixture(scope="session")
def lagging_cosmos_database(cosmos_account_lagging: CosmosAccount) -> Iterator[CosmosDatabase]:
    with cosmos_database(cosmos_account_lagging) as database:
        yield database


@pytest.fixture(scope="session")
def throttled_cosmos_database(
    cosmos_account_throttled: CosmosAccount,
) -> Iterator[CosmosDatabase]:
    with cosmos_database(cosmos_account_throttled) as database:
        yield database


@pytest.fixture(scope="session")
def user_cosmos_database() -> Iterator[CosmosDatabase]:
    if not USER_ACCOUNT_SET:
        pytest.skip("COSMOS_ENDPOINT is not set: no real Cosmos account or emulator to run on")
    with cosmos_target() as account, cosmos_database(account) as database:
        yield database


DATABASE_FIXTURES = {
    "cosmos-local": "local_cosmos_database",
    "cosmos-lagging": "lagging_cosmos_database",
    "cosmos-throttled": "throttled_cosmos_database",
    "cosmos-account": "user_cosmos_database",
}


@pytest.fixture(params=["sqlite", *DATABASE_FIXTURES])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Makes a store on this test's data: each call is a new client on the same data."""
    if request.param == "sqlite":
        path = tmp_path / "contract.db"
        return lambda: SqliteStore(path)
    database: CosmosDatabase = request.getfixturevalue(DATABASE_FIXTURES[request.param])
    return database.store


@pytest.fixture
def throttled(request: pytest.FixtureRequest) -> bool:
    """Whether this test runs under the tight request-unit budget."""
    return "cosmos-throttled" in request.node.name


@pytest.fixture
def run(store_factory: Callable[[], Store]) -> Runner[Any]:
    """Runs an async scenario on a new store in a new event loop, closing the store after."""

    def runner(scenario: Callable[[Store], Awaitable[T]]) -> T:
        async def main() -> T:
            store = store_factory()
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())

    return runner


@pytest.fixture
def emails() -> tuple[str, str]:
    """Two callers of this test only (the Cosmos databases are shared by the session)."""
    tag = uuid.uuid4().hex[:10]
    return f"alice-{tag}@example.com", f"bob-{tag}@example.com"
