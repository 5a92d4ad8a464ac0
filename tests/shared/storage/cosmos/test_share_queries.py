"""The shares' Cosmos DB queries filter and sort on indexed paths only, each against the
indexing policy of the container it runs in (``shared/storage/containers.py``): the owner's and
the viewer's items in the active container, a share's items in the shares container. And no
share item in the active container can be taken for a session's (``sessionId``, ``seq``)."""

from __future__ import annotations

import pytest

from shared.storage.containers import ContainerSpec, shares_spec
from shared.storage.cosmos import shares
from tests.support.query_fields import ALWAYS_INDEXED, filtered_fields, indexed_paths_of

QUERIES = {
    name: value
    for name, value in vars(shares).items()
    if name.endswith("_QUERY") and isinstance(value, str)
}


def test_the_queries_are_found() -> None:
    assert {"OWNER_REFS_QUERY", "VIEWER_NOTES_QUERY", "SHARE_MESSAGES_QUERY"} <= set(QUERIES)
    assert all(name.startswith(("OWNER_", "VIEWER_", "SHARE_")) for name in QUERIES)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_share_query_filters_on_indexed_paths_only(name: str) -> None:
    if name.startswith("SHARE_"):
        indexed = indexed_paths_of(shares_spec()) | {"id", "shareId"}
    else:
        indexed = indexed_paths_of(ContainerSpec("active")) | ALWAYS_INDEXED
    fields, scanned, text_matched = filtered_fields(QUERIES[name])
    assert scanned == text_matched == set()
    assert fields - indexed == set(), f"{name} filters on unindexed {sorted(fields - indexed)}"


def test_index_and_note_items_are_not_a_sessions_items() -> None:
    # Conversation queries, moves and erasure's sweep find a session's items by sessionId (and
    # turns by seq): the share items kept in users' partitions carry neither.
    from datetime import UTC, datetime

    from shared.models import ShareRecord

    share = ShareRecord(
        id="sh_" + "a" * 48,
        owner="a@example.com",
        session_id="s_" + "b" * 32,
        title="t",
        audience="signed_in",
        created_at=datetime(2031, 1, 1, tzinfo=UTC),
        expires_at=datetime(2031, 2, 1, tzinfo=UTC),
        message_count=1,
    )
    at = datetime(2031, 1, 2, tzinfo=UTC)
    for item in (shares.ref_body(share), shares.note_body(share, "b@example.com", at)):
        assert item["type"] not in {"session", "message", "request"}
        assert "sessionId" not in item and "seq" not in item
        assert item["id"] != share.id and item["id"] != share.session_id
