"""What keeps the stack from deleting users' data (docs/deploy.md, "Data the stack will not
delete").

Three layers, each covering what the one before cannot:

- ``keep_data``: ``protect`` makes Pulumi refuse to delete or replace the resource group, the
  Cosmos DB account, its database and containers (and the lock below); ``retain_on_delete``
  leaves them in Azure if a stack is destroyed after all (a resource group deleted by Azure
  would take the retained account with it, so the group is retained too).
- ``create_delete_lock``: a CanNotDelete management lock on the account, which Azure applies to
  the account and every child resource (databases, containers), whoever asks: the portal, the
  CLI, another tool. The account has ``disableKeyBasedMetadataWriteAccess``, without which a lock
  does not stop a client holding account keys.
- ``refuse_data_replacement``: a setting that names a data resource (``DATA_IDENTITY_KEYS``) may
  not change once the stack has deployed it. Protection alone stops such a change halfway, with
  the engine's message naming a resource; this check stops it before anything is registered,
  naming the setting. The stack records the settings it deployed as an output
  (``dataIdentity``) and reads them back through a reference to itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi_azure_native import authorization

from infra.stack_config import PROJECT, StackConfig, StackConfigError
from shared.storage.containers import ContainerSpec, groups_spec, shares_spec

# The stack output that records the data resources' identity as deployed.
DATA_IDENTITY_OUTPUT = "dataIdentity"
CONTAINERS_SOURCE = "shared/storage/containers.py"

# Each identity entry, and where it is set: a config key, or the code that defines it. A change
# of any of them replaces (deletes and recreates) a data resource:
# - namePrefix: every logical name and the account's name; the old resources would be deleted.
# - location, resourceGroupName: the resource group, hence everything in it.
# - cosmosDatabase: the database and both containers.
# - container names and partition key paths: the containers (a partition key cannot change).
DATA_IDENTITY_KEYS: dict[str, str] = {
    "namePrefix": "config",
    "location": "config",
    "resourceGroupName": "config",
    "cosmosDatabase": "config",
    "containers": CONTAINERS_SOURCE,
    # A key of its own: a stack deployed before shares existed recorded no such entry, and an
    # entry the record lacks is not compared, so adding the container is not a replacement.
    "sharesContainer": CONTAINERS_SOURCE,
    # Likewise for the groups container (added after shares).
    "groupsContainer": CONTAINERS_SOURCE,
}


def keep_data(opts: pulumi.ResourceOptions | None = None) -> pulumi.ResourceOptions:
    """``opts`` with the options every data-holding resource carries: protected, retained."""
    return pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(protect=True, retain_on_delete=True)
    )


def create_delete_lock(
    prefix: str, *, account_id: pulumi.Input[str]
) -> authorization.ManagementLockByScope:
    """A CanNotDelete lock on the Cosmos DB account, inherited by its databases and containers.

    A lock by scope (the account's id) rather than ManagementLockAtResourceLevel: the latter takes
    a parentResourcePath that is empty for a top-level resource, which the provider has trouble
    parsing (pulumi/pulumi-azure-native#2630).
    """
    return authorization.ManagementLockByScope(
        f"{prefix}-cosmos-delete-lock",
        lock_name=f"{prefix}-cosmos-delete-lock",
        scope=account_id,
        level=authorization.LockLevel.CAN_NOT_DELETE,
        notes=(
            "Parley: users' conversations. Removing this lock is a deliberate step "
            "(docs/deploy.md, 'Data the stack will not delete')."
        ),
        opts=keep_data(),
    )


def data_identity(
    cfg: StackConfig,
    specs: tuple[ContainerSpec, ...],
    shares: ContainerSpec | None = None,
    groups: ContainerSpec | None = None,
) -> dict[str, str]:
    """The settings whose change would replace a data resource, as the stack records them."""
    shares = shares or shares_spec()
    groups = groups or groups_spec()
    return {
        "namePrefix": cfg.name_prefix,
        "location": cfg.location,
        "resourceGroupName": cfg.resource_group_name,
        "cosmosDatabase": cfg.data.database,
        "containers": ",".join(f"{s.name}:{s.partition_key_path}" for s in specs),
        "sharesContainer": f"{shares.name}:{shares.partition_key_path}",
        "groupsContainer": f"{groups.name}:{groups.partition_key_path}",
    }


def data_identity_changes(
    deployed: Mapping[str, Any] | None, wanted: Mapping[str, str]
) -> list[str]:
    """One message per identity setting that differs from what the stack deployed.

    Nothing deployed yet (a new stack, or one last updated before the stack recorded its
    identity) means nothing to compare; an entry the record lacks is skipped likewise.
    """
    if not deployed:
        return []
    problems: list[str] = []
    for key, value in wanted.items():
        before = deployed.get(key)
        if before is None or str(before) == value:
            continue
        source = DATA_IDENTITY_KEYS[key]
        if source == "config":
            where = f"{PROJECT}:{key}"
            undo = f"set it back (pulumi config set {key} {before})"
        else:
            where = f"{key} ({source})"
            undo = f"restore it in {source}"
        problems.append(
            f"{where}: {value!r} differs from {before!r}, the value this stack deployed its "
            "Cosmos DB data with; the change would replace the data resources and delete the "
            f"data in them. {undo}, or see docs/deploy.md, 'Data the stack will not delete', "
            "to move or remove the data deliberately"
        )
    return problems


def refuse_data_replacement(deployed: Mapping[str, Any] | None, wanted: Mapping[str, str]) -> None:
    """Raise StackConfigError, naming each setting, if a change would replace a data resource."""
    problems = data_identity_changes(deployed, wanted)
    if problems:
        raise StackConfigError(problems)


def own_stack_name() -> str:
    """This stack's fully qualified name, ``<organization>/<project>/<stack>``."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


# Outputs exported before the stack recorded its identity, and what they still tell about it.
_OLDER_OUTPUTS = ("resourceGroupName", "cosmosAccountName")


def identity_from_outputs(outputs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The deployed identity, from the stack's outputs; None when they tell nothing.

    A stack last updated before the record still exported its resource group's name and the
    account's name, ``<namePrefix>-cosmos-<suffix>`` (the prefix has no '-'), so those two
    settings are guarded from the first update with this program on.
    """
    recorded = outputs.get(DATA_IDENTITY_OUTPUT)
    if isinstance(recorded, Mapping):
        return recorded
    derived: dict[str, str] = {}
    group = outputs.get("resourceGroupName")
    if isinstance(group, str) and group:
        derived["resourceGroupName"] = group
    account = outputs.get("cosmosAccountName")
    if isinstance(account, str) and "-cosmos-" in account:
        derived["namePrefix"] = account.split("-cosmos-", 1)[0]
    return derived or None


async def deployed_data_identity() -> Mapping[str, Any] | None:
    """The identity this stack deployed its data with, or None for a stack not yet deployed.

    A stack reference to the stack itself: the engine reads the stack's outputs from its state,
    where they stay as the last completed update left them until this update registers its own
    at the end (a resource the program registers again keeps its old outputs until then).
    """
    reference = pulumi.StackReference(f"{PROJECT}-deployed-identity", stack_name=own_stack_name())
    outputs: dict[str, Any] = {}
    for name in (DATA_IDENTITY_OUTPUT, *_OLDER_OUTPUTS):
        details = await reference.get_output_details(name)
        outputs[name] = details.value if details.value is not None else details.secret_value
    return identity_from_outputs(outputs)
