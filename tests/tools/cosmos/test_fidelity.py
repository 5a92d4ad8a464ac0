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
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey, exceptions
from azure.cosmos.aio import ContainerProxy as AsyncContainerProxy
from azure.cosmos.aio import CosmosClient as AsyncCosmosClient

from shared.storage.containers import ContainerSpec
from tests.tools.cosmos.fidelity_support import (
    ALICE,
    ARCHIVE_QUERY,
    BOB,
    CAROL,
    CONTAINER,
    INDEXING_POLICY,
    LIST_QUERY,
    MB,
    Store,
    exists,
    fresh_store,
    lsn_of,
    message,
    page_of,
    page_of_sync,
    session,
    sync_client,
)
from tools.local.cosmos import CosmosAccount, cosmos_target

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("COSMOS_ENDPOINT", "").strip()),
        reason="these tests check the local Cosmos server (tools/cosmos), and COSMOS_ENDPOINT "
        "names another account",
    ),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]


@pytest.fixture(scope="module")
def account() -> Iterator[CosmosAccount]:
    with cosmos_target() as target:
        yield target


@pytest.fixture
def store(account: CosmosAccount) -> Iterator[Store]:
    with fresh_store(account) as created:
        yield created


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


def test_batch_patch_answers_the_item_as_written_and_404_when_it_is_missing(
    store: Store,
) -> None:
    """A move's fence (``moves.py: _touch``): an unconditional patch in a batch answers with the
    item as written (the latest state, a new ETag) and a missing item is refused with 404."""

    async def scenario(container: AsyncContainerProxy) -> None:
        before = await container.create_item(session(ALICE, "s1", title="t"))
        touch = [{"op": "set", "path": "/touched", "value": "now"}]
        results = await container.execute_item_batch(
            [("patch", ("s1", touch))], partition_key=ALICE
        )
        written = results[0]["resourceBody"]
        assert written["title"] == "t" and written["touched"] == "now"
        assert written["_etag"] == results[0]["eTag"] != before["_etag"]
        with pytest.raises(exceptions.CosmosBatchOperationError) as caught:
            await container.execute_item_batch([("patch", ("nope", touch))], partition_key=ALICE)
        assert caught.value.status_code == 404
        assert caught.value.error_index == 0

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


def test_concurrent_incr_patches_are_all_applied(store: Store) -> None:
    # Usage counting (shared/storage/cosmos/usage.py) relies on it: Azure applies each patch's
    # "incr" to the item as it stands, so concurrent increments need no read and no ETag.
    async def scenario(container: AsyncContainerProxy) -> None:
        await container.create_item({"id": "u", "EmailID": ALICE, "type": "usage", "n": 0})
        ops = [{"op": "incr", "path": "/n", "value": 3}, {"op": "incr", "path": "/m", "value": 1}]
        await asyncio.gather(
            *(
                container.execute_item_batch([("patch", ("u", ops))], partition_key=ALICE)
                for _ in range(20)
            )
        )
        item = await container.read_item("u", partition_key=ALICE)
        assert (item["n"], item["m"]) == (60, 20)  # "m" was absent: created by the first incr

    store.run(scenario)


def test_a_patch_of_a_missing_item_fails_its_batch_with_404_at_its_index(store: Store) -> None:
    async def scenario(container: AsyncContainerProxy) -> None:
        await container.create_item({"id": "day", "EmailID": ALICE, "type": "usage", "n": 1})
        incr = [{"op": "incr", "path": "/n", "value": 5}]
        with pytest.raises(exceptions.CosmosBatchOperationError) as caught:
            await container.execute_item_batch(
                [("patch", ("day", incr)), ("patch", ("month", incr))], partition_key=ALICE
            )
        assert caught.value.status_code == 404 and caught.value.error_index == 1
        assert (await container.read_item("day", partition_key=ALICE))["n"] == 1

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


