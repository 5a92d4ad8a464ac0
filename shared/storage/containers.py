"""The Cosmos DB containers Parley uses: names, partition key, indexing and full-text policies.

This is the one definition. The Cosmos adapter's local bootstrap (emulators only) and the
Pulumi program (``infra/data.py``) both read it, so the deployed containers can never drift
from what the code queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The default names are settings' defaults (shared/config.py): the settings sit below storage.
from shared.config import (
    DEFAULT_ACTIVE_CONTAINER,
    DEFAULT_ARCHIVE_CONTAINER,
    DEFAULT_GROUPS_CONTAINER,
    DEFAULT_SHARES_CONTAINER,
)

PARTITION_KEY_PATH = "/EmailID"


# The search's text (shared/search.py): message text and session titles, in the full-text
# index, so a search is an index lookup of its words rather than a scan of the caller's whole
# history. One language for all: Parley does not know a conversation's language, and a word in
# another one is still found whole (Azure stems and drops stop words by this language only).
# Azure documents stemming and stop words, not folding accents, so an item whose text has
# accents also carries its folded copy (``shared.search.folded_copy``; absent otherwise), in
# the index too: a search of folded words finds ``café`` by ``cafe`` whatever Azure folds.
CONTENT_FOLDED = "contentFolded"
TITLE_FOLDED = "titleFolded"
FULL_TEXT_PATHS = ("/content", "/title", f"/{CONTENT_FOLDED}", f"/{TITLE_FOLDED}")
FULL_TEXT_LANGUAGE = "en-US"


def _full_text_policy() -> dict[str, Any]:
    return {
        "defaultLanguage": FULL_TEXT_LANGUAGE,
        "fullTextPaths": [
            {"path": path, "language": FULL_TEXT_LANGUAGE} for path in FULL_TEXT_PATHS
        ],
    }


def _indexing_policy() -> dict[str, Any]:
    # Index only what queries filter or sort on. Message text is the bulk of every write: it is
    # in the full-text index only (its words), never in the range index.
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [
            {"path": "/type/?"},
            {"path": "/sessionId/?"},
            {"path": "/seq/?"},
            {"path": "/updatedAt/?"},
            {"path": "/pinned/?"},
            # Live session items only (``items.LIVE_MARKER``): the stale and retention scans.
            {"path": "/live/?"},
            # A move's or delete's state: housekeeping finds the few unfinished ones by these.
            {"path": "/state/?"},
            {"path": "/since/?"},
            {"path": "/cleanup/?"},
            # The operator's report (shared/report/): messages since a day, usage by period.
            {"path": "/timestamp/?"},
            {"path": "/period/?"},
        ],
        "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
        "compositeIndexes": [
            # Live session items of a user, newest first (search pages, exports). Starting from
            # ``type`` a query reads session items only, not the message items around them.
            [
                {"path": "/type", "order": "ascending"},
                {"path": "/updatedAt", "order": "ascending"},
                {"path": "/id", "order": "ascending"},
            ],
            # The list: pinned first, then newest first, in one query (paging by a keyset).
            [
                {"path": "/type", "order": "ascending"},
                {"path": "/pinned", "order": "ascending"},
                {"path": "/updatedAt", "order": "ascending"},
                {"path": "/id", "order": "ascending"},
            ],
            # A turn's read (the session item, then its newest messages) and message paging.
            [
                {"path": "/sessionId", "order": "ascending"},
                {"path": "/seq", "order": "ascending"},
            ],
            # The archival scans, across partitions: an equality filter then one range, served
            # as one range of one composite index (equalities first, the range last), so a
            # scan reads what it finds and never the stubs every earlier pass left behind.
            # Stale and retention: live session items not updated since the cutoff.
            [
                {"path": "/live", "order": "ascending"},
                {"path": "/updatedAt", "order": "ascending"},
            ],
            # Housekeeping: items in one unfinished state since before the grace period ...
            [
                {"path": "/state", "order": "ascending"},
                {"path": "/since", "order": "ascending"},
            ],
            # ... and stubs still removing the active copies of their items.
            [
                {"path": "/state", "order": "ascending"},
                {"path": "/cleanup", "order": "ascending"},
                {"path": "/since", "order": "ascending"},
            ],
        ],
        "fullTextIndexes": [{"path": path} for path in FULL_TEXT_PATHS],
    }


@dataclass(frozen=True)
class ContainerSpec:
    """One container: its name, partition key path, indexing and full-text policies."""

    name: str
    partition_key_path: str = PARTITION_KEY_PATH
    indexing_policy: dict[str, Any] = field(default_factory=_indexing_policy)
    # Time-to-live: None leaves it off; -1 turns it on with no default, so only items that
    # carry a ``ttl`` of their own expire (Cosmos removes them that many seconds after their
    # last write).
    default_ttl: int | None = None
    # The full-text policy (search): message text and titles; None for a container not searched.
    full_text_policy: dict[str, Any] | None = field(default_factory=_full_text_policy)


# A group's item, messages and clientMessageIds share one partition: each message is written
# in one transactional batch with the group item, whoever of its members sends it.
GROUPS_PARTITION_KEY_PATH = "/groupId"
# A viewer knows only a share's id: it is the partition key, so every read is a point read.
SHARES_PARTITION_KEY_PATH = "/shareId"


def container_specs(
    active: str = DEFAULT_ACTIVE_CONTAINER, archive: str = DEFAULT_ARCHIVE_CONTAINER
) -> tuple[ContainerSpec, ContainerSpec]:
    """The active and archive containers, identical but for their names."""
    return ContainerSpec(active), ContainerSpec(archive)


def _shares_indexing_policy() -> dict[str, Any]:
    # A share's partition holds its item, its messages and its view log. Queries read the
    # messages in order (seq) and a viewer's entries when they are erased (type, email).
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/type/?"}, {"path": "/seq/?"}, {"path": "/email/?"}],
        "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
        "compositeIndexes": [],
    }


def shares_spec(name: str = DEFAULT_SHARES_CONTAINER) -> ContainerSpec:
    """The shares container: partitioned on the share id, items expiring with their share."""
    return ContainerSpec(
        name,
        partition_key_path=SHARES_PARTITION_KEY_PATH,
        indexing_policy=_shares_indexing_policy(),
        default_ttl=-1,
        full_text_policy=None,  # a share is read by id, never searched
    )


def _groups_indexing_policy() -> dict[str, Any]:
    # A group's partition holds its item, its messages and its request records. Queries read
    # messages in seq order (paging, the model's window) and a sender's messages (erasure).
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/type/?"}, {"path": "/seq/?"}, {"path": "/senderEmail/?"}],
        "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
        "compositeIndexes": [
            [{"path": "/type", "order": "ascending"}, {"path": "/seq", "order": "ascending"}],
        ],
    }


def groups_spec(name: str = DEFAULT_GROUPS_CONTAINER) -> ContainerSpec:
    """The group conversations container: partitioned on the group id, nothing expires."""
    return ContainerSpec(
        name,
        partition_key_path=GROUPS_PARTITION_KEY_PATH,
        indexing_policy=_groups_indexing_policy(),
        full_text_policy=None,  # group messages are not in the personal search
    )
