"""What a Cosmos DB query filters and sorts on, and what a container's indexing policy indexes:
for the tests that hold every query of the stores to indexed paths."""

from __future__ import annotations

import re

from shared.storage.containers import ContainerSpec

# Always indexed by Cosmos whatever the policy says: the id, and the partition key (a query's
# scope).
ALWAYS_INDEXED = {"id", "EmailID"}
WHERE = re.compile(r"\bWHERE\b(?P<where>.*?)(?:\bORDER BY\b(?P<order>.*))?$", re.S)
_CONTAINS = re.compile(r"(?<!FullText)CONTAINS\(c\.(\w+)", re.I)
_FULL_TEXT = re.compile(r"FullText\w*\(c\.(\w+)")
_FIELD = re.compile(r"\bc\.(\w+)")


def indexed_paths_of(spec: ContainerSpec) -> set[str]:
    """The paths ``spec``'s indexing policy includes, as field names."""
    return {p["path"].strip("/").removesuffix("/?") for p in spec.indexing_policy["includedPaths"]}


def filtered_fields(query: str) -> tuple[set[str], set[str], set[str]]:
    """The fields a query's WHERE and ORDER BY name, those it scans with ``CONTAINS``, and those
    it matches with a full-text function."""
    match = WHERE.search(query)
    if match is None:
        return set(), set(), set()
    clauses = match.group("where") + " " + (match.group("order") or "")
    return (
        set(_FIELD.findall(clauses)),
        set(_CONTAINS.findall(clauses)),
        set(_FULL_TEXT.findall(clauses)),
    )
