"""Fidelity of the local Cosmos server (tools/cosmos/server.mjs) with Azure Cosmos DB.

One test per gap between @vercel/cosmosdb-server and Cosmos DB that the launcher closes (see
tools/cosmos/README.md): each fails if the gap reopens. They use the real azure-cosmos SDK, the
async client (what Parley runs) and the sync one where it is cheap. They check the launcher, so
they are skipped when COSMOS_ENDPOINT names another account.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey, exceptions
from azure.cosmos.aio import ContainerProxy as AsyncContainerProxy
from azure.cosmos.aio import CosmosClient as AsyncCosmosClient

from tests.support.cosmos_server import CosmosAccount, cosmos_target

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("COSMOS_ENDPOINT", "").strip()),
        reason="these tests check the local Cosmos server (tools/cosmos), and COSMOS_ENDPOINT "
        "names another account",
    ),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]

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
        ]
    ],
}


@pytest.fixture(scope="module")
def account() -> Iterator[CosmosAccount]:
    with cosmos_target() as target:
        yield target


@dataclass
class Store:
    """A fresh database with Parley's container, reachable with both clients."""

    account: CosmosAccount
    database: str
    sync: ContainerProxy

    def run(self, scenario: Callable[[AsyncContainerProxy], Awaitable[T]]) -> T:
        async def main() -> T:
            async with AsyncCosmosClient(
                self.account.endpoint, self.account.key, **self.account.client_kwargs()
            ) as client:
                container = client.get_database_client(self.database).get_container_client(
                    CONTAINER
                )
                return await scenario(container)

        return asyncio.run(main())


@pytest.fixture
def store(account: CosmosAccount) -> Iterator[Store]:
    client = CosmosClient(account.endpoint, account.key, **account.client_kwargs())
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


def strip_system(item: dict) -> dict:
    return {k: v for k, v in item.items() if not k.startswith("_")}


# --- point operations -----------------------------------------------------------------------


def test_point_read_of_missing_item_is_404(store: Store) -> None:
    store.sync.create_item(session(ALICE, "s1"))
    for item_id, email in (("nope", ALICE), ("s1", BOB)):  # missing, and in another partition
        with pytest.raises(exceptions.CosmosResourceNotFoundError) as caught:
            store.sync.read_item(item_id, partition_key=email)
        assert caught.value.status_code == 404

    async def scenario(container: AsyncContainerProxy) -> None:
        for item_id, email in (("nope", ALICE), ("s1", BOB)):
            with pytest.raises(exceptions.CosmosResourceNotFoundError) as caught:
                await container.read_item(item_id, partition_key=email)
            assert caught.value.status_code == 404

    store.run(scenario)


def test_replace_and_delete_of_missing_item_are_404(store: Store) -> None:
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        store.sync.replace_item("nope", session(ALICE, "nope"))
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        store.sync.delete_item("nope", partition_key=ALICE)

    async def scenario(container: AsyncContainerProxy) -> None:
        with pytest.raises(exceptions.CosmosResourceNotFoundError):
            await container.replace_item("nope", session(ALICE, "nope"))
        with pytest.raises(exceptions.CosmosResourceNotFoundError):
            await container.delete_item("nope", partition_key=ALICE)

    store.run(scenario)


