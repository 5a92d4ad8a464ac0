"""What shares rely on of Cosmos DB, pinned on the local server (tools/cosmos) with the real SDK:

- a patch's ``incr`` in a transactional batch is applied atomically and the batch's result
  carries the item as written (the view log's slot is taken from it), also when many run at
  once ([partial document update](https://learn.microsoft.com/azure/cosmos-db/partial-document-update));
- a patch of a missing item fails its batch with 404 (a revoked share);
- a patch may set ``ttl``, and a container made with ``defaultTtl: -1`` keeps it
  ([time to live](https://learn.microsoft.com/azure/cosmos-db/time-to-live));
- a write is applied to the latest state even by a client whose plain reads lag: the read
  still sees a deleted item, the patch does not (``docs/design.md``, "Sharing").

The local server stores ``ttl`` but never expires items (tools/cosmos/README.md); nothing in
Parley depends on expiry happening.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.aio import ContainerProxy
from azure.cosmos.aio import CosmosClient as AsyncCosmosClient
from azure.cosmos.exceptions import CosmosBatchOperationError

from shared.storage.containers import shares_spec
from tools.local.cosmos import CosmosAccount, cosmos_target

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("COSMOS_ENDPOINT", "").strip()),
        reason="these tests check the local Cosmos server (tools/cosmos), and COSMOS_ENDPOINT "
        "names another account",
    ),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]

T = TypeVar("T")
SHARE = "sh_" + "f" * 48


@pytest.fixture(scope="module")
def account() -> Iterator[CosmosAccount]:
    with cosmos_target() as target:
        yield target


def _database(account: CosmosAccount) -> Iterator[str]:
    spec = shares_spec()
    client = CosmosClient(account.endpoint, account.key, **account.client_kwargs())
    name = f"shares-{uuid.uuid4().hex[:12]}"
    database = client.create_database_if_not_exists(name)
    database.create_container_if_not_exists(
        spec.name,
        partition_key=PartitionKey(spec.partition_key_path),
        indexing_policy=spec.indexing_policy,
        default_ttl=spec.default_ttl,
    )
    try:
        yield name
    finally:
        client.delete_database(name)


@pytest.fixture
def database(account: CosmosAccount) -> Iterator[str]:
    yield from _database(account)


def run(
    account: CosmosAccount, database: str, scenario: Callable[[ContainerProxy], Awaitable[T]]
) -> T:
    async def main() -> T:
        async with AsyncCosmosClient(
            account.endpoint, account.key, **account.client_kwargs()
        ) as client:
            container = client.get_database_client(database).get_container_client("Shares")
            return await scenario(container)

    return asyncio.run(main())


def share_item(**extra: Any) -> dict[str, Any]:
    return {"id": SHARE, "shareId": SHARE, "type": "share", "views": 0, "ttl": 3600, **extra}


def patch(*ops: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    return ("patch", (SHARE, list(ops)))


def test_concurrent_increments_each_return_their_own_count(
    account: CosmosAccount, database: str
) -> None:
    async def scenario(container: ContainerProxy) -> list[int]:
        await container.create_item(share_item())

        async def view() -> int:
            results = await container.execute_item_batch(
                [patch({"op": "incr", "path": "/views", "value": 1})], partition_key=SHARE
            )
            return int(results[0]["resourceBody"]["views"])

        return list(await asyncio.gather(*(view() for _ in range(20))))

    counts = run(account, database, scenario)
    assert sorted(counts) == list(range(1, 21))


def test_a_patch_of_a_missing_item_fails_its_batch_with_404(
    account: CosmosAccount, database: str
) -> None:
    async def scenario(container: ContainerProxy) -> int:
        try:
            await container.execute_item_batch(
                [patch({"op": "set", "path": "/ttl", "value": 10})], partition_key=SHARE
            )
        except CosmosBatchOperationError as error:
            return int(error.status_code or 0)
        return 0

    assert run(account, database, scenario) == 404


def test_ttl_is_kept_and_patched_in_a_container_with_ttl_on(
    account: CosmosAccount, database: str
) -> None:
    async def scenario(container: ContainerProxy) -> tuple[Any, Any, Any]:
        properties = await container.read()
        await container.create_item(share_item())
        results = await container.execute_item_batch(
            [patch({"op": "set", "path": "/ttl", "value": 1800})], partition_key=SHARE
        )
        stored = await container.read_item(SHARE, partition_key=SHARE)
        return properties.get("defaultTtl"), results[0]["resourceBody"]["ttl"], stored["ttl"]

    assert run(account, database, scenario) == (-1, 1800, 1800)


def test_a_lagging_client_reads_a_deleted_share_but_its_write_finds_it_gone(
    cosmos_account_lagging: CosmosAccount,
) -> None:
    for database in _database(cosmos_account_lagging):

        async def writer(container: ContainerProxy) -> None:
            await container.create_item(share_item())
            for n in range(6):  # more writes than the replicas lag by
                await container.create_item({"id": f"m:{n}", "shareId": SHARE, "seq": n})
            await container.delete_item(SHARE, partition_key=SHARE)

        async def elsewhere(container: ContainerProxy) -> tuple[bool, int]:
            read = await container.read_item(SHARE, partition_key=SHARE)  # a stale replica
            try:
                await container.execute_item_batch(
                    [patch({"op": "incr", "path": "/views", "value": 1})], partition_key=SHARE
                )
            except CosmosBatchOperationError as error:
                return read["id"] == SHARE, int(error.status_code or 0)
            return read["id"] == SHARE, 200

        run(cosmos_account_lagging, database, writer)
        assert run(cosmos_account_lagging, database, elsewhere) == (True, 404)
