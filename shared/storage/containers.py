"""The Cosmos DB containers Parley uses: names, partition key, indexing and full-text policies.

This is the one definition. The Cosmos adapter's local bootstrap (emulators only) and the
Pulumi program (``infra/data.py``) both read it, so the deployed containers can never drift
from what the code queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARTITION_KEY_PATH = "/EmailID"
# Host names that can only be this machine: a Cosmos DB endpoint there is a local emulator
# (never an Azure account), and a CORS origin there may use http (infra/stack_config.py).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


# The search's text (shared/search.py): message text and session titles, in the full-text
# index, so a search is an index lookup of its words rather than a scan of the caller's whole
# history. One language for both: Parley does not know a conversation's language, and a word in
# another one is still found whole (Azure stems and drops stop words by this language only).
FULL_TEXT_PATHS = ("/content", "/title")
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
            # Live session items only (``items.LIVE_MARKER``): the stale and retention scans.
            {"path": "/live/?"},
            # A move's or delete's state: housekeeping finds the few unfinished ones by these.
            {"path": "/state/?"},
            {"path": "/since/?"},
            {"path": "/cleanup/?"},
        ],
        "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
        "compositeIndexes": [
            # The list: live session items of a user, newest first. Starting from ``type``
            # the query reads session items only, not the message items around them.
            [
                {"path": "/type", "order": "ascending"},
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
    full_text_policy: dict[str, Any] = field(default_factory=_full_text_policy)


DEFAULT_DATABASE = "chat"
DEFAULT_ACTIVE_CONTAINER = "Conversations"
DEFAULT_ARCHIVE_CONTAINER = "ConversationsArchive"


def container_specs(
    active: str = DEFAULT_ACTIVE_CONTAINER, archive: str = DEFAULT_ARCHIVE_CONTAINER
) -> tuple[ContainerSpec, ContainerSpec]:
    """The active and archive containers, identical but for their names."""
    return ContainerSpec(active), ContainerSpec(archive)
