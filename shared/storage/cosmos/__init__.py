"""The Cosmos DB store (``store.py``), its connection (``client.py``), item shapes
(``items.py``) and the move and delete protocol (``moves.py``)."""

from shared.storage.cosmos.store import CosmosStore

__all__ = ["CosmosStore"]