def test_a_partition_query_follows_every_kind_of_write(store: Store) -> None:
    """The server keeps each logical partition's items apart (a partition's query reads only
    that partition, as in Cosmos); creates, replaces, upserts, deletes, a refused batch and a
    partition delete must all show in the next query of that partition and no other."""

    async def titles(container: AsyncContainerProxy, email: str) -> list[tuple[str, str]]:
        query = "SELECT c.id, c.title FROM c"
        found = container.query_items(query, partition_key=email)
        return sorted([(i["id"], i["title"]) async for i in found])

    async def scenario(container: AsyncContainerProxy) -> None:
        for email in (ALICE, BOB):
            await container.create_item(session(email, "a", title="a"))
            await container.create_item(session(email, "b", title="b"))
        await container.replace_item("a", session(ALICE, "a", title="a2"))
        await container.upsert_item(session(ALICE, "c", title="c"))
        await container.delete_item("b", partition_key=ALICE)
        with pytest.raises(exceptions.CosmosBatchOperationError):
            await container.execute_item_batch(
                [("delete", ("a",)), ("create", (session(ALICE, "d"),)), ("read", ("none",))],
                partition_key=ALICE,
            )
        assert await titles(container, ALICE) == [("a", "a2"), ("c", "c")]
        assert await titles(container, BOB) == [("a", "a"), ("b", "b")]
        await container.delete_all_items_by_partition_key(ALICE)
        await container.create_item(session(ALICE, "b", title="again"))
        assert await titles(container, ALICE) == [("b", "again")]
        assert await titles(container, BOB) == [("a", "a"), ("b", "b")]

    store.run(scenario)


def expected_list_order(items: list[dict]) -> list[str]:
    return [i["id"] for i in sorted(items, key=lambda i: (i["updatedAt"], i["id"]), reverse=True)]


def test_order_by_pages_resume_in_a_new_query_call(store: Store) -> None:
    seeded = seed_sessions(store.sync)
    expected = expected_list_order(seeded[ALICE])

    def page_sync(token: str | None) -> tuple[list[str], str | None]:
        pager = store.sync.query_items(LIST_QUERY, partition_key=ALICE, max_item_count=3).by_page(
            token
        )
        items, next_token = page_of_sync(pager)
        return [i["id"] for i in items], next_token

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
            items, token = await page_of(pager)
            pages.append([i["id"] for i in items])
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
            items, token = await page_of(pager)
            found += [(i["EmailID"], i["id"]) for i in items]
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


# --- session consistency ---------------------------------------------------------------------


def test_account_reports_session_consistency(store: Store) -> None:
    """The SDK reads the account's default consistency (the aio client in __aenter__) and keeps
    session tokens only when it is Session, as a new Azure account's is."""
    client = sync_client(store.account)
    assert client.get_database_account().ConsistencyPolicy["defaultConsistencyLevel"] == "Session"

    async def scenario(container: AsyncContainerProxy) -> bool:
        return container.client_connection.session is not None

    assert store.run(scenario)


def test_session_tokens_flow_from_writes_to_reads_and_queries(store: Store) -> None:
    """Every response on items carries `0:-1#<LSN>`, the LSN advances on every write, and the
    aio client (entered with `async with`) sends the token back on reads and queries."""
    seen: list[tuple[str | None, str | None]] = []  # (token sent, token received)

    def hook(response: Any) -> None:
        seen.append(
            (
                response.http_request.headers.get("x-ms-session-token"),
                response.http_response.headers.get("x-ms-session-token"),
            )
        )

    async def scenario(container: AsyncContainerProxy) -> None:
        await container.create_item(session(ALICE, "s1"), raw_response_hook=hook)
        first = seen[-1][1]
        await container.read_item("s1", partition_key=ALICE, raw_response_hook=hook)
        assert seen[-1] == (first, first)
        query = container.query_items(
            "SELECT * FROM c", partition_key=ALICE, raw_response_hook=hook
        )
        assert [i["id"] async for i in query] == ["s1"]
        assert seen[-1] == (first, first)
        await container.upsert_item(session(ALICE, "s1", title="t"), raw_response_hook=hook)
        second = seen[-1][1]
        assert lsn_of(second) > lsn_of(first)
        await container.delete_item("s1", partition_key=ALICE, raw_response_hook=hook)
        third = seen[-1][1]
        assert lsn_of(third) > lsn_of(second)
        cross = container.query_items("SELECT * FROM c", raw_response_hook=hook)
        assert [i async for i in cross] == []
        assert seen[-1] == (third, third)

    store.run(scenario)


