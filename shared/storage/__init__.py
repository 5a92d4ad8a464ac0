"""Conversation stores: choose one from the settings. The Cosmos SDK loads only when chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Settings import the container names from this package: a name for the checker only.
    from shared.config import Settings
    from shared.storage.base import Store


def make_store(settings: Settings) -> Store:
    if settings.resolved_storage_backend == "cosmos":
        from shared.storage.cosmos import CosmosStore  # heavy: only when configured

        store: Store = CosmosStore.from_settings(settings)
        return store
    from shared.storage.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
