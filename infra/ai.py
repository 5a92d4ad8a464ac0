"""Azure OpenAI: the account (Entra ID only), one model deployment, and the app's access to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, cognitiveservices

from infra.identity import ROLE_COGNITIVE_SERVICES_OPENAI_USER, grant_role
from infra.stack_config import ModelConfig


@dataclass(frozen=True)
class OpenAi:
    account: cognitiveservices.Account
    deployment: cognitiveservices.Deployment
    endpoint: pulumi.Output[str]
    role_assignment: authorization.RoleAssignment


def create_openai(
    prefix: str,
    cfg: ModelConfig,
    *,
    resource_group_name: pulumi.Input[str],
    account_name: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    tags: Mapping[str, str],
) -> OpenAi:
    account = cognitiveservices.Account(
        f"{prefix}-openai",
        account_name=account_name,
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind="OpenAI",
        sku=cognitiveservices.SkuArgs(name="S0"),
        properties=cognitiveservices.AccountPropertiesArgs(
            # Entra ID tokens need a custom subdomain; keys are switched off.
            custom_sub_domain_name=account_name,
            disable_local_auth=True,
            public_network_access=cognitiveservices.PublicNetworkAccess.ENABLED,
        ),
        tags=dict(tags),
    )
    deployment = cognitiveservices.Deployment(
        f"{prefix}-openai-deployment",
        account_name=account.name,
        resource_group_name=resource_group_name,
        deployment_name=cfg.deployment,
        sku=cognitiveservices.SkuArgs(name=cfg.sku, capacity=cfg.capacity),
        properties=cognitiveservices.DeploymentPropertiesArgs(
            model=cognitiveservices.DeploymentModelArgs(
                format="OpenAI", name=cfg.model, version=cfg.model_version
            ),
            version_upgrade_option=(
                cognitiveservices.DeploymentModelVersionUpgradeOption.ONCE_CURRENT_VERSION_EXPIRED
            ),
        ),
    )
    role = grant_role(
        f"{prefix}-role-openai-user",
        scope=account.id,
        role_id=ROLE_COGNITIVE_SERVICES_OPENAI_USER,
        principal_id=principal_id,
        description="Parley: call the chat model deployment with the app's identity",
    )
    endpoint = account.properties.apply(lambda p: p.endpoint)
    return OpenAi(account, deployment, endpoint, role)