def test_errors_on_items_carry_the_session_token(store: Store) -> None:
    """404 (missing item), 409 and 412 are stamped with the token, as Cosmos does (the SDKs
    capture it from these); a refused write does not advance the LSN."""

    async def scenario(container: AsyncContainerProxy) -> None:
        created = await container.create_item(session(ALICE, "s1"))
        token = created.get_response_headers()["x-ms-session-token"]
        await container.replace_item("s1", session(ALICE, "s1", title="new"))
        after_replace = container.client_connection.last_response_headers["x-ms-session-token"]
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: container.read_item("nope", partition_key=ALICE),
            lambda: container.create_item(session(ALICE, "s1")),
            lambda: container.replace_item(
                "s1",
                session(ALICE, "s1"),
                etag=created["_etag"],
                match_condition=MatchConditions.IfNotModified,
            ),
        ]
        statuses = []
        for attempt in attempts:
            with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
                await attempt()
            statuses.append(caught.value.status_code)
            assert caught.value.headers["x-ms-session-token"] == after_replace
        assert statuses == [404, 409, 412]
        assert lsn_of(after_replace) > lsn_of(token)

    store.run(scenario)


# --- request charges ---------------------------------------------------------------------------


def charge(container: ContainerProxy | AsyncContainerProxy) -> float:
    return float(container.client_connection.last_response_headers["x-ms-request-charge"])


def test_request_charges_follow_the_size_based_estimate(store: Store) -> None:
    """tools/cosmos/README.md: point read 1 + 0.14 (KB - 1), write 5 + 0.68 (KB - 1),
    query 2.5 + 0.02 per item examined + 0.14 per KB returned, batch the sum."""
    c = store.sync
    small = session(ALICE, "small", blob="x" * 700)  # under 1 KB
    big = session(ALICE, "big", blob="x" * (64 * 1024 - 200))  # about 64 KB
    c.create_item(small)
    assert charge(c) == 5
    c.create_item(big)
    assert 47 <= charge(c) <= 49  # Azure's table: ~48 RU to write 64 KB
    c.read_item("small", partition_key=ALICE)
    assert charge(c) == 1
    c.read_item("big", partition_key=ALICE)
    assert 9 <= charge(c) <= 10.5  # Azure's table: ~10 RU to read 64 KB
    with pytest.raises(exceptions.CosmosResourceNotFoundError) as caught:
        c.read_item("nope", partition_key=ALICE)
    assert caught.value.headers["x-ms-request-charge"] == "1"

    # A filter on a path the policy does not index examines the whole partition.
    list(c.query_items("SELECT VALUE c.id FROM c WHERE c.blob = 'none'", partition_key=ALICE))
    few = charge(c)
    for i in range(50):
        c.create_item(message(ALICE, "s1", i))
    list(c.query_items("SELECT VALUE c.id FROM c WHERE c.blob = 'none'", partition_key=ALICE))
    assert round(charge(c) - few, 2) == 1.0  # 50 more items examined at 0.02
    list(c.query_items("SELECT * FROM c WHERE c.id = 'big'", partition_key=ALICE))
    assert charge(c) > few + 8  # ~64 KB returned

    results = c.execute_item_batch(
        [("read", ("small",)), ("upsert", (message(ALICE, "s2", 1),)), ("delete", ("big",))],
        partition_key=ALICE,
    )
    per_operation = [r["requestCharge"] for r in results]
    assert per_operation[0] == 1 and per_operation[1] == 5 and 47 <= per_operation[2] <= 49
    assert charge(c) == pytest.approx(sum(per_operation), abs=0.01)
    c.delete_item("small", partition_key=ALICE)
    assert charge(c) == 5


