"""Cosmos DB for NoSQL: a serverless account, the database, the two containers, and data access.

The containers' names, partition key and indexing policy come from ``shared.storage.containers``,
the single definition the code also uses, so what is deployed cannot drift from what is queried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_azure_native import authorization, cosmosdb

from infra.identity import assignment_name
from infra.protection import create_delete_lock, keep_data
from infra.stack_config import StackConfig
from shared.storage.containers import ContainerSpec, container_specs, groups_spec, shares_spec

# Cosmos DB's built-in data-plane role "Cosmos DB Built-in Data Contributor".
COSMOS_DATA_CONTRIBUTOR_ROLE = "00000000-0000-0000-0000-000000000002"
# The account capability Azure requires before a container may have a full-text policy or index
# (Azure: "Full text search in Azure Cosmos DB for NoSQL", "Enable the full text feature").
FULL_TEXT_CAPABILITY = "EnableNoSQLFullTextSearch"


@dataclass(frozen=True)
class CosmosData:
    account: cosmosdb.DatabaseAccount
    database: cosmosdb.SqlResourceSqlDatabase
    containers: tuple[cosmosdb.SqlResourceSqlContainer, ...]
    specs: tuple[ContainerSpec, ...]  # the active and archive containers
    shares: ContainerSpec
    groups: ContainerSpec
    role_assignment: cosmosdb.SqlResourceSqlRoleAssignment
    delete_lock: authorization.ManagementLockByScope


def indexing_policy_args(policy: Mapping[str, Any]) -> cosmosdb.IndexingPolicyArgs:
    """The shared indexing policy (Cosmos REST shape) as provider arguments, field for field.

    An unknown key is an error rather than silently dropped: if the shared definition grows a
    feature (spatial indexes, say), the deployment must learn it too.
    """
    known = {
        "indexingMode",
        "automatic",
        "includedPaths",
        "excludedPaths",
        "compositeIndexes",
        "fullTextIndexes",
    }
    unknown = set(policy) - known
    if unknown:
        raise ValueError(f"indexing policy keys not handled by infra/data.py: {sorted(unknown)}")
    for entry in [*policy.get("includedPaths", []), *policy.get("excludedPaths", [])]:
        if set(entry) != {"path"}:
            raise ValueError(f"index path entries other than 'path' are not handled: {entry}")
    return cosmosdb.IndexingPolicyArgs(
        indexing_mode=policy.get("indexingMode"),
        automatic=policy.get("automatic"),
        included_paths=[
            cosmosdb.IncludedPathArgs(path=p["path"]) for p in policy.get("includedPaths", [])
        ],
        excluded_paths=[
            cosmosdb.ExcludedPathArgs(path=p["path"]) for p in policy.get("excludedPaths", [])
        ],
        composite_indexes=[
            [cosmosdb.CompositePathArgs(path=c["path"], order=c["order"]) for c in composite]
            for composite in policy.get("compositeIndexes", [])
        ],
        # None (not an empty list) for a container without them, as the definition has it.
        full_text_indexes=[
            cosmosdb.FullTextIndexPathArgs(path=entry["path"])
            for entry in policy["fullTextIndexes"]
        ]
        if "fullTextIndexes" in policy
        else None,
    )


def full_text_policy_args(policy: Mapping[str, Any]) -> cosmosdb.FullTextPolicyArgs:
    """The shared full-text policy (Cosmos REST shape) as provider arguments, field for field
    (an unknown key is an error, as for the indexing policy)."""
    unknown = set(policy) - {"defaultLanguage", "fullTextPaths"}
    if unknown:
        raise ValueError(f"full-text policy keys not handled by infra/data.py: {sorted(unknown)}")
    return cosmosdb.FullTextPolicyArgs(
        default_language=policy.get("defaultLanguage"),
        full_text_paths=[
            cosmosdb.FullTextPathArgs(path=entry["path"], language=entry.get("language"))
            for entry in policy.get("fullTextPaths", [])
        ],
    )


def create_data(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    account_name: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    tags: Mapping[str, str],
) -> CosmosData:
    location = cfg.location
    database_name = cfg.data.database
    backup_tier = cfg.data.backup_tier
    account = cosmosdb.DatabaseAccount(
        f"{prefix}-cosmos",
        account_name=account_name,
        resource_group_name=resource_group_name,
        location=location,
        kind=cosmosdb.DatabaseAccountKind.GLOBAL_DOCUMENT_DB,
        database_account_offer_type=cosmosdb.DatabaseAccountOfferType.STANDARD,
        locations=[
            cosmosdb.LocationArgs(location_name=location, failover_priority=0),
        ],
        # Full-text search (the containers' full-text policy and index) needs its capability.
        capabilities=[
            cosmosdb.CapabilityArgs(name=name)
            for name in ("EnableServerless", FULL_TEXT_CAPABILITY)
        ],
        consistency_policy=cosmosdb.ConsistencyPolicyArgs(
            default_consistency_level=cosmosdb.DefaultConsistencyLevel.SESSION,
        ),
        # Entra ID only: no account keys, and no key-based changes to databases or containers.
        disable_local_auth=True,
        disable_key_based_metadata_write_access=True,
        minimal_tls_version=cosmosdb.MinimalTlsVersion.TLS12,
        # Continuous backup: point-in-time restore to any second in the retention window.
        backup_policy=cosmosdb.ContinuousModeBackupPolicyArgs(
            type="Continuous",
            continuous_mode_properties=cosmosdb.ContinuousModePropertiesArgs(tier=backup_tier),
        ),
        public_network_access=cosmosdb.PublicNetworkAccess.ENABLED,
        tags=dict(tags),
        # The users' data: never deleted or replaced by the stack (infra/protection.py).
        opts=keep_data(),
    )

    database = cosmosdb.SqlResourceSqlDatabase(
        f"{prefix}-db",
        account_name=account.name,
        resource_group_name=resource_group_name,
        database_name=database_name,
        resource=cosmosdb.SqlDatabaseResourceArgs(id=database_name),
        opts=keep_data(),
    )

    specs = container_specs()
    shares = shares_spec()
    groups = groups_spec()
    containers = tuple(
        cosmosdb.SqlResourceSqlContainer(
            f"{prefix}-container-{spec.name}",
            account_name=account.name,
            resource_group_name=resource_group_name,
            database_name=database.name,
            container_name=spec.name,
            resource=cosmosdb.SqlContainerResourceArgs(
                id=spec.name,
                partition_key=cosmosdb.ContainerPartitionKeyArgs(
                    paths=[spec.partition_key_path],
                    kind=cosmosdb.PartitionKind.HASH,
                    version=2,
                ),
                indexing_policy=indexing_policy_args(spec.indexing_policy),
                # Shares only: time-to-live on, no default (each item carries its own ttl).
                default_ttl=spec.default_ttl,
                full_text_policy=(
                    full_text_policy_args(spec.full_text_policy)
                    if spec.full_text_policy is not None
                    else None
                ),
            ),
            opts=keep_data(),
        )
        for spec in (*specs, shares, groups)
    )

    # Data-plane access for the identity, scoped to this database (narrower than the account).
    scope = pulumi.Output.concat(account.id, "/dbs/", database_name)
    principal = pulumi.Output.from_input(principal_id)
    role_assignment = cosmosdb.SqlResourceSqlRoleAssignment(
        f"{prefix}-cosmos-data-contributor",
        account_name=account.name,
        resource_group_name=resource_group_name,
        role_assignment_id=pulumi.Output.all(scope, principal).apply(
            lambda args: assignment_name(args[0], args[1], COSMOS_DATA_CONTRIBUTOR_ROLE)
        ),
        role_definition_id=pulumi.Output.concat(
            account.id, "/sqlRoleDefinitions/", COSMOS_DATA_CONTRIBUTOR_ROLE
        ),
        principal_id=principal,
        scope=scope,
        # After the containers too: Cosmos DB answers 412 ("another operation in progress requires
        # an exclusive lock") to a role assignment made while a container is being created.
        opts=pulumi.ResourceOptions(depends_on=[database, *containers]),
    )
    lock = create_delete_lock(prefix, account_id=account.id)
    return CosmosData(account, database, containers, specs, shares, groups, role_assignment, lock)
