"""Every Cosmos DB query filters and sorts on indexed paths only, except the search's text match.

Cosmos serves a filter on an indexed path from the index; a filter on a path the indexing
policy excludes (``/*`` is excluded: only what queries need is indexed, so writes stay cheap)
reads every item of the scope instead. The local server charges a query by the items in its
scope either way, so it cannot show the difference; this pins it where it is decided: the
queries against the one indexing policy (``shared/storage/containers.py``). A scan that
started filtering on an unindexed field (housekeeping reading message items, say) fails here.
"""

from __future__ import annotations

import re

import pytest

from shared.storage.containers import ContainerSpec
from shared.storage.cosmos import moves, store, usage

# Always indexed by Cosmos whatever the policy says: the id, and the partition key (a query's
# scope).
ALWAYS_INDEXED = {"id", "EmailID"}
# Deliberately not indexed: message text and titles, which the search matches by scanning the
# caller's own partition (docs/performance.md measures what that costs).
SCANNED_BY_SEARCH = {"content", "title"}
QUERIES = {
    name: value
    for module in (store, moves, usage)
    for name, value in vars(module).items()
    if name.endswith("_QUERY") and isinstance(value, str)
}
_WHERE = re.compile(r"\bWHERE\b(?P<where>.*?)(?:\bORDER BY\b(?P<order>.*))?$", re.S)
_CONTAINS = re.compile(r"CONTAINS\(c\.(\w+)")
_FIELD = re.compile(r"\bc\.(\w+)")


def indexed_paths() -> set[str]:
    policy = ContainerSpec("any").indexing_policy
    return {path["path"].strip("/").removesuffix("/?") for path in policy["includedPaths"]}


def filtered_fields(query: str) -> tuple[set[str], set[str]]:
    """The fields a query's WHERE and ORDER BY name, and those it only text-matches."""
    match = _WHERE.search(query)
    if match is None:
        return set(), set()
    clauses = match.group("where") + " " + (match.group("order") or "")
    return set(_FIELD.findall(clauses)), set(_CONTAINS.findall(clauses))


def test_the_queries_are_found() -> None:
    # The scans this exists for, by name: renaming one must not silently drop it from here.
    assert {"LIST_QUERY", "STALE_QUERY", "UNFINISHED_QUERY", "TURN_QUERY", "USAGE_QUERY"} <= set(
        QUERIES
    )


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_query_filters_on_indexed_paths_only(name: str) -> None:
    fields, text_matched = filtered_fields(QUERIES[name])
    assert text_matched <= SCANNED_BY_SEARCH, f"{name} text-matches {text_matched}"
    unindexed = fields - indexed_paths() - ALWAYS_INDEXED - text_matched
    assert unindexed == set(), f"{name} filters on unindexed {sorted(unindexed)}"


def test_an_unindexed_filter_is_caught() -> None:
    fields, _ = filtered_fields("SELECT c.id FROM c WHERE c.type = 'message' AND c.role = 'user'")
    assert fields - indexed_paths() - ALWAYS_INDEXED == {"role"}