def test_a_query_is_charged_by_what_the_index_serves(store: Store) -> None:
    """tools/cosmos/index-cost.mjs, as Azure uses an index ("Index usage": a seek or a range
    loads the items it matches, a full scan every item in scope): an equality and a range one
    composite index covers examine what they match; a negative filter (NOT IS_DEFINED, !=), a
    path the policy excludes, or filters on several paths no composite index covers examine
    more. Parley's archival scans rely on the first (docs/design.md, "Indexing")."""
    database = sync_client(store.account).get_database_client(store.database)
    c = database.create_container(
        "Indexed",
        partition_key=PartitionKey("/EmailID"),
        indexing_policy=ContainerSpec("Indexed").indexing_policy,
        full_text_policy=ContainerSpec("Indexed").full_text_policy,
    )
    old, cutoff = "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"
    users = [ALICE, BOB, CAROL]

    def stubs(first: int, count: int) -> None:
        for i in range(first, first + count):
            c.create_item(
                session(users[i % 3], f"stub{i}", old, state="archived", since=old, cleanup=False)
            )

    for i in range(5):
        c.create_item(session(users[i % 3], f"live{i}", old, live=True))
        c.create_item(session(users[i % 3], f"fresh{i}", "2025-01-01T00:00:00Z", live=True))
    c.create_item(session(ALICE, "gone", old, state="deleting", since=old))
    stubs(0, 100)
    params = [{"name": "@cutoff", "value": cutoff}]
    queries = {
        "positive": "SELECT c.id FROM c WHERE c.live = true AND c.updatedAt < @cutoff",
        "not_defined": "SELECT c.id FROM c WHERE c.type = 'session'"
        " AND NOT IS_DEFINED(c.state) AND c.updatedAt < @cutoff",
        "not_equal": "SELECT c.id FROM c WHERE c.state != 'archived' AND c.since < @cutoff",
        "unindexed": "SELECT c.id FROM c WHERE c.role = 'user'",
        "uncovered": "SELECT c.id FROM c WHERE c.live = true AND c.since < @cutoff",
        "state": "SELECT c.id FROM c WHERE c.state = 'deleting' AND c.since < @cutoff",
    }

    def charges() -> dict[str, tuple[float, list[str]]]:
        out = {}
        for name, query in queries.items():
            found = c.query_items(query, parameters=params, enable_cross_partition_query=True)
            ids = sorted(item["id"] for item in found)
            out[name] = (charge(c), ids)
        return out

    before = charges()
    stubs(100, 100)
    after = charges()
    assert before["positive"][1] == [f"live{i}" for i in range(5)]
    assert before["state"][1] == ["gone"]
    for name in ("positive", "state"):  # served: 100 more stubs cost nothing
        assert after[name] == before[name], name
    # Not served (or, uncovered, served path by path): each of the 100 stubs is read.
    for name in ("not_defined", "not_equal", "unindexed", "uncovered"):
        assert round(after[name][0] - before[name][0], 2) == 2.0, name
        assert after[name][1] == before[name][1], name
    # The served one reads its 5 items; the full scan all 111 (the formula of the README).
    assert before["positive"][0] < 2.5 + 0.02 * 5 + 0.14
    assert before["unindexed"][0] == pytest.approx(2.5 + 0.02 * 111, abs=0.01)


# --- payload size as sent ----------------------------------------------------------------------


def test_payload_is_weighed_as_sent_with_non_ascii_escaped(store: Store) -> None:
    """The SDK sends `é` as `\\u00e9` (6 bytes): 400 000 of them are 2.4 MB as sent though
    0.8 MB in UTF-8, and Cosmos weighs what was sent against its 2 MB limits."""
    accents = "é" * 4_000

    async def scenario(container: AsyncContainerProxy) -> None:
        batch = [("create", (message(ALICE, "s1", seq, content=accents),)) for seq in range(100)]
        with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
            await container.execute_item_batch(batch, partition_key=ALICE)
        assert caught.value.status_code == 413
        assert not await exists(container, "s1:000000", ALICE)

        with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
            await container.create_item(session(ALICE, "big", blob="é" * 400_000))
        assert caught.value.status_code == 413
        assert not await exists(container, "big", ALICE)

        # Under the limit as sent (1.8 MB): stored; a patch that grows it past 2 MB as sent
        # (though 0.8 MB in UTF-8) is refused and changes nothing.
        await container.create_item(session(ALICE, "near", blob="é" * 300_000))
        with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
            await container.patch_item(
                "near",
                partition_key=ALICE,
                patch_operations=[{"op": "set", "path": "/more", "value": "ü" * 60_000}],
            )
        assert caught.value.status_code == 413
        assert "more" not in await container.read_item("near", partition_key=ALICE)

    store.run(scenario)


# --- paging --------------------------------------------------------------------------------------


