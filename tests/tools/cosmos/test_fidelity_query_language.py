"""Query-language features of the local Cosmos server (tools/cosmos/query-language.mjs) that the
package's parser lacked: DISTINCT, OFFSET ... LIMIT (the examples of Azure's "OFFSET LIMIT (NoSQL
query)" and "DISTINCT" pages, on their Families-style items), properties whose names start with
a keyword, GROUP BY, MAX over nothing, and aggregates without VALUE across partitions. Skipped when
COSMOS_ENDPOINT names another account.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.cosmos import ContainerProxy, PartitionKey, exceptions

from tests.tools.cosmos.fidelity_support import sync_client
from tools.local.cosmos import CosmosAccount, cosmos_target

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("COSMOS_ENDPOINT", "").strip()),
        reason="these tests check the local Cosmos server (tools/cosmos), and COSMOS_ENDPOINT "
        "names another account",
    ),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]

FAMILIES = [
    {"id": "AndersenFamily", "lastName": "Andersen", "address": {"state": "WA", "city": "Seattle"}},
    {"id": "WakefieldFamily", "lastName": "Wakefield", "address": {"state": "NY", "city": "NY"}},
    {"id": "MillerFamily", "lastName": "Miller", "address": {"state": "NY", "city": "Albany"}},
    {"id": "SmithFamily", "lastName": "Smith", "address": {"city": "Seattle", "state": "WA"}},
]


@pytest.fixture(scope="module")
def families() -> Iterator[ContainerProxy]:
    with cosmos_target() as account:
        yield from _families(account)


def _families(account: CosmosAccount) -> Iterator[ContainerProxy]:
    client = sync_client(account)
    name = f"query-{uuid.uuid4().hex[:12]}"
    database = client.create_database(name)
    try:
        container = database.create_container("Families", partition_key=PartitionKey("/id"))
        for family in FAMILIES:
            container.create_item(family)
        for i in range(6):
            container.create_item(
                {
                    "id": f"v{i}",
                    "value": i // 2,
                    "value1": i // 2,
                    "orderId": f"o{i}",
                    "notes": f"n{i}",
                    "kind": "numbered",
                }
            )
        yield container
    finally:
        client.delete_database(name)


def query(c: ContainerProxy, sql: str, **kwargs: Any) -> list[Any]:
    return list(c.query_items(sql, enable_cross_partition_query=True, **kwargs))


def test_distinct(families: ContainerProxy) -> None:
    # the docs' example: one row per distinct value, property order inside objects ignored
    states = query(
        families, "SELECT DISTINCT VALUE f.address.state FROM f WHERE IS_DEFINED(f.address)"
    )
    assert sorted(states) == ["NY", "WA"]
    addresses = query(
        families, "SELECT DISTINCT VALUE f.address FROM f WHERE IS_DEFINED(f.lastName)"
    )
    assert len(addresses) == 3  # Andersen's and Smith's differ only in property order
    rows = query(
        families,
        "SELECT DISTINCT f.address.state FROM f WHERE IS_DEFINED(f.address) "
        "ORDER BY f.address.state",
    )
    assert rows == [{"state": "NY"}, {"state": "WA"}]
    pages = families.query_items(
        "SELECT DISTINCT VALUE f.value1 FROM f WHERE f.kind = 'numbered'",
        enable_cross_partition_query=True,
        max_item_count=2,
    ).by_page()
    assert [sorted(page) for page in pages] == [[0, 1], [2]]


def test_offset_limit(families: ContainerProxy) -> None:
    # the docs' example: skip the first, take the next
    rows = query(
        families,
        "SELECT f.id, f.address.city FROM f WHERE f.address.state = 'NY' "
        "ORDER BY f.address.city OFFSET 1 LIMIT 1",
    )
    assert rows == [{"id": "WakefieldFamily", "city": "NY"}]
    ids = query(
        families,
        "SELECT VALUE f.id FROM f WHERE f.kind = 'numbered' ORDER BY f.id OFFSET @o LIMIT @l",
        parameters=[{"name": "@o", "value": 4}, {"name": "@l", "value": 10}],
    )
    assert ids == ["v4", "v5"]
    pages = families.query_items(
        "SELECT VALUE f.id FROM f WHERE f.kind = 'numbered' ORDER BY f.id OFFSET 1 LIMIT 4",
        enable_cross_partition_query=True,
        max_item_count=3,
    ).by_page()
    assert [list(page) for page in pages] == [["v1", "v2", "v3"], ["v4"]]


def test_properties_whose_names_start_with_a_keyword(families: ContainerProxy) -> None:
    # the SDK's test_query_items_with_parameters_none: `c.value1 = @value`
    rows = query(
        families,
        "SELECT VALUE f.id FROM f WHERE f.value1 = @value ORDER BY f.id",
        parameters=[{"name": "@value", "value": 1}],
    )
    assert rows == ["v2", "v3"]
    assert query(families, "SELECT f.orderId, f.notes FROM f WHERE f.id = 'v0'") == [
        {"orderId": "o0", "notes": "n0"}
    ]
    # the word inside a string literal is left alone
    assert query(families, "SELECT VALUE f.id FROM f WHERE f.id = 'f.value1'") == []
    # a property named exactly `value` is written f["value"], as the SDK's own tests do
    assert query(families, 'SELECT VALUE f.id FROM f WHERE f["value"] = 2 ORDER BY f.id') == [
        "v4",
        "v5",
    ]


def test_max_over_nothing_is_null_across_partitions(families: ContainerProxy) -> None:
    assert query(families, "SELECT VALUE MAX(f.version) FROM f WHERE f.kind = 'none'") == [None]
    assert query(families, "SELECT VALUE MAX(f.value1) FROM f") == [2]
    assert query(families, "SELECT VALUE COUNT(1) FROM f WHERE f.kind = 'none'") == [0]


def test_aggregate_without_value_is_refused_across_partitions(families: ContainerProxy) -> None:
    for sql in ("SELECT COUNT(1) FROM f", "SELECT COUNT(1) + 5 FROM f"):
        with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
            query(families, sql)
        assert caught.value.status_code == 400
    # within one partition it runs
    rows = list(families.query_items("SELECT COUNT(1) FROM f", partition_key="v0"))
    assert rows == [{"$1": 1}]


def test_group_by(families: ContainerProxy) -> None:
    # the shape of the docs' example: SELECT COUNT(1) AS n, f.key FROM f GROUP BY f.key
    rows = query(
        families,
        "SELECT COUNT(1) AS n, f.address.state FROM f WHERE IS_DEFINED(f.address) "
        "GROUP BY f.address.state",
    )
    assert sorted(rows, key=lambda r: r["state"]) == [
        {"n": 2, "state": "NY"},
        {"n": 2, "state": "WA"},
    ]
    counts = query(
        families, "SELECT VALUE MAX(f.value1) FROM f WHERE f.kind = 'numbered' GROUP BY f.value1"
    )
    assert sorted(counts) == [0, 1, 2]
    # two keys; an aggregate over each group, the other columns from the group
    rows = query(
        families,
        "SELECT f.value1 AS v, MIN(f.orderId) AS first, COUNT(1) AS n FROM f "
        "WHERE f.kind = 'numbered' GROUP BY f.value1, f.kind",
    )
    assert sorted(rows, key=lambda r: r["v"]) == [
        {"v": 0, "first": "o0", "n": 2},
        {"v": 1, "first": "o2", "n": 2},
        {"v": 2, "first": "o4", "n": 2},
    ]
