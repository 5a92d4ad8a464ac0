"""Parley in Azure: the Pulumi program's entry point (``Pulumi.yaml``: ``main: infra/``).

``build`` composes the modules: resource group, identity, Cosmos DB, Azure OpenAI, Web PubSub,
monitoring and the Function App; ``main`` reads and validates the stack's config, and ``deploy``
refuses a change that would replace a data resource (``infra/protection.py``), builds, and exports.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

# Pulumi runs this folder as a script, so only infra/ is on sys.path. The repository root must be
# importable too: the program reads shared.config.SETTINGS (the app settings the code reads) and
# shared.storage.containers (the containers' definition), the single source of both.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pulumi  # noqa: E402
from pulumi.runtime.config import is_config_secret  # noqa: E402
from pulumi_azure_native import resources  # noqa: E402

from infra.ai import create_openai  # noqa: E402
from infra.app import create_function_app  # noqa: E402
from infra.data import create_data  # noqa: E402
from infra.identity import create_identity  # noqa: E402
from infra.monitoring import create_alerts, create_observability  # noqa: E402
from infra.protection import (  # noqa: E402
    DATA_IDENTITY_OUTPUT,
    data_identity,
    deployed_data_identity,
    keep_data,
    refuse_data_replacement,
)
from infra.realtime import create_realtime  # noqa: E402
from infra.stack_config import PROJECT, StackConfig, load_config  # noqa: E402
from infra.workbook import create_workbook  # noqa: E402
from shared.storage.containers import container_specs  # noqa: E402


def unique_suffix(resource_group_id: str) -> str:
    """Eight hex characters, stable for one resource group, for globally unique names."""
    return hashlib.sha256(resource_group_id.lower().encode()).hexdigest()[:8]


def build(cfg: StackConfig) -> dict[str, pulumi.Output[Any]]:
    """Declare every resource; return the stack outputs (no secrets among them)."""
    prefix = cfg.name_prefix
    tags = {"app": PROJECT, "stack": cfg.stack, "managed-by": "pulumi"}

    group = resources.ResourceGroup(
        f"{prefix}-rg",
        resource_group_name=cfg.resource_group_name,
        location=cfg.location,
        tags=tags,
        # Deleting the group would delete the data in it, retained or not (infra/protection.py).
        opts=keep_data(),
    )
    suffix = group.id.apply(unique_suffix)

    identity = create_identity(prefix, cfg, resource_group_name=group.name, tags=tags)

    data = create_data(
        prefix,
        cfg,
        resource_group_name=group.name,
        account_name=suffix.apply(lambda s: f"{prefix}-cosmos-{s}"),
        principal_id=identity.principal_id,
        tags=tags,
    )
    openai = create_openai(
        prefix,
        cfg.model,
        resource_group_name=group.name,
        account_name=suffix.apply(lambda s: f"{prefix}-oai-{s}"),
        principal_id=identity.principal_id,
        tags=tags,
    )
    realtime = create_realtime(
        prefix,
        cfg,
        resource_group_name=group.name,
        service_name=suffix.apply(lambda s: f"{prefix}-wps-{s}"),
        principal_id=identity.principal_id,
        tags=tags,
    )
    observability = create_observability(
        prefix, cfg, resource_group_name=group.name, principal_id=identity.principal_id, tags=tags
    )
    create_alerts(
        prefix, cfg, resource_group_name=group.name, component=observability.component, tags=tags
    )
    create_workbook(
        prefix, cfg, resource_group_name=group.name, component=observability.component, tags=tags
    )
    active, archive = data.specs
    function_app = create_function_app(
        prefix,
        cfg,
        resource_group_name=group.name,
        storage_account_name=suffix.apply(lambda s: f"{prefix}st{s}"),
        function_app_name=suffix.apply(lambda s: f"{prefix}-func-{s}"),
        identity=identity,
        cosmos_endpoint=data.account.document_endpoint,
        active_container=active.name,
        archive_container=archive.name,
        shares_container=data.shares.name,
        groups_container=data.groups.name,
        openai_endpoint=openai.endpoint,
        webpubsub_endpoint=realtime.endpoint,
        webpubsub_hub=realtime.hub_name,
        appinsights=observability.component,
        depends_on=[observability.metrics_publisher, realtime.role_assignment, realtime.hub],
        tags=tags,
    )

    return {
        "apiBaseUrl": pulumi.Output.concat("https://", function_app.app.default_host_name, "/api"),
        "functionAppName": function_app.app.name,
        "resourceGroupName": group.name,
        "cosmosEndpoint": data.account.document_endpoint,
        "cosmosAccountName": data.account.name,
        "openAiEndpoint": openai.endpoint,
        "webPubSubEndpoint": realtime.endpoint,
        "identityClientId": identity.client_id,
        "identityPrincipalId": identity.principal_id,
        # Read back at the next update: the settings the data resources were deployed with.
        DATA_IDENTITY_OUTPUT: pulumi.Output.from_input(
            data_identity(cfg, data.specs, data.shares, data.groups)
        ),
    }


async def deploy(cfg: StackConfig) -> dict[str, pulumi.Output[Any]]:
    """Refuse a change that would replace a data resource, then declare everything.

    The check runs before the first resource is declared, so a refused change touches nothing.
    """
    refuse_data_replacement(await deployed_data_identity(), data_identity(cfg, container_specs()))
    return build(cfg)


def main() -> None:
    config = pulumi.Config()
    cfg = load_config(
        config.get,
        is_secret=lambda key: is_config_secret(f"{PROJECT}:{key}"),
        stack=pulumi.get_stack(),
        repo_root=REPO_ROOT,
    )
    # Asynchronous, so that the deployed identity is read before anything is declared.
    pulumi.run(lambda: deploy(cfg))


if __name__ == "__main__":
    main()