def test_exactly_full_last_page_carries_a_token_to_an_empty_page(store: Store) -> None:
    """As Cosmos may: 6 items by 3 give pages of 3, 3 (with a token) and then an empty page with
    no token. The SDK yields no page for it and keeps the token it was given."""
    for i in range(6):
        store.sync.create_item(session(ALICE, f"s{i}", f"2024-01-0{1 + i % 3}T00:00:00Z"))
    for query in (LIST_QUERY, "SELECT c.id FROM c"):
        items, tokens, token = [], [], None
        for _ in range(3):  # two pages, then the empty one
            pager = store.sync.query_items(query, partition_key=ALICE, max_item_count=3)
            page, next_token = page_of_sync(pager.by_page(token))
            if not page:
                break
            items += page
            tokens.append(next_token)
            token = next_token
        assert len(items) == 6 and len({i["id"] for i in items}) == 6
        assert all(tokens), "the full last page carries a continuation token"
        empty = store.sync.query_items(query, partition_key=ALICE, max_item_count=3).by_page(token)
        assert page_of_sync(empty) == ([], None)
        assert empty.continuation_token == token  # the SDK's pager keeps the stale token

    # The token of the full last page resumes after its last item: a later item is returned.
    store.sync.create_item(session(ALICE, "s9", "2023-12-31T00:00:00Z"))
    later = store.sync.query_items(LIST_QUERY, partition_key=ALICE, max_item_count=3)
    last_token = tokens[-1]
    page, _ = page_of_sync(later.by_page(last_token))
    assert [i["id"] for i in page] == ["s9"]


# --- missing owners ------------------------------------------------------------------------------


def test_missing_container_or_database_is_404_with_substatus_1003(store: Store) -> None:
    """Distinguishable from a missing item (404, substatus 0): point reads, queries, batches
    and writes under a container that was deleted, or a database that does not exist."""
    with pytest.raises(exceptions.CosmosResourceNotFoundError) as caught:
        store.sync.read_item("nope", partition_key=ALICE)
    assert caught.value.sub_status == 0

    client = sync_client(store.account)
    database = client.get_database_client(store.database)
    database.create_container("Gone", partition_key=PartitionKey("/EmailID"))
    gone = database.get_container_client("Gone")
    gone.read()  # the SDK now caches the container's properties, as a running app would
    database.delete_container("Gone")
    elsewhere = client.get_database_client("no-such-database").get_container_client(CONTAINER)

    for container in (gone, elsewhere):
        for operation in item_operations(container):
            with pytest.raises(exceptions.CosmosResourceNotFoundError) as caught:
                operation()
            assert caught.value.sub_status == 1003


def item_operations(container: ContainerProxy) -> list[Callable[[], Any]]:
    """A point read, a query, a create, an upsert and a batch on ``container``."""
    return [
        lambda: container.read_item("s1", partition_key=ALICE),
        lambda: list(container.query_items("SELECT * FROM c", partition_key=ALICE)),
        lambda: container.create_item(session(ALICE, "s1")),
        lambda: container.upsert_item(session(ALICE, "s1")),
        lambda: container.execute_item_batch(
            [("create", (session(ALICE, "s1"),))], partition_key=ALICE
        ),
    ]


# --- query features Parley is about to use -------------------------------------------------------


def query_ids(store: Store, query: str, **params: Any) -> list[Any]:
    parameters = [{"name": f"@{k}", "value": v} for k, v in params.items()]
    return list(store.sync.query_items(query, parameters=parameters, partition_key=ALICE))


def test_contains_ignoring_case_and_lower(store: Store) -> None:
    store.sync.create_item(session(ALICE, "s1", title="Trip to PARIS"))
    store.sync.create_item(session(ALICE, "s2", title="paris notes"))
    store.sync.create_item(session(ALICE, "s3", title="Berlin"))
    store.sync.create_item(session(ALICE, "s4"))  # no title: CONTAINS is undefined, not true
    search = "SELECT VALUE c.id FROM c WHERE CONTAINS(c.title, @q, true) ORDER BY c.id"
    assert query_ids(store, search, q="Paris") == ["s1", "s2"]
    exact = "SELECT VALUE c.id FROM c WHERE CONTAINS(c.title, @q) ORDER BY c.id"
    assert query_ids(store, exact, q="paris") == ["s2"]
    assert query_ids(store, exact.replace("@q)", "@q, false)"), q="paris") == ["s2"]
    lowered = "SELECT VALUE c.id FROM c WHERE CONTAINS(LOWER(c.title), @q) ORDER BY c.id"
    assert query_ids(store, lowered, q="paris") == ["s1", "s2"]
    assert query_ids(store, "SELECT VALUE LOWER(c.title) FROM c WHERE c.id = 's1'") == [
        "trip to paris"
    ]


