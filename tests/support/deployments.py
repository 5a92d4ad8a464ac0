"""The local host on a store, as the HTTP suites start it: the host's settings (on SQLite or a
Cosmos database), the running host with a store on the same data, and the calls every HTTP
suite makes (a chat turn, an error's status and code)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from azure.cosmos import CosmosClient, DatabaseProxy

from shared.storage.base import Store
from tests.support.databases import CosmosDatabase
from tools.local.cosmos import CosmosAccount
from tools.local.host import RunningHost, dev_headers, run_host

T = TypeVar("T")

# Dev sign-in and the echo model: what every HTTP suite's host runs with.
ECHO_HOST_ENV = {"AUTH_MODE": "dev", "LLM_PROVIDER": "echo"}
# The managing suites' host: a first page of 5 messages, so that paging shows after a few turns.
MAX_SESSION_MESSAGES = 5
HOST_ENV = {
    **ECHO_HOST_ENV,
    "MAX_SESSION_MESSAGES": str(MAX_SESSION_MESSAGES),
    # Far less than one delete takes: every DELETE /api/sessions round does the least it may.
    "ERASE_TIME_BUDGET_S": "0.001",
}


def cosmos_env(database: CosmosDatabase, base: Mapping[str, str] = ECHO_HOST_ENV) -> dict[str, str]:
    """A host's settings on ``database``: ``base``, and the store's."""
    account = database.account
    return {
        **base,
        "STORAGE_BACKEND": "cosmos",
        "COSMOS_ENDPOINT": account.endpoint,
        "COSMOS_KEY": account.key,
        "COSMOS_VERIFY_TLS": "true" if account.verify_tls else "false",
        "COSMOS_DATABASE": database.name,
    }


def run_on_a_store(open_store: Callable[[], Store], work: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``work`` on a store ``open_store`` opens, in an event loop of its own, then close it
    (a test's look at what the host stored, from outside the host)."""

    async def main() -> T:
        store = open_store()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


@contextlib.contextmanager
def host_on_a_new_database(
    account: CosmosAccount, log_path: Path, prefix: str
) -> Iterator[tuple[RunningHost, DatabaseProxy]]:
    """The local host on a Cosmos database nothing created beforehand, so that the host's local
    bootstrap makes every container; the database as an administrator sees it, deleted after."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    admin = CosmosClient(account.endpoint, account.key, **account.client_kwargs())
    try:
        with run_host(cosmos_env(CosmosDatabase(account, name)), log_path) as running:
            yield running, admin.get_database_client(name)
    finally:
        admin.delete_database(name)


def host_client(host: RunningHost, email: str | None) -> httpx.Client:
    """A client of ``host``, signed in as ``email`` (None: signed out)."""
    headers = dev_headers(email) if email else {}
    return httpx.Client(base_url=host.base_url, headers=headers, timeout=30)


@dataclass
class Deployment:
    name: str
    host: RunningHost
    env: dict[str, str]
    open_store: Callable[[], Store]

    def client(self, email: str) -> httpx.Client:
        return httpx.Client(base_url=self.host.base_url, headers=dev_headers(email), timeout=60)

    def with_store(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """Run ``work`` on a store of this deployment's data (a client of this event loop)."""
        return run_on_a_store(self.open_store, work)


def chat(
    client: httpx.Client, message: str, session_id: str | None = None, **extra: str
) -> dict[str, Any]:
    """One turn, answered 200; its JSON."""
    body = {"message": message, **({"sessionId": session_id} if session_id else {}), **extra}
    response = client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
