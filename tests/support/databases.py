"""A Cosmos database of the tests' own, with Parley's containers made from their one
definition (shared/storage/containers.py), and a store on it; deleted when the block ends."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from azure.cosmos import CosmosClient, PartitionKey

from shared.storage.containers import container_specs, groups_spec, shares_spec
from shared.storage.cosmos import CosmosStore
from tools.local.cosmos import CosmosAccount

ACTIVE, ARCHIVE = "Conversations", "ConversationsArchive"


@dataclass(frozen=True)
class CosmosDatabase:
    account: CosmosAccount
    name: str

    def store(self) -> CosmosStore:
        return CosmosStore(
            self.account.endpoint,
            self.account.key,
            database=self.name,
            container=ACTIVE,
            archive_container=ARCHIVE,
            verify_tls=self.account.verify_tls,
        )


@contextlib.contextmanager
def cosmos_database(account: CosmosAccount) -> Iterator[CosmosDatabase]:
    """A fresh database with Parley's containers (from the one definition), deleted after."""
    client = CosmosClient(account.endpoint, account.key, **account.client_kwargs())
    name = f"contract-{uuid.uuid4().hex[:12]}"
    database = client.create_database_if_not_exists(name)
    for spec in (*container_specs(ACTIVE, ARCHIVE), shares_spec(), groups_spec()):
        database.create_container_if_not_exists(
            spec.name,
            partition_key=PartitionKey(spec.partition_key_path),
            indexing_policy=spec.indexing_policy,
            default_ttl=spec.default_ttl,
            full_text_policy=spec.full_text_policy,
        )
    try:
        yield CosmosDatabase(account, name)
    finally:
        client.delete_database(name)
