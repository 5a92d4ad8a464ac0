"""The Cosmos DB containers Parley uses: names, partition key and indexing policy.

This is the one definition. The Cosmos adapter's local bootstrap (emulators only) and the
Pulumi program (``infra/data.py``) both read it, so the deployed containers can never drift
from what the code queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARTITION_KEY_PATH = "/EmailID"


def _indexing_policy() -> dict[str, Any]:
    # Index only what queries filter or sort on. Message text and the context window are the
    # bulk of every write; leaving them out of the index keeps each write's RU charge small.
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [
            {"path": "/type/?"},
            {"path": "/sessionId/?"},
            {"path": "/seq/?"},
            {"path": "/updatedAt/?"},
            {"path": "/timestamp/?"},  # the archival pass's orphan scan filters on it
            {"path": "/deleting/?"},
        ],
        "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
        # ORDER BY updatedAt DESC, id DESC (the list query) needs this composite index.
        "compositeIndexes": [
            [
                {"path": "/updatedAt", "order": "descending"},
                {"path": "/id", "order": "descending"},
            ]
        ],
    }


@dataclass(frozen=True)
class ContainerSpec:
    """One container: its name, partition key path and indexing policy."""

    name: str
    partition_key_path: str = PARTITION_KEY_PATH
    indexing_policy: dict[str, Any] = field(default_factory=_indexing_policy)


DEFAULT_DATABASE = "chat"
DEFAULT_ACTIVE_CONTAINER = "Conversations"
DEFAULT_ARCHIVE_CONTAINER = "ConversationsArchive"


def container_specs(
    active: str = DEFAULT_ACTIVE_CONTAINER, archive: str = DEFAULT_ARCHIVE_CONTAINER
) -> tuple[ContainerSpec, ContainerSpec]:
    """The active and archive containers, identical but for their names."""
    return ContainerSpec(active), ContainerSpec(archive)