def test_top_parameter_in_not_is_defined_array_length_and_count(store: Store) -> None:
    for i in range(5):
        extra = {"context": [{"role": "user"}] * i} if i % 2 else {}
        store.sync.create_item(session(ALICE, f"s{i}", **extra))
    top = "SELECT TOP @n VALUE c.id FROM c WHERE c.type = 'session' ORDER BY c.id DESC"
    assert query_ids(store, top, n=2) == ["s4", "s3"]
    within = "SELECT VALUE c.id FROM c WHERE c.id IN (@a, @b, 's9') ORDER BY c.id"
    assert query_ids(store, within, a="s1", b="s4") == ["s1", "s4"]
    bare = "SELECT VALUE c.id FROM c WHERE NOT IS_DEFINED(c.context) ORDER BY c.id"
    assert query_ids(store, bare) == ["s0", "s2", "s4"]
    lengths = "SELECT VALUE ARRAY_LENGTH(c.context) FROM c WHERE IS_DEFINED(c.context)"
    assert sorted(query_ids(store, lengths)) == [1, 3]
    counted = "SELECT VALUE COUNT(1) FROM c WHERE c.type = @type AND IS_DEFINED(c.context)"
    assert query_ids(store, counted, type="session") == [2]


def test_keyset_paging_over_a_two_property_order(store: Store) -> None:
    """(updatedAt, id) DESC with ties on updatedAt: each page starts after the last one seen."""
    stamps = ["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-02", "2024-01-03", "2024-01-01"]
    for i, stamp in enumerate(stamps):
        store.sync.create_item(session(ALICE, f"s{i}", stamp))
    expected = [
        i["id"]
        for i in sorted(
            (session(ALICE, f"s{i}", s) for i, s in enumerate(stamps)),
            key=lambda i: (i["updatedAt"], i["id"]),
            reverse=True,
        )
    ]
    first = "SELECT TOP @n c.id, c.updatedAt FROM c ORDER BY c.updatedAt DESC, c.id DESC"
    after = (
        "SELECT TOP @n c.id, c.updatedAt FROM c "
        "WHERE (c.updatedAt < @u OR (c.updatedAt = @u AND c.id < @id)) "
        "ORDER BY c.updatedAt DESC, c.id DESC"
    )
    seen: list[str] = []
    page = query_ids(store, first, n=2)
    while page:
        seen += [i["id"] for i in page]
        page = query_ids(store, after, n=2, u=page[-1]["updatedAt"], id=page[-1]["id"])
    assert seen == expected


def test_order_by_with_an_equality_filter_uses_the_composite_index(store: Store) -> None:
    for i in range(3):
        store.sync.create_item(session(ALICE, f"s{i}", f"2024-01-0{i + 1}T00:00:00Z"))
        store.sync.create_item(message(ALICE, "s1", i + 1))
    sessions = (
        "SELECT VALUE c.id FROM c WHERE c.type = 'session' "
        "ORDER BY c.type DESC, c.updatedAt DESC, c.id DESC"
    )
    assert query_ids(store, sessions) == ["s2", "s1", "s0"]
    messages = (
        "SELECT TOP @n VALUE c.seq FROM c WHERE c.sessionId = @s AND c.type = 'message' "
        "ORDER BY c.sessionId DESC, c.seq DESC"
    )
    assert query_ids(store, messages, n=2, s="s1") == [3, 2]
    reverse = messages.replace("DESC", "ASC")  # the index's exact reverse serves it too
    assert query_ids(store, reverse, n=2, s="s1") == [1, 2]
    unindexed = "SELECT VALUE c.id FROM c WHERE c.type = 'session' ORDER BY c.type, c.id"
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        query_ids(store, unindexed)
    assert caught.value.status_code == 400
