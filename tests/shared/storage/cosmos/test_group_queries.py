"""The groups' Cosmos DB queries filter and sort on indexed paths only, each against the policy
of the container it runs in (``shared/storage/containers.py``): a member's index items in the
active container, a group's items in the groups container; ordering on two paths has its
composite index; and no group index item can be taken for a session's item."""

from __future__ import annotations

import pytest

from shared.storage.containers import ContainerSpec, groups_spec
from shared.storage.cosmos import groups
from tests.support.query_fields import ALWAYS_INDEXED, filtered_fields, indexed_paths_of

QUERIES = {
    name: value
    for name, value in vars(groups).items()
    if name.endswith("_QUERY") and isinstance(value, str)
}
# Queries that run in a member's partition of the active container; the rest in a group's.
IN_ACTIVE = {"REFS_QUERY"}


def test_the_queries_are_found() -> None:
    assert {
        "MESSAGES_BEFORE_QUERY",
        "MESSAGES_AFTER_QUERY",
        "SENDER_QUERY",
        "ITEM_IDS_QUERY",
        "REFS_QUERY",
    } <= set(QUERIES)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_group_query_filters_on_indexed_paths_only(name: str) -> None:
    if name in IN_ACTIVE:
        indexed = indexed_paths_of(ContainerSpec("active")) | ALWAYS_INDEXED
    else:
        indexed = indexed_paths_of(groups_spec()) | {"id", "groupId"}
    fields, scanned, text_matched = filtered_fields(QUERIES[name])
    assert scanned == text_matched == set()
    assert fields - indexed == set(), f"{name} filters on unindexed {sorted(fields - indexed)}"


def test_ordering_on_two_paths_has_its_composite_index() -> None:
    # Cosmos DB serves ORDER BY on several paths only from a composite index of them, in the
    # same order or all reversed ("Indexing policies", composite indexes).
    composite = [
        tuple(entry["path"] for entry in index)
        for index in groups_spec().indexing_policy["compositeIndexes"]
    ]
    assert ("/type", "/seq") in composite
    for name in ("MESSAGES_BEFORE_QUERY", "MESSAGES_AFTER_QUERY", "SENDER_QUERY"):
        assert "ORDER BY c.type" in QUERIES[name] and "c.seq" in QUERIES[name]


def test_index_items_are_not_a_sessions_items() -> None:
    # Conversation queries, moves and erasure's sweep find a session's items by sessionId (and
    # turns by seq): the index items kept in members' partitions carry neither.
    item = groups.ref_body("a@example.com", "g_" + "a" * 32)
    assert item["type"] not in {"session", "message", "request", "shareRef", "usage"}
    assert "sessionId" not in item and "seq" not in item
    assert item["EmailID"] == "a@example.com" and not item["id"].startswith(("s_", "share:"))