def test_replace_with_stale_etag_is_412_and_changes_nothing(store: Store) -> None:
    first = store.sync.create_item(session(ALICE, "s1", title="one"))
    second = store.sync.replace_item(
        "s1",
        session(ALICE, "s1", title="two"),
        etag=first["_etag"],
        match_condition=MatchConditions.IfNotModified,
    )
    assert second["_etag"] != first["_etag"]
    assert isinstance(second["_ts"], int)
    with pytest.raises(exceptions.CosmosAccessConditionFailedError) as caught:
        store.sync.replace_item(
            "s1",
            session(ALICE, "s1", title="stale"),
            etag=first["_etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    assert caught.value.status_code == 412

    async def scenario(container: AsyncContainerProxy) -> dict:
        with pytest.raises(exceptions.CosmosAccessConditionFailedError) as caught:
            await container.replace_item(
                "s1",
                session(ALICE, "s1", title="stale"),
                etag=first["_etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        assert caught.value.status_code == 412
        return await container.read_item("s1", partition_key=ALICE)

    after = store.run(scenario)
    assert after["title"] == "two"
    assert after["_etag"] == second["_etag"]


def test_ids_with_colons_round_trip(store: Store) -> None:
    """Parley's message ids are '<sessionId>:<seq>'; partition keys are e-mail addresses."""
    item = message(ALICE, "s 1", 7)
    store.sync.create_item(item)
    assert store.sync.read_item(item["id"], partition_key=ALICE)["seq"] == 7

    async def scenario(container: AsyncContainerProxy) -> None:
        await container.replace_item(item["id"], {**item, "content": "edited"})
        assert (await container.read_item(item["id"], partition_key=ALICE))["content"] == "edited"
        await container.delete_item(item["id"], partition_key=ALICE)
        assert not await exists(container, item["id"], ALICE)

    store.run(scenario)


def test_wrong_key_is_401(account: CosmosAccount) -> None:
    wrong_key = "A" * 86 + "=="
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        client = CosmosClient(account.endpoint, wrong_key, **account.client_kwargs())
        client.create_database_if_not_exists(f"fidelity-{uuid.uuid4().hex[:12]}")
    assert caught.value.status_code == 401


def test_create_if_not_exists_is_idempotent_and_keeps_the_definition(store: Store) -> None:
    client = CosmosClient(
        store.account.endpoint, store.account.key, **store.account.client_kwargs()
    )
    database = client.create_database_if_not_exists(store.database)
    container = database.create_container_if_not_exists(
        CONTAINER, partition_key=PartitionKey("/EmailID"), indexing_policy=INDEXING_POLICY
    )
    properties = container.read()
    assert properties["partitionKey"]["paths"] == ["/EmailID"]
    assert properties["indexingPolicy"]["compositeIndexes"] == INDEXING_POLICY["compositeIndexes"]

    async def scenario(container: AsyncContainerProxy) -> dict:
        async with AsyncCosmosClient(
            store.account.endpoint, store.account.key, **store.account.client_kwargs()
        ) as aclient:
            adb = await aclient.create_database_if_not_exists(store.database)
            acontainer = await adb.create_container_if_not_exists(
                CONTAINER, partition_key=PartitionKey("/EmailID"), indexing_policy=INDEXING_POLICY
            )
            return await acontainer.read()

    assert store.run(scenario)["partitionKey"]["paths"] == ["/EmailID"]


def test_item_over_2mb_is_413_and_is_not_stored(store: Store) -> None:
    big = "x" * (2 * MB + 1024)
    near = "x" * (2 * MB - 64 * 1024)
    store.sync.create_item(session(ALICE, "s1", title="small"))
    assert store.sync.create_item(session(ALICE, "near", blob=near))["id"] == "near"
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        store.sync.create_item(session(ALICE, "big", blob=big))
    assert caught.value.status_code == 413

    async def scenario(container: AsyncContainerProxy) -> None:
        with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
            await container.upsert_item(session(ALICE, "big", blob=big))
        assert caught.value.status_code == 413
        with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
            await container.replace_item("s1", session(ALICE, "s1", blob=big))
        assert caught.value.status_code == 413
        with pytest.raises(HttpResponseError) as caught_batch:
            await container.execute_item_batch(
                [("create", (message(ALICE, "s1", 1, content=big),))], partition_key=ALICE
            )
        assert caught_batch.value.status_code == 413
        assert not await exists(container, "big", ALICE)
        assert not await exists(container, "s1:000001", ALICE)
        assert (await container.read_item("s1", partition_key=ALICE))["title"] == "small"

    store.run(scenario)


# --- transactional batch ----------------------------------------------------------------------


def test_batch_runs_every_operation_type(store: Store) -> None:
    async def scenario(container: AsyncContainerProxy) -> None:
        head = await container.create_item(session(ALICE, "s1", title="t"))
        await container.create_item(message(ALICE, "old", 1))
        results = await container.execute_item_batch(
            [
                ("create", (message(ALICE, "s1", 1),)),
                ("upsert", (message(ALICE, "s1", 2),)),
                (
                    "replace",
                    ("s1", session(ALICE, "s1", title="t2", lastSeq=2)),
                    {"if_match_etag": head["_etag"]},
                ),
                ("read", ("s1:000001",)),
                ("patch", ("s1", [{"op": "set", "path": "/messageCount", "value": 2}])),
                ("delete", ("old:000001",)),
            ],
            partition_key=ALICE,
        )
        assert [r["statusCode"] for r in results] == [201, 201, 200, 200, 200, 204]
        assert results[3]["resourceBody"]["seq"] == 1
        final = await container.read_item("s1", partition_key=ALICE)
        assert (final["title"], final["lastSeq"], final["messageCount"]) == ("t2", 2, 2)
        assert results[4]["eTag"] == final["_etag"]
        assert await exists(container, "s1:000002", ALICE)
        assert not await exists(container, "old:000001", ALICE)

    store.run(scenario)


def test_batch_create_conflict_is_409_and_applies_nothing(store: Store) -> None:
    async def scenario(container: AsyncContainerProxy) -> None:
        await container.create_item(message(ALICE, "s1", 2))
        wire_status: list[int] = []
        with pytest.raises(exceptions.CosmosBatchOperationError) as caught:
            await container.execute_item_batch(
                [("create", (message(ALICE, "s1", 1),)), ("create", (message(ALICE, "s1", 2),))],
                partition_key=ALICE,
                raw_response_hook=lambda r: wire_status.append(r.http_response.status_code),
            )
        assert wire_status == [207]  # Multi-Status, as Cosmos answers a failed batch
        error = caught.value
        assert error.status_code == 409
        assert error.error_index == 1
        assert [r["statusCode"] for r in error.operation_responses] == [424, 409]
        assert not await exists(container, "s1:000001", ALICE)

    store.run(scenario)


def test_batch_if_match_mismatch_is_412_and_applies_nothing(store: Store) -> None:
    """Parley's turn: { create message, replace session if-match } loses a race as a whole."""

    async def scenario(container: AsyncContainerProxy) -> None:
        stale = await container.create_item(session(ALICE, "s1", lastSeq=0))
        winner = await container.replace_item("s1", session(ALICE, "s1", lastSeq=1))
        with pytest.raises(exceptions.CosmosBatchOperationError) as caught:
            await container.execute_item_batch(
                [
                    ("create", (message(ALICE, "s1", 1),)),
                    (
                        "replace",
                        ("s1", session(ALICE, "s1", lastSeq=1, title="loser")),
                        {"if_match_etag": stale["_etag"]},
                    ),
                ],
                partition_key=ALICE,
            )
        assert caught.value.status_code == 412
        assert caught.value.error_index == 1
        assert [r["statusCode"] for r in caught.value.operation_responses] == [424, 412]
        assert not await exists(container, "s1:000001", ALICE)
        head = await container.read_item("s1", partition_key=ALICE)
        assert head["_etag"] == winner["_etag"]
        assert "title" not in head

    store.run(scenario)


def test_failed_batch_restores_replaced_deleted_patched_and_upserted_items(store: Store) -> None:
    async def scenario(container: AsyncContainerProxy) -> None:
        a = await container.create_item(session(ALICE, "a", title="a", nested={"n": 1}))
        b = await container.create_item(session(ALICE, "b", title="b"))
        with pytest.raises(exceptions.CosmosBatchOperationError) as caught:
            await container.execute_item_batch(
                [
                    ("replace", ("a", session(ALICE, "a", title="changed"))),
                    ("patch", ("a", [{"op": "set", "path": "/nested/n", "value": 2}])),
                    ("delete", ("b",)),
                    ("upsert", (session(ALICE, "c"),)),
                    ("upsert", (session(ALICE, "b", title="back"),)),
                    ("read", ("missing",)),
                ],
                partition_key=ALICE,
            )
        assert caught.value.status_code == 404
        assert caught.value.error_index == 5
        assert [r["statusCode"] for r in caught.value.operation_responses] == [424] * 5 + [404]
        assert await container.read_item("a", partition_key=ALICE) == a
        assert await container.read_item("b", partition_key=ALICE) == b
        assert not await exists(container, "c", ALICE)

    store.run(scenario)


def test_batch_of_more_than_100_operations_is_400_and_applies_nothing(store: Store) -> None:
    async def scenario(container: AsyncContainerProxy) -> None:
        ops = [("create", (message(ALICE, "s1", seq),)) for seq in range(101)]
        with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
            await container.execute_item_batch(ops, partition_key=ALICE)
        assert caught.value.status_code == 400
        assert not await exists(container, "s1:000000", ALICE)
        results = await container.execute_item_batch(ops[:100], partition_key=ALICE)
        assert len(results) == 100

    store.run(scenario)


def test_batch_item_of_another_partition_fails_the_batch(store: Store) -> None:
    async def scenario(container: AsyncContainerProxy) -> None:
        with pytest.raises(exceptions.CosmosBatchOperationError) as caught:
            await container.execute_item_batch(
                [("create", (message(ALICE, "s1", 1),)), ("create", (message(BOB, "s1", 2),))],
                partition_key=ALICE,
            )
        assert caught.value.status_code == 400
        assert not await exists(container, "s1:000001", ALICE)

    store.run(scenario)


def test_batch_with_the_sync_client(store: Store) -> None:
    head = store.sync.create_item(session(ALICE, "s1"))
    results = store.sync.execute_item_batch(
        [
            ("create", (message(ALICE, "s1", 1),)),
            ("replace", ("s1", session(ALICE, "s1", lastSeq=1)), {"if_match_etag": head["_etag"]}),
        ],
        partition_key=ALICE,
    )
    assert [r["statusCode"] for r in results] == [201, 200]
    wire_status: list[int] = []
    with pytest.raises(exceptions.CosmosBatchOperationError) as caught:
        store.sync.execute_item_batch(
            [
                ("create", (message(ALICE, "s1", 2),)),
                ("replace", ("s1", session(ALICE, "s1")), {"if_match_etag": head["_etag"]}),
            ],
            partition_key=ALICE,
            raw_response_hook=lambda r: wire_status.append(r.http_response.status_code),
        )
    assert caught.value.status_code == 412
    assert wire_status == [207]
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        store.sync.read_item("s1:000002", partition_key=ALICE)


# --- queries ------------------------------------------------------------------------------------


def seed_sessions(container: ContainerProxy) -> dict[str, list[dict]]:
    """Sessions (with ties on updatedAt) and messages in three partitions."""
    seeded: dict[str, list[dict]] = {}
    for email, count in ((ALICE, 7), (BOB, 4), (CAROL, 2)):
        seeded[email] = []
        for i in range(count):
            item = session(email, f"s{i}", f"2024-01-0{1 + i % 3}T00:00:00Z")
            seeded[email].append(container.create_item(item))
            container.create_item(message(email, f"s{i}", 1))
    return seeded


def test_query_with_partition_key_reads_only_that_partition(store: Store) -> None:
    seed_sessions(store.sync)
    count = list(store.sync.query_items("SELECT VALUE COUNT(1) FROM c", partition_key=BOB))
    assert count == [8]

    async def scenario(container: AsyncContainerProxy) -> list:
        query = "SELECT c.id FROM c WHERE c.type = @type"
        params = [{"name": "@type", "value": "session"}]
        items = container.query_items(query, parameters=params, partition_key=CAROL)
        return sorted([i["id"] async for i in items])

    assert store.run(scenario) == ["s0", "s1"]


def expected_list_order(items: list[dict]) -> list[str]:
    return [i["id"] for i in sorted(items, key=lambda i: (i["updatedAt"], i["id"]), reverse=True)]


def test_order_by_pages_resume_in_a_new_query_call(store: Store) -> None:
    seeded = seed_sessions(store.sync)
    expected = expected_list_order(seeded[ALICE])

    def page_sync(token: str | None) -> tuple[list[str], str | None]:
        pager = store.sync.query_items(LIST_QUERY, partition_key=ALICE, max_item_count=3).by_page(
            token
        )
        ids = [i["id"] for i in next(pager)]
        return ids, pager.continuation_token

    pages, token = [], None
    while True:
        ids, token = page_sync(token)
        pages.append(ids)
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == expected

    async def scenario(container: AsyncContainerProxy) -> list[list[str]]:
        pages, token = [], None
        while True:
            pager = container.query_items(
                LIST_QUERY, partition_key=ALICE, max_item_count=3
            ).by_page(token)
            pages.append([i["id"] async for i in await pager.__anext__()])
            token = pager.continuation_token
            if not token:
                return pages

    assert store.run(scenario) == pages


def test_order_by_two_properties_needs_a_composite_index(store: Store) -> None:
    """As in Cosmos: served by the composite index or its reverse; otherwise 400."""
    seeded = seed_sessions(store.sync)
    ascending = LIST_QUERY.replace("DESC", "ASC")
    ids = [i["id"] for i in store.sync.query_items(ascending, partition_key=ALICE)]
    assert ids == expected_list_order(seeded[ALICE])[::-1]
    mixed = "SELECT c.id FROM c ORDER BY c.updatedAt DESC, c.id ASC"
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        list(store.sync.query_items(mixed, partition_key=ALICE))
    assert caught.value.status_code == 400


def test_cross_partition_query_pages_with_continuation(store: Store) -> None:
    seeded = seed_sessions(store.sync)
    params = [{"name": "@cutoff", "value": "2024-01-03T00:00:00Z"}]
    expected = sorted(
        (i["EmailID"], i["id"])
        for items in seeded.values()
        for i in items
        if i["updatedAt"] < "2024-01-03"
    )

    pager = store.sync.query_items(
        ARCHIVE_QUERY, parameters=params, enable_cross_partition_query=True, max_item_count=2
    ).by_page()
    pages, tokens = [], []
    for page in pager:
        pages.append(list(page))
        tokens.append(pager.continuation_token)
    assert all(len(p) <= 2 for p in pages) and len(pages) > 2
    found = [(i["EmailID"], i["id"]) for p in pages for i in p]
    assert sorted(found) == expected
    assert all(set(i) == {"id", "EmailID", "updatedAt", "_etag"} for p in pages for i in p)

    async def scenario(container: AsyncContainerProxy) -> list[tuple[str, str]]:
        # the async client is cross-partition when no partition key is given; resume each page
        # from the previous page's token in a new query call
        found, token = [], None
        while True:
            pager = container.query_items(
                ARCHIVE_QUERY, parameters=params, max_item_count=2
            ).by_page(token)
            found += [(i["EmailID"], i["id"]) async for i in await pager.__anext__()]
            token = pager.continuation_token
            if not token:
                return found

    assert sorted(store.run(scenario)) == expected


def test_query_features_parley_uses(store: Store) -> None:
    store.sync.create_item(session(ALICE, "s1", context=[{"role": "user"}, {"role": "assistant"}]))
    store.sync.create_item(session(ALICE, "s2"))
    store.sync.create_item(message(ALICE, "s1", 1))
    query = (
        "SELECT c.id, ARRAY_LENGTH(c.context) AS n, IS_DEFINED(c.context) AS has, c._etag, c._ts "
        "FROM c WHERE c.type = @type ORDER BY c.id"
    )
    params = [{"name": "@type", "value": "session"}]
    rows = list(store.sync.query_items(query, parameters=params, partition_key=ALICE))
    assert [(r["id"], r.get("n"), r["has"]) for r in rows] == [("s1", 2, True), ("s2", None, False)]
    assert all(isinstance(r["_etag"], str) and isinstance(r["_ts"], int) for r in rows)

    async def scenario(container: AsyncContainerProxy) -> tuple[list, list, list]:
        count = container.query_items(
            "SELECT VALUE COUNT(1) FROM c WHERE c.type = 'message' AND c.sessionId = @sid",
            parameters=[{"name": "@sid", "value": "s1"}],
            partition_key=ALICE,
        )
        ids = container.query_items(
            "SELECT VALUE c.id FROM c WHERE NOT IS_DEFINED(c.context) AND c.type = 'session'",
            partition_key=ALICE,
        )
        top = container.query_items(
            "SELECT TOP 1 VALUE c.id FROM c WHERE c.type = 'session' ORDER BY c.id DESC",
            partition_key=ALICE,
        )
        return [c async for c in count], [i async for i in ids], [t async for t in top]

    assert store.run(scenario) == ([1], ["s2"], ["s2"])


# --- extras Parley does not depend on -------------------------------------------------------------


def test_delete_all_items_by_partition_key(store: Store) -> None:
    seed_sessions(store.sync)

    async def scenario(container: AsyncContainerProxy) -> tuple[list, list]:
        await container.delete_all_items_by_partition_key(BOB)
        count = "SELECT VALUE COUNT(1) FROM c"
        left = [c async for c in container.query_items(count, partition_key=BOB)]
        others = [c async for c in container.query_items(count, partition_key=ALICE)]
        return left, others

    assert store.run(scenario) == ([0], [14])
