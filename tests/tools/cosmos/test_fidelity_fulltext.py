"""Full-text search on the local Cosmos server (tools/cosmos/fulltext.mjs), with the examples of
Azure's "Full text search in Azure Cosmos DB for NoSQL" page (a container with a full-text policy
and index on /text; FullTextContains, FullTextContainsAll, FullTextContainsAny; ORDER BY RANK
FullTextScore; RRF) and the SDK's test_full_text_policy checks of the policy.

Azure's scores cannot be reproduced (its analyzer stems, and its statistics are per physical
partition), so the ranking tests compare the order of clear cases only, never scores. Skipped
when COSMOS_ENDPOINT names another account.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.cosmos import ContainerProxy, DatabaseProxy, PartitionKey, exceptions

from tests.tools.cosmos.fidelity_support import sync_client
from tools.local.cosmos import cosmos_target

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("COSMOS_ENDPOINT", "").strip()),
        reason="these tests check the local Cosmos server (tools/cosmos), and COSMOS_ENDPOINT "
        "names another account",
    ),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]

POLICY = {"defaultLanguage": "en-US", "fullTextPaths": [{"path": "/text", "language": "en-US"}]}
INDEXING = {"fullTextIndexes": [{"path": "/text"}]}
TEXTS = {
    "red-mountain": "Red mountain bicycle for steep trails",
    "blue-road": "Blue road bicycle with thin tyres",
    "boots": "Mountain hiking boots, waterproof",
    "chair": "Kitchen chair in red oak",
    "mtb": "Mountain bicycle: the mountain bicycle for every mountain",
}


@pytest.fixture(scope="module")
def database() -> Iterator[DatabaseProxy]:
    with cosmos_target() as account:
        client = sync_client(account)
        name = f"fulltext-{uuid.uuid4().hex[:12]}"
        created = client.create_database(name)
        try:
            yield created
        finally:
            client.delete_database(name)


@pytest.fixture(scope="module")
def products(database: DatabaseProxy) -> ContainerProxy:
    c = database.create_container(
        "products",
        partition_key=PartitionKey("/pk"),
        full_text_policy=POLICY,
        indexing_policy=INDEXING,
    )
    for item_id, text in TEXTS.items():
        c.create_item({"id": item_id, "pk": "p", "text": text})
    return c


def ids(c: ContainerProxy, sql: str) -> list[Any]:
    return list(c.query_items(sql, enable_cross_partition_query=True))


def test_policy_and_index_are_stored(products: ContainerProxy) -> None:
    properties = products.read()
    assert properties["fullTextPolicy"] == POLICY
    assert properties["indexingPolicy"]["fullTextIndexes"] == INDEXING["fullTextIndexes"]


@pytest.mark.parametrize(
    ("policy", "indexing"),
    [
        ({"defaultLanguage": "en-US", "fullTextPaths": [{"path": "abstract"}]}, None),
        ({"defaultLanguage": "spa-SPA", "fullTextPaths": [{"path": "/abstract"}]}, None),
        ({"defaultLanguage": "en-US", "fullTextPaths": [{"path": "/a", "language": "x"}]}, None),
        (POLICY, {"fullTextIndexes": [{"path": "text"}]}),
        (POLICY, {"fullTextIndexes": [{"not_path": "/text"}]}),
        (POLICY, {"fullTextIndexes": [{"path": "/other"}]}),  # not in the policy
    ],
)
def test_invalid_policy_or_index_is_400(
    database: DatabaseProxy, policy: dict[str, Any], indexing: dict[str, Any] | None
) -> None:
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        database.create_container(
            f"bad-{uuid.uuid4().hex[:8]}",
            partition_key=PartitionKey("/pk"),
            full_text_policy=policy,
            indexing_policy=indexing,
        )
    assert caught.value.status_code == 400


def test_full_text_contains_all_and_any(products: ContainerProxy) -> None:
    query = "SELECT VALUE c.id FROM c WHERE FullTextContains(c.text, 'bicycle')"
    assert sorted(ids(products, query)) == ["blue-road", "mtb", "red-mountain"]
    query = "SELECT VALUE c.id FROM c WHERE FullTextContainsAll(c.text, 'red', 'bicycle')"
    assert ids(products, query) == ["red-mountain"]
    query = "SELECT VALUE c.id FROM c WHERE FullTextContainsAny(c.text, 'red', 'bicycle')"
    assert sorted(ids(products, query)) == ["blue-road", "chair", "mtb", "red-mountain"]
    # case does not matter; a word inside another word is not a match
    assert ids(products, "SELECT VALUE c.id FROM c WHERE FullTextContains(c.text, 'OAK')") == [
        "chair"
    ]
    assert ids(products, "SELECT VALUE c.id FROM c WHERE FullTextContains(c.text, 'bi')") == []


def test_order_by_rank_full_text_score(products: ContainerProxy) -> None:
    query = (
        "SELECT TOP 3 VALUE c.id FROM c ORDER BY RANK FullTextScore(c.text, 'bicycle', 'mountain')"
    )
    ranked = ids(products, query)
    # "mtb" repeats both words; "red-mountain" has both; the rest one of them at most
    assert ranked[:2] == ["mtb", "red-mountain"]
    rows = ids(
        products, "SELECT TOP 1 * FROM c ORDER BY RANK FullTextScore(c.text, 'kitchen', 'oak')"
    )
    assert rows[0]["id"] == "chair"
    assert not any(key.startswith("__parley") for key in rows[0])
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        ids(products, "SELECT VALUE FullTextScore(c.text, 'bicycle') FROM c")
    assert caught.value.status_code == 400  # only in ORDER BY RANK


def test_rrf_fuses_the_ranks(products: ContainerProxy) -> None:
    query = (
        "SELECT TOP 2 VALUE c.id FROM c ORDER BY RANK "
        "RRF(FullTextScore(c.text, 'bicycle'), FullTextScore(c.text, 'mountain'))"
    )
    assert ids(products, query) == ["mtb", "red-mountain"]


def test_a_full_text_query_is_charged_as_an_index_lookup(database: DatabaseProxy) -> None:
    c = database.create_container(
        f"charge-{uuid.uuid4().hex[:8]}",
        partition_key=PartitionKey("/pk"),
        full_text_policy=POLICY,
        indexing_policy=INDEXING,
    )
    query = "SELECT VALUE c.id FROM c WHERE FullTextContains(c.text, 'bicycle')"
    scan = "SELECT VALUE c.id FROM c WHERE CONTAINS(c.text, 'bicycle')"

    def charge(sql: str) -> float:
        list(c.query_items(sql, partition_key="p"))
        return float(c.client_connection.last_response_headers["x-ms-request-charge"])

    c.create_item({"id": "hit", "pk": "p", "text": "a bicycle"})
    small = (charge(query), charge(scan))
    for i in range(200):
        c.create_item({"id": f"other{i}", "pk": "p", "text": f"kitchen chair {i}"})
    large = (charge(query), charge(scan))
    assert large[0] == small[0]  # the index lookup reads the one matching item either way
    assert large[1] > small[1] + 3  # the scan reads every item of the partition


def test_words_are_stemmed_as_english(database: DatabaseProxy) -> None:
    """Azure: "Full-text indexing and search includes advanced text processing techniques such
    as stemming, stop word removal, and tokenization" (learn.microsoft.com, "Full-text search
    in Azure Cosmos DB for NoSQL"), by the policy's language (en-US). The local server stems by
    Porter's algorithm (the npm ``stemmer`` package, as SQLite's FTS5 ``porter``): a word finds
    its other forms, and its stem alone is not a substring match."""
    c = database.create_container(
        f"stems-{uuid.uuid4().hex[:8]}",
        partition_key=PartitionKey("/pk"),
        full_text_policy=POLICY,
        indexing_policy=INDEXING,
    )
    texts = {"a": "She was running late", "b": "He runs daily", "c": "a runaway train"}
    for item_id, text in texts.items():
        c.create_item({"id": item_id, "pk": "p", "text": text})
    for term in ("run", "running", "RUNS"):
        query = f"SELECT VALUE c.id FROM c WHERE FullTextContains(c.text, '{term}')"
        assert sorted(ids(c, query)) == ["a", "b"], term
    query = "SELECT VALUE c.id FROM c WHERE FullTextContainsAll(c.text, 'dailies', 'run')"
    assert ids(c, query) == ["b"]


def test_accents_are_not_folded(database: DatabaseProxy) -> None:
    """Azure's full-text documentation (the page above, and FullTextContains's) names
    tokenization, stemming and stop words, and says nothing of accents: whether ``cafe`` finds
    ``café`` there is not a documented behaviour, so the local server does not fold them and
    nothing can come to rely on it. Parley indexes an accent-folded copy of such text itself
    (shared/storage/containers.py, CONTENT_FOLDED)."""
    c = database.create_container(
        f"accents-{uuid.uuid4().hex[:8]}",
        partition_key=PartitionKey("/pk"),
        full_text_policy=POLICY,
        indexing_policy=INDEXING,
    )
    c.create_item({"id": "accented", "pk": "p", "text": "un café crème"})
    c.create_item({"id": "plain", "pk": "p", "text": "a cafe"})
    query = "SELECT VALUE c.id FROM c WHERE FullTextContains(c.text, '{}')"
    assert ids(c, query.format("cafe")) == ["plain"]
    assert ids(c, query.format("CAFÉ")) == ["accented"]  # case is folded, accents are not
