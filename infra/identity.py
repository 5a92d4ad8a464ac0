"""The user-assigned managed identity the app uses for everything, and its Azure RBAC grants.

No keys, connection strings or secrets: Cosmos DB, Azure OpenAI, the Functions host storage and
Application Insights all authenticate the app through this one identity.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import pulumi
from pulumi_azure_native import authorization, managedidentity

from infra.stack_config import StackConfig

# Built-in Azure role definition ids (the same in every tenant).
ROLE_STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
ROLE_MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
ROLE_COGNITIVE_SERVICES_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
# "Web PubSub Service Owner": full access to the Web PubSub data-plane REST API.
ROLE_WEB_PUBSUB_SERVICE_OWNER = "12cf5a90-567b-43ae-8102-96cf46c7d9b4"

# Role assignment names must be GUIDs, and the same GUID on every run (a new one would create a
# second assignment). uuid5 over scope, principal and role is stable and unique per grant.
_ASSIGNMENT_NAMESPACE = uuid.UUID("6c9b4f4e-6f0a-4a43-9a55-1f5d3c2b7a10")


def assignment_name(scope: str, principal_id: str, role_id: str) -> str:
    """The deterministic GUID name of one role assignment."""
    key = "|".join(part.lower() for part in (scope, principal_id, role_id))
    return str(uuid.uuid5(_ASSIGNMENT_NAMESPACE, key))


def subscription_of(resource_id: str) -> str:
    """The subscription id in an ARM resource id (``/subscriptions/<id>/...``)."""
    parts = resource_id.split("/")
    if len(parts) < 3 or parts[1].lower() != "subscriptions" or not parts[2]:
        raise ValueError(f"not an ARM resource id: {resource_id!r}")
    return parts[2]


def create_identity(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    tags: Mapping[str, str],
) -> managedidentity.UserAssignedIdentity:
    """The app's user-assigned identity: every role below is granted to it."""
    name = f"{prefix}-id"
    return managedidentity.UserAssignedIdentity(
        name,
        resource_name_=name,
        resource_group_name=resource_group_name,
        location=cfg.location,
        tags=dict(tags),
    )


def grant_role(
    logical_name: str,
    *,
    scope: pulumi.Input[str],
    role_id: str,
    principal_id: pulumi.Input[str],
    description: str,
    depends_on: Sequence[pulumi.Resource] = (),
) -> authorization.RoleAssignment:
    """Assign a built-in role to the app's identity on ``scope`` (a resource, never wider)."""
    scope_out = pulumi.Output.from_input(scope)
    principal_out = pulumi.Output.from_input(principal_id)
    name = pulumi.Output.all(scope_out, principal_out).apply(
        lambda args: assignment_name(args[0], args[1], role_id)
    )
    role_definition_id = scope_out.apply(
        lambda s: (
            f"/subscriptions/{subscription_of(s)}/providers/Microsoft.Authorization"
            f"/roleDefinitions/{role_id}"
        )
    )
    return authorization.RoleAssignment(
        logical_name,
        role_assignment_name=name,
        scope=scope_out,
        principal_id=principal_out,
        # A new identity may not have replicated yet; naming its type avoids a lookup that fails.
        principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
        role_definition_id=role_definition_id,
        description=description,
        opts=pulumi.ResourceOptions(depends_on=list(depends_on)),
    )
