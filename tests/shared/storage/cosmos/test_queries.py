"""Every Cosmos DB query filters and sorts on indexed paths only; the search's text match is a
full-text function on a path of the full-text index, never a ``CONTAINS`` scan.

Cosmos serves a filter on an indexed path from the index; a filter on a path the indexing
policy excludes (``/*`` is excluded: only what queries need is indexed, so writes stay cheap)
reads every item of the scope instead. The local server charges a query the same way
(``tools/cosmos/index-cost.mjs``), but only for the data a test happens to hold; this pins it
where it is decided: the queries against the one indexing policy
(``shared/storage/containers.py``). A scan that started filtering on an unindexed field
(housekeeping reading message items, say), or on "no state" again, fails here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import get_args

import pytest

from shared.models import SessionRecord
from shared.storage.containers import ContainerSpec
from shared.storage.cosmos import moves, store, usage
from shared.storage.cosmos.items import LIVE_MARKER, State, session_body, state_body
from tests.support.query_fields import ALWAYS_INDEXED, WHERE, filtered_fields, indexed_paths_of

# The search's ``{match}``: the full-text function the store puts there (``_all_words``).
QUERIES = {
    name: value.replace(
        "{match}",
        store._all_words("title", "titleFolded", "w")
        if "TITLES" in name
        else store._all_words("content", "contentFolded", "w"),
    )
    for module in (store, moves, usage)
    for name, value in vars(module).items()
    if name.endswith("_QUERY") and isinstance(value, str)
}


def indexed_paths() -> set[str]:
    return indexed_paths_of(ContainerSpec("any"))


def full_text_paths() -> set[str]:
    policy = ContainerSpec("any").indexing_policy
    return {entry["path"].strip("/") for entry in policy["fullTextIndexes"]}


def test_the_queries_are_found() -> None:
    # The scans this exists for, by name: renaming one must not silently drop it from here.
    assert {"LIST_QUERY", "TURN_QUERY", "USAGE_QUERY"} | SCANS <= set(QUERIES)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_query_filters_on_indexed_paths_only(name: str) -> None:
    fields, scanned, full_text = filtered_fields(QUERIES[name])
    assert scanned == set(), f"{name} scans {scanned} with CONTAINS: its cost grows with history"
    assert full_text <= full_text_paths(), f"{name} full-text-matches unindexed {full_text}"
    unindexed = fields - indexed_paths() - ALWAYS_INDEXED - full_text
    assert unindexed == set(), f"{name} filters on unindexed {sorted(unindexed)}"


def test_the_search_matches_through_the_full_text_index() -> None:
    assert {"content", "title", "contentFolded", "titleFolded"} <= full_text_paths()
    for name in ("SEARCH_MESSAGES_QUERY", "SEARCH_TITLES_QUERY"):
        assert filtered_fields(QUERIES[name])[2], name
    # A page reads its sessions and messages by id: no lookup of the words again.
    for name in ("SEARCH_TIMES_QUERY", "SEARCH_PAGE_QUERY", "SEARCH_HITS_QUERY"):
        assert "WHERE c.id IN ({ids})" in QUERIES[name], name
        assert not filtered_fields(QUERIES[name])[2], name


def test_an_unindexed_filter_and_a_scan_are_caught() -> None:
    fields, _, _ = filtered_fields(
        "SELECT c.id FROM c WHERE c.type = 'message' AND c.role = 'user'"
    )
    assert fields - indexed_paths() - ALWAYS_INDEXED == {"role"}
    _, scanned, full_text = filtered_fields(
        "SELECT c.id FROM c WHERE CONTAINS(c.content, @q, true) AND FullTextContains(c.title, 'x')"
    )
    assert (scanned, full_text) == ({"content"}, {"title"})


# --- the archival scans: positive, indexed, one range of one index ------------------------------
# They run across every partition every day. A negative filter (NOT, !=) or OR cannot be served
# from the index as a range, and filters on several paths need a composite index (equalities
# first, the one range last) to be read as one range: otherwise Cosmos reads every item the
# widest filter matches, the stubs of every earlier pass among them (docs/design.md,
# "Indexing"; tools/cosmos/index-cost.mjs charges the local server's queries the same way).
SCANS = {"STALE_QUERY", "UNFINISHED_QUERY", "CLEANUP_QUERY"}
_TERM = re.compile(r"^c\.(\w+)\s*(=|<=|>=|<|>)\s*(@\w+|'[^']*'|true|false|-?\d+)$")


def scan_terms(query: str) -> list[tuple[str, str]]:
    """A scan's filters as (path, operator), or AssertionError for anything not served."""
    match = WHERE.search(query)
    assert match is not None and match.group("order") is None, query
    terms = []
    for term in re.split(r"\s+AND\s+", match.group("where").strip()):
        served = _TERM.match(term.strip())
        assert served is not None, f"not an indexed equality or range: {term!r}"
        terms.append((served.group(1), served.group(2)))
    return terms


def covered_by_a_composite(terms: list[tuple[str, str]]) -> bool:
    policy = ContainerSpec("any").indexing_policy
    paths = [path for path, _ in terms]
    ranges = [path for path, op in terms if op != "="]
    for composite in policy["compositeIndexes"]:
        head = [entry["path"].strip("/") for entry in composite[: len(paths)]]
        if sorted(head) == sorted(paths) and set(ranges) <= {head[-1]}:
            return True
    return False


@pytest.mark.parametrize("name", sorted(SCANS))
def test_an_archival_scan_is_one_range_of_one_index(name: str) -> None:
    terms = scan_terms(QUERIES[name])
    paths = {path for path, _ in terms}
    assert paths <= indexed_paths() | ALWAYS_INDEXED, name
    assert len([op for _, op in terms if op != "="]) <= 1, name
    assert len(paths) == 1 or covered_by_a_composite(terms), f"{name}: no composite index"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT c.id FROM c WHERE c.type = 'session' AND NOT IS_DEFINED(c.state)",
        "SELECT c.id FROM c WHERE c.state != 'archived' AND c.since < @cutoff",
        "SELECT c.id FROM c WHERE c.state = 'a' OR c.cleanup = true",
    ],
)
def test_a_negative_scan_is_caught(query: str) -> None:
    with pytest.raises(AssertionError):
        scan_terms(query)


def test_an_uncovered_pair_of_filters_is_caught() -> None:
    assert not covered_by_a_composite([("live", "="), ("since", "<")])
    assert covered_by_a_composite([("live", "="), ("updatedAt", "<")])


def test_only_live_session_items_carry_the_marker() -> None:
    """What the stale scan reads: a stub (and every other state) lacks the marker."""
    record = SessionRecord(
        id="s1",
        email="a@example.com",
        title="t",
        preview="p",
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
        updated_at=datetime(2024, 1, 1, tzinfo=UTC),
        message_count=0,
        last_seq=0,
    )
    assert session_body(record)[LIVE_MARKER] is True
    for state in get_args(State):
        assert LIVE_MARKER not in state_body(record, state, since="2024-01-01T00:00:00Z")
