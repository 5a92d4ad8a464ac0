"""What the fidelity tests of the local Cosmos server share: names, the container they create,
item builders and paging helpers (tests/tools/cosmos/test_fidelity.py, test_fidelity_modes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey, exceptions
from azure.cosmos.aio import ContainerProxy as AsyncContainerProxy
from azure.cosmos.aio import CosmosClient as AsyncCosmosClient

from tools.local.cosmos import CosmosAccount

T = TypeVar("T")

CONTAINER = "Conversations"
ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
MB = 1024 * 1024
LIST_QUERY = (
    "SELECT c.id, c.updatedAt FROM c WHERE c.type = 'session' ORDER BY c.updatedAt DESC, c.id DESC"
)
ARCHIVE_QUERY = (
    "SELECT c.id, c.EmailID, c.updatedAt, c._etag FROM c "
    "WHERE c.type = 'session' AND c.updatedAt < @cutoff"
)
INDEXING_POLICY = {
    "indexingMode": "consistent",
    "includedPaths": [
        {"path": "/type/?"},
        {"path": "/sessionId/?"},
        {"path": "/seq/?"},
        {"path": "/updatedAt/?"},
    ],
    "excludedPaths": [{"path": "/*"}],
    "compositeIndexes": [
        [
            {"path": "/updatedAt", "order": "descending"},
            {"path": "/id", "order": "descending"},
        ],
        [
            {"path": "/type", "order": "descending"},
            {"path": "/updatedAt", "order": "descending"},
            {"path": "/id", "order": "descending"},
        ],
        [
            {"path": "/sessionId", "order": "descending"},
            {"path": "/seq", "order": "descending"},
        ],
    ],
}
# A session token as Cosmos answers it: partition key range 0, version -1, global LSN.
SESSION_TOKEN = re.compile(r"^0:-1#(\d+)$")


def lsn_of(token: str | None) -> int:
    """The global LSN of a session token (fails the test when the token is malformed)."""
    match = SESSION_TOKEN.match(token or "")
    assert match, f"not a Cosmos session token: {token!r}"
    return int(match.group(1))


def sync_client(account: CosmosAccount, **kwargs: Any) -> CosmosClient:
    return CosmosClient(account.endpoint, account.key, **account.client_kwargs(), **kwargs)


@dataclass
class Store:
    """A fresh database with Parley's container, reachable with both clients."""

    account: CosmosAccount
    database: str
    sync: ContainerProxy

    def run(self, scenario: Callable[[AsyncContainerProxy], Awaitable[T]], **kwargs: Any) -> T:
        """Runs ``scenario`` with the container of an async client entered with ``async with``
        (so it has read the account and keeps session tokens); ``kwargs`` go to the client."""

        async def main() -> T:
            async with AsyncCosmosClient(
                self.account.endpoint, self.account.key, **self.account.client_kwargs(), **kwargs
            ) as client:
                container = client.get_database_client(self.database).get_container_client(
                    CONTAINER
                )
                return await scenario(container)

        return asyncio.run(main())

    def fresh_sync(self, **kwargs: Any) -> ContainerProxy:
        """The container through a new sync client: one that holds no session token yet."""
        client = sync_client(self.account, **kwargs)
        return client.get_database_client(self.database).get_container_client(CONTAINER)


@contextlib.contextmanager
def fresh_store(account: CosmosAccount) -> Iterator[Store]:
    """A database of its own with Parley's container; deleted afterwards."""
    client = sync_client(account)
    name = f"fidelity-{uuid.uuid4().hex[:12]}"
    database = client.create_database_if_not_exists(name)
    container = database.create_container_if_not_exists(
        CONTAINER, partition_key=PartitionKey("/EmailID"), indexing_policy=INDEXING_POLICY
    )
    try:
        yield Store(account, name, container)
    finally:
        client.delete_database(name)


def session(email: str, sid: str, updated_at: str = "2024-01-01T00:00:00Z", **extra: Any) -> dict:
    return {"id": sid, "EmailID": email, "type": "session", "updatedAt": updated_at, **extra}


def message(email: str, sid: str, seq: int, **extra: Any) -> dict:
    return {
        "id": f"{sid}:{seq:06d}",
        "EmailID": email,
        "type": "message",
        "sessionId": sid,
        "seq": seq,
        "content": "hello",
        **extra,
    }


async def exists(container: AsyncContainerProxy, item_id: str, email: str) -> bool:
    try:
        await container.read_item(item_id, partition_key=email)
    except exceptions.CosmosResourceNotFoundError:
        return False
    return True


def exists_sync(container: ContainerProxy, item_id: str, email: str, **kwargs: Any) -> bool:
    try:
        container.read_item(item_id, partition_key=email, **kwargs)
    except exceptions.CosmosResourceNotFoundError:
        return False
    return True


def page_of_sync(pager: Any) -> tuple[list[dict], str | None]:
    """One page of a ``by_page()`` pager and the token of the next, None at the end.

    On Azure a continuation token may lead to an empty last page; the SDK then yields no page at
    all and leaves ``pager.continuation_token`` at the token it was given, so a loop that only
    looks at the token never ends. No page means the end."""
    for page in pager:
        return list(page), pager.continuation_token
    return [], None


async def page_of(pager: Any) -> tuple[list[dict], str | None]:
    """The async form of page_of_sync."""
    async for page in pager:
        return [item async for item in page], pager.continuation_token
    return [], None


def advance_clock(account: CosmosAccount, seconds: float) -> float:
    """Moves the local server's clock forward (a server started with ``test_clock=True``, see
    tools/cosmos/README.md) and returns its time in seconds since the epoch."""
    context = ssl.create_default_context()
    if not account.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(
        f"{account.endpoint.rstrip('/')}/_parley/clock",
        data=json.dumps({"advanceSeconds": seconds}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return float(json.load(response)["now"])
