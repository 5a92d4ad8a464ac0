"""Time to live on the local Cosmos server (tools/cosmos/ttl.mjs), as Azure documents it
("Time to Live (TTL) in Azure Cosmos DB"; ContainerProperties.DefaultTimeToLive; the SDK's own
test_ttl.py): the container's defaultTtl (absent: off, -1: on without a default, n > 0), the
item's ttl override (-1: never), expiry counted from the last write, an expired item gone at once
for point reads, queries, feed reads, batches and writes, and invalid values refused with 400.

The server runs with its test clock (``test_clock=True``): tests move its time forward instead
of sleeping. Skipped when COSMOS_ENDPOINT names another account.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.cosmos import ContainerProxy, DatabaseProxy, PartitionKey, exceptions

from tests.tools.cosmos.fidelity_support import advance_clock, exists_sync, sync_client
from tools.local.cosmos import CosmosAccount, local_cosmos

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("COSMOS_ENDPOINT", "").strip()),
        reason="these tests check the local Cosmos server (tools/cosmos), and COSMOS_ENDPOINT "
        "names another account",
    ),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]

PK = "p1"


@pytest.fixture(scope="module")
def account() -> Iterator[CosmosAccount]:
    with local_cosmos(test_clock=True) as started:
        yield started


@pytest.fixture
def database(account: CosmosAccount) -> Iterator[DatabaseProxy]:
    client = sync_client(account)
    name = f"ttl-{uuid.uuid4().hex[:12]}"
    created = client.create_database(name)
    try:
        yield created
    finally:
        client.delete_database(name)


def container(database: DatabaseProxy, **kwargs: Any) -> ContainerProxy:
    return database.create_container(
        f"c-{uuid.uuid4().hex[:8]}", partition_key=PartitionKey("/pk"), **kwargs
    )


def item(item_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "pk": PK, **extra}


def query_ids(c: ContainerProxy) -> set[str]:
    return {
        row["id"] for row in c.query_items("SELECT c.id FROM c", enable_cross_partition_query=True)
    }


def feed_ids(c: ContainerProxy) -> set[str]:
    return {row["id"] for row in c.read_all_items()}


def test_default_ttl_expires_items_for_reads_queries_feeds_and_batches(
    account: CosmosAccount, database: DatabaseProxy
) -> None:
    c = container(database, default_ttl=60)
    assert c.read()["defaultTtl"] == 60
    c.create_item(item("default"))  # expires 60 s after its write
    c.create_item(item("never", ttl=-1))  # overrides: never
    c.create_item(item("longer", ttl=100))  # overrides: 100 s

    advance_clock(account, 30)
    assert query_ids(c) == {"default", "never", "longer"}
    assert exists_sync(c, "default", PK)

    advance_clock(account, 31)  # 61 s after the writes
    assert not exists_sync(c, "default", PK)
    assert query_ids(c) == {"never", "longer"}
    assert feed_ids(c) == {"never", "longer"}
    partition_rows = c.query_items("SELECT VALUE COUNT(1) FROM c", partition_key=PK)
    assert list(partition_rows) == [2]
    with pytest.raises(exceptions.CosmosBatchOperationError) as caught:
        c.execute_item_batch([("read", ("default",))], partition_key=PK)
    assert caught.value.status_code == 404
    for write in (
        lambda: c.replace_item("default", item("default")),
        lambda: c.delete_item("default", partition_key=PK),
        lambda: c.patch_item("default", PK, [{"op": "add", "path": "/x", "value": 1}]),
    ):
        with pytest.raises(exceptions.CosmosResourceNotFoundError):
            write()
    # the id is free again: a create succeeds and starts a new lifetime
    c.create_item(item("default"))
    assert exists_sync(c, "default", PK)

    # 110 s after the first writes, 49 after the new one (margins: _ts has whole seconds)
    advance_clock(account, 49)
    assert query_ids(c) == {"never", "default"}
    assert not exists_sync(c, "longer", PK)


def test_expiry_counts_from_the_last_write(account: CosmosAccount, database: DatabaseProxy) -> None:
    c = container(database, default_ttl=60)
    c.create_item(item("a"))
    c.create_item(item("b"))
    advance_clock(account, 50)
    c.upsert_item(item("a", note="rewritten"))
    c.patch_item("b", PK, [{"op": "add", "path": "/note", "value": "patched"}])
    advance_clock(account, 50)  # 100 s after the creates, 50 after the rewrites
    assert query_ids(c) == {"a", "b"}
    advance_clock(account, 11)
    assert query_ids(c) == set()


def test_item_ttl_is_ignored_while_the_container_has_no_ttl(
    account: CosmosAccount, database: DatabaseProxy
) -> None:
    c = container(database)
    assert "defaultTtl" not in c.read()
    c.create_item(item("short", ttl=10))
    c.create_item(item("plain"))
    advance_clock(account, 1000)
    assert query_ids(c) == {"short", "plain"}
    assert exists_sync(c, "short", PK)


def test_default_ttl_minus_one_expires_only_items_with_their_own_ttl(
    account: CosmosAccount, database: DatabaseProxy
) -> None:
    c = container(database, default_ttl=-1)
    c.create_item(item("plain"))
    c.create_item(item("short", ttl=10))
    advance_clock(account, 11)
    assert query_ids(c) == {"plain"}
    advance_clock(account, 100_000)
    assert exists_sync(c, "plain", PK)


def test_turning_ttl_on_by_replacing_the_container_expires_its_items(
    account: CosmosAccount, database: DatabaseProxy
) -> None:
    c = container(database)
    c.create_item(item("old"))
    c.create_item(item("kept", ttl=-1))
    advance_clock(account, 100)
    database.replace_container(c, partition_key=PartitionKey("/pk"), default_ttl=50)
    assert query_ids(c) == {"kept"}  # written 100 s ago: already past a 50 s default
    database.replace_container(c, partition_key=PartitionKey("/pk"))  # TTL off again
    c.create_item(item("new", ttl=5))
    advance_clock(account, 10)
    assert query_ids(c) == {"kept", "new"}


@pytest.mark.parametrize("bad", [0, -10, -2, 1.5, 2147483648])
def test_invalid_default_ttl_is_400(database: DatabaseProxy, bad: Any) -> None:
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        container(database, default_ttl=bad)
    assert caught.value.status_code == 400
    c = container(database, default_ttl=10)
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        database.replace_container(c, partition_key=PartitionKey("/pk"), default_ttl=bad)
    assert caught.value.status_code == 400
    assert c.read()["defaultTtl"] == 10


@pytest.mark.parametrize("bad", [0, None, -10, 1.5, "10", 2147483648])
def test_invalid_item_ttl_is_400_and_writes_nothing(database: DatabaseProxy, bad: Any) -> None:
    c = container(database, default_ttl=10)
    c.create_item(item("kept"))
    writes = (
        lambda: c.create_item(item("new", ttl=bad)),
        lambda: c.upsert_item(item("new", ttl=bad)),
        lambda: c.replace_item("kept", item("kept", ttl=bad)),
        lambda: c.patch_item("kept", PK, [{"op": "add", "path": "/ttl", "value": bad}]),
    )
    for write in writes:
        with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
            write()
        assert caught.value.status_code == 400
    with pytest.raises(exceptions.CosmosBatchOperationError) as batch_error:
        c.execute_item_batch([("create", (item("new", ttl=bad),))], partition_key=PK)
    assert batch_error.value.status_code == 400
    assert query_ids(c) == {"kept"}
    assert "ttl" not in c.read_item("kept", partition_key=PK)


def test_valid_item_ttl_values_are_accepted(database: DatabaseProxy) -> None:
    c = container(database, default_ttl=10)
    for value in (-1, 1, 2147483647):
        c.upsert_item(item(f"i{value}", ttl=value))
    assert len(query_ids(c)) == 3


def test_a_lagging_replica_never_shows_an_expired_item() -> None:
    with local_cosmos(test_clock=True, replica_lag_writes=3) as lagging:
        client = sync_client(lagging)
        db = client.create_database(f"ttl-{uuid.uuid4().hex[:12]}")
        c = container(db, default_ttl=60)
        c.create_item(item("doomed"))
        c.replace_item("doomed", item("doomed", note="v2"))  # hidden: the replica shows v1
        c.create_item(item("x", ttl=-1))
        c.create_item(item("y", ttl=-1))
        advance_clock(lagging, 61)
        fresh = sync_client(lagging).get_database_client(db.id).get_container_client(c.id)
        assert not exists_sync(fresh, "doomed", PK)
        assert query_ids(fresh) == set()  # x and y are still hidden by the lag
        assert query_ids(c) == {"x", "y"}  # the writer's session token covers them
