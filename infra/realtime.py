"""Azure Web PubSub for real-time group events: the resource (Entra ID only), the hub, and the
app's access to its data plane (``shared/realtime/webpubsub.py`` publishes and manages groups;
browsers connect with the client URLs the app hands out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, webpubsub

from infra.identity import ROLE_WEB_PUBSUB_SERVICE_OWNER, grant_role
from infra.stack_config import StackConfig
from shared.config import Settings

# The hub the app uses: the default of WEBPUBSUB_HUB (one place for the name).
HUB = str(Settings.model_fields["webpubsub_hub"].default)
# One unit of Standard: an SLA, 1,000 concurrent connections per unit (Free has no SLA and
# 20 connections). More units: `capacity` here.
SKU = "Standard_S1"
CAPACITY = 1


@dataclass(frozen=True)
class Realtime:
    service: webpubsub.WebPubSub
    hub: webpubsub.WebPubSubHub
    hub_name: str
    endpoint: pulumi.Output[str]
    role_assignment: authorization.RoleAssignment


def create_realtime(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    service_name: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    tags: Mapping[str, str],
) -> Realtime:
    service = webpubsub.WebPubSub(
        f"{prefix}-webpubsub",
        resource_name_=service_name,
        resource_group_name=resource_group_name,
        location=cfg.location,
        sku=webpubsub.ResourceSkuArgs(
            name=SKU, tier=webpubsub.WebPubSubSkuTier.STANDARD, capacity=CAPACITY
        ),
        # No access keys: the app signs in with its identity, and the client tokens it hands
        # out are issued by the service itself (generateToken), not signed with a key.
        disable_local_auth=True,
        disable_aad_auth=False,
        # Browsers connect from anywhere, with a token the app issued.
        public_network_access="Enabled",
        tls=webpubsub.WebPubSubTlsSettingsArgs(client_cert_enabled=False),
        tags=dict(tags),
    )
    hub = webpubsub.WebPubSubHub(
        f"{prefix}-webpubsub-hub",
        resource_name_=service.name,
        resource_group_name=resource_group_name,
        hub_name=HUB,
        properties=webpubsub.WebPubSubHubPropertiesArgs(
            # Every connection needs a token from GET /api/realtime/negotiate.
            anonymous_connect_policy="deny",
            # No event handlers: clients only receive; the app decides group membership.
            event_handlers=[],
        ),
    )
    # "Web PubSub Service Owner": the narrowest built-in role that can send and manage groups
    # (the other data-plane role, "Web PubSub Service Reader", is read-only); on this resource
    # only.
    role = grant_role(
        f"{prefix}-role-webpubsub-owner",
        scope=service.id,
        role_id=ROLE_WEB_PUBSUB_SERVICE_OWNER,
        principal_id=principal_id,
        description="Parley: publish group events and manage Web PubSub groups",
    )
    endpoint = pulumi.Output.concat("https://", service.host_name)
    return Realtime(service, hub, HUB, endpoint, role)
