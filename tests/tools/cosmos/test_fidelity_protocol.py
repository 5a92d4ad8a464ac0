"""Protocol details of the local Cosmos server (tools/cosmos/protocol.mjs) that the azure-cosmos
SDK's own tests rely on (tests/tools/cosmos/sdk): reads and replaces by `_self` link, the `lsn`
header, If-None-Match 304, no_response, patch filter predicates with any alias, the stored
indexing policy, batches on a prefix of a hierarchical key, and replaces that rename an item.
Skipped when COSMOS_ENDPOINT names another account.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, DatabaseProxy, PartitionKey, exceptions

from tests.tools.cosmos.fidelity_support import exists_sync, lsn_of, sync_client
from tools.local.cosmos import CosmosAccount, cosmos_target

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("COSMOS_ENDPOINT", "").strip()),
        reason="these tests check the local Cosmos server (tools/cosmos), and COSMOS_ENDPOINT "
        "names another account",
    ),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]

PK = "p1"
ETAG_PATH = '/"_etag"/?'


@pytest.fixture(scope="module")
def account() -> Iterator[CosmosAccount]:
    with cosmos_target() as target:
        yield target


@pytest.fixture
def database(account: CosmosAccount) -> Iterator[DatabaseProxy]:
    client = sync_client(account)
    name = f"protocol-{uuid.uuid4().hex[:12]}"
    created = client.create_database(name)
    try:
        yield created
    finally:
        client.delete_database(name)


@pytest.fixture
def container(database: DatabaseProxy) -> ContainerProxy:
    return database.create_container("items", partition_key=PartitionKey("/pk"))


def item(item_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "pk": PK, **extra}


def headers(c: ContainerProxy) -> Any:
    return c.client_connection.last_response_headers


def test_read_and_replace_by_self_link(container: ContainerProxy) -> None:
    created = container.create_item(item("a", n=1))
    # a dict is addressed by its _self link (dbs/<rid>/colls/<rid>/docs/<rid>), signed by rid
    assert container.read_item(created, partition_key=PK)["n"] == 1
    replaced = container.replace_item(created, item("a", n=2))
    assert replaced["n"] == 2
    assert container.read_item("a", partition_key=PK)["n"] == 2


def test_point_operations_and_batches_report_their_lsn(container: ContainerProxy) -> None:
    container.create_item(item("a"))
    lsn = lsn_of(headers(container)["x-ms-session-token"])
    assert int(headers(container)["lsn"]) == lsn
    container.read_item("a", partition_key=PK)
    assert int(headers(container)["lsn"]) == lsn
    result = container.execute_item_batch(
        [("create", (item("b"),)), ("upsert", (item("c"),))], partition_key=PK
    )
    assert int(result.get_response_headers()["lsn"]) == lsn + 1  # a batch is one write


def test_if_none_match_with_the_current_etag_is_304(container: ContainerProxy) -> None:
    created = container.create_item(item("a"))
    statuses: list[int] = []
    unchanged = container.read_item(
        "a",
        partition_key=PK,
        etag=created["_etag"],
        match_condition=MatchConditions.IfModified,
        raw_response_hook=lambda response: statuses.append(response.http_response.status_code),
    )
    assert statuses == [304]
    assert unchanged == {}
    container.upsert_item(item("a", n=2))
    changed = container.read_item(
        "a", partition_key=PK, etag=created["_etag"], match_condition=MatchConditions.IfModified
    )
    assert changed["n"] == 2


def test_no_response_answers_no_body(container: ContainerProxy) -> None:
    bodies: list[bytes] = []

    def hook(response: Any) -> None:
        bodies.append(response.http_response.body())

    assert container.create_item(item("a"), no_response=True, raw_response_hook=hook) == {}
    assert headers(container)["etag"]
    assert container.upsert_item(item("a", n=2), no_response=True, raw_response_hook=hook) == {}
    assert (
        container.replace_item("a", item("a", n=3), no_response=True, raw_response_hook=hook) == {}
    )
    assert bodies == [b"", b"", b""]
    assert container.read_item("a", partition_key=PK)["n"] == 3
    # A conditional patch too (an answer's checkpoint: shared/storage/cosmos/store.py).
    patch = [{"op": "set", "path": "/n", "value": 4}]
    where = "from c where c.n = 3"
    patched = container.patch_item(
        "a", PK, patch, filter_predicate=where, no_response=True, raw_response_hook=hook
    )
    assert patched == {} and bodies[-1] == b""
    assert container.read_item("a", partition_key=PK)["n"] == 4
    with pytest.raises(exceptions.CosmosHttpResponseError) as refused:
        container.patch_item("a", PK, patch, filter_predicate=where, no_response=True)
    assert refused.value.status_code == 412


def test_patch_filter_predicate_with_any_alias(container: ContainerProxy) -> None:
    container.create_item(item("a", number=3, name="Ann"))
    add = [{"op": "add", "path": "/seen", "value": True}]
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        container.patch_item("a", PK, add, filter_predicate="from root where root.number = 4")
    assert caught.value.status_code == 412
    assert "seen" not in container.read_item("a", partition_key=PK)
    # the condition keeps its case: 'Ann' is not 'ann'
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        container.patch_item("a", PK, add, filter_predicate="FROM d WHERE d.name = 'ann'")
    assert caught.value.status_code == 412
    patched = container.patch_item("a", PK, add, filter_predicate="from r where r.name = 'Ann'")
    assert patched["seen"] is True
    with pytest.raises(exceptions.CosmosBatchOperationError) as failed:
        container.execute_item_batch(
            [("patch", ("a", add), {"filter_predicate": "from x where x.number = 9"})],
            partition_key=PK,
        )
    assert failed.value.status_code == 412


def test_stored_indexing_policy_excludes_etag(database: DatabaseProxy) -> None:
    default = database.create_container("default", partition_key=PartitionKey("/pk"))
    policy = default.read()["indexingPolicy"]
    assert policy["includedPaths"] == [{"path": "/*"}]
    assert policy["excludedPaths"] == [{"path": ETAG_PATH}]
    assert policy["automatic"] is True
    given = database.create_container(
        "given",
        partition_key=PartitionKey("/pk"),
        indexing_policy={
            "includedPaths": [{"path": "/a/?"}],
            "excludedPaths": [{"path": "/*"}],
        },
    )
    stored = given.read()["indexingPolicy"]
    assert stored["includedPaths"] == [{"path": "/a/?"}]
    assert stored["excludedPaths"] == [{"path": "/*"}, {"path": ETAG_PATH}]
    # Parley's own policy names the _etag exclusion already: it is not repeated
    again = database.create_container(
        "again",
        partition_key=PartitionKey("/pk"),
        indexing_policy={"excludedPaths": [{"path": "/*"}, {"path": ETAG_PATH}]},
    )
    assert again.read()["indexingPolicy"]["excludedPaths"] == [{"path": "/*"}, {"path": ETAG_PATH}]


def test_batch_on_a_prefix_of_a_hierarchical_key_is_400(database: DatabaseProxy) -> None:
    c = database.create_container(
        "hier", partition_key=PartitionKey(["/state", "/city"], kind="MultiHash")
    )
    c.create_item({"id": "1", "state": "WA", "city": "Redmond"})
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        c.execute_item_batch([("read", ("1",))], partition_key=["WA"])
    assert caught.value.status_code == 400
    assert "doesn't correspond to definition" in caught.value.message
    result = c.execute_item_batch([("read", ("1",))], partition_key=["WA", "Redmond"])
    assert result[0]["statusCode"] == 200


def test_replace_with_another_id_renames_the_item(container: ContainerProxy) -> None:
    created = container.create_item(item("a", n=1))
    renamed = container.replace_item("a", item("b", n=2))
    assert renamed["id"] == "b"
    assert renamed["_rid"] == created["_rid"]
    assert not exists_sync(container, "a", PK)
    assert container.read_item("b", partition_key=PK)["n"] == 2
    container.create_item(item("c"))
    with pytest.raises(exceptions.CosmosResourceExistsError):
        container.replace_item("b", item("c"))  # the new id is taken
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        container.replace_item(
            "b", item("d"), etag=created["_etag"], match_condition=MatchConditions.IfNotModified
        )
    assert caught.value.status_code == 412
    result = container.execute_item_batch([("replace", ("b", item("d")))], partition_key=PK)
    assert result[0]["resourceBody"]["id"] == "d"
    assert {r["id"] for r in container.read_all_items()} == {"c", "d"}
    # a batch that fails puts the renamed item back under its old id
    with pytest.raises(exceptions.CosmosBatchOperationError):
        container.execute_item_batch(
            [("replace", ("d", item("e"))), ("create", (item("c"),))], partition_key=PK
        )
    assert {r["id"] for r in container.read_all_items()} == {"c", "d"}
