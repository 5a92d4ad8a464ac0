"""The Function App: host storage, Flex Consumption plan, app settings, CORS and Easy Auth.

App settings use the code's own names (``shared.config.SETTINGS``). Each setting the code reads is
either set here or listed in ``NOT_IN_AZURE`` with the reason; a test proves the two lists cover
``SETTINGS`` exactly, so a new setting cannot be forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_random
from pulumi_azure_native import applicationinsights, authorization, managedidentity, storage, web

from infra.identity import (
    ROLE_STORAGE_BLOB_DATA_OWNER,
    ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR,
    grant_role,
)
from infra.stack_config import AuthConfig, StackConfig

# Settings the code reads that are deliberately not set in Azure, and why.
NOT_IN_AZURE: Mapping[str, str] = {
    "SQLITE_PATH": "the embedded store is for local runs; Azure uses Cosmos DB",
    "COSMOS_KEY": "account keys are disabled (disableLocalAuth); the managed identity is used",
    "COSMOS_VERIFY_TLS": "only for a local emulator's self-signed certificate",
    "OPENAI_BASE_URL": "OpenAI-compatible servers are for local runs; Azure uses Azure OpenAI",
    "OPENAI_API_KEY": "no model keys in Azure; Azure OpenAI is called with the managed identity",
    "OPENAI_MODEL": "OpenAI-compatible servers only; Azure OpenAI uses AZURE_OPENAI_DEPLOYMENT",
    "WEBSITE_AUTH_ENABLED": "set by App Service itself (read-only): whether Easy Auth is on",
    "PORT": "the local host's port; the Functions host owns the port in Azure",
    "DEVHOST_HEADER_TIMEOUT_S": "the local host's header timeout; Azure's front end has its own",
    "DEVHOST_BODY_TIMEOUT_S": "the local host's body timeout; Azure's front end has its own",
    "SSE_KEEPALIVE_S": "the default (15 s) suits Azure's front end; set locally to test",
    "GROUP_MAX_MEMBERS": "the default (50) is the product's limit; an app setting may change it",
    "STREAM_CHECKPOINT_MS": "the default (1000 ms) is the contract's pace; set locally to test",
    "WEBPUBSUB_KEY": "Web PubSub has local auth disabled; the managed identity is used",
}

# Settings outside shared.config that the Functions host and platform need.
PLATFORM_SETTINGS: tuple[str, ...] = (
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_ENABLE_INIT_INDEXING",
)

# siteConfig properties Flex Consumption refuses (ARM error 51021, "... for Flex Consumption
# sites is invalid"): its deprecation list (functions-app-settings#flex-consumption-plan-
# deprecations) and the properties named in reported 51021 errors. The runtime, scale and FTP
# live elsewhere on Flex (functionAppConfig, WebAppFtpAllowed).
FLEX_REJECTED_SITE_CONFIG: frozenset[str] = frozenset(
    {
        "alwaysOn",
        "ftpsState",
        "functionAppScaleLimit",
        "functionsRuntimeScaleMonitoringEnabled",
        "javaVersion",
        "linuxFxVersion",
        "netFrameworkVersion",
        "powerShellVersion",
        "preWarmedInstanceCount",
        "use32BitWorkerProcess",
        "vnetRouteAllEnabled",
        "windowsFxVersion",
    }
)

HEALTH_PATH = "/api/health"
DEPLOYMENT_CONTAINER = "app-package"
PYTHON_VERSION = "3.11"
# TOKEN_SIGNING_KEY: 64 letters and digits, about 380 bits (shared.config accepts 32 to 512
# characters). No special characters, so the value needs no quoting anywhere it is shown or set.
TOKEN_SIGNING_KEY_LENGTH = 64


@dataclass(frozen=True)
class FunctionApp:
    storage_account: storage.StorageAccount
    deployment_container: storage.BlobContainer
    storage_roles: tuple[authorization.RoleAssignment, ...]
    plan: web.AppServicePlan
    app: web.WebApp
    auth: web.WebAppAuthSettingsV2
    ftp: web.WebAppFtpAllowed
    scm: web.WebAppScmAllowed
    token_signing_key: pulumi_random.RandomPassword
    app_settings: Mapping[str, pulumi.Input[str]]


def app_settings(
    cfg: StackConfig,
    *,
    client_id: pulumi.Input[str],
    storage_account_name: pulumi.Input[str],
    cosmos_endpoint: pulumi.Input[str],
    active_container: str,
    archive_container: str,
    shares_container: str,
    groups_container: str,
    openai_endpoint: pulumi.Input[str],
    webpubsub_endpoint: pulumi.Input[str],
    webpubsub_hub: str,
    appinsights_connection_string: pulumi.Input[str],
    token_signing_key: pulumi.Input[str],
) -> dict[str, pulumi.Input[str]]:
    """Every app setting, by name. No keys, passwords or storage connection strings."""
    settings: dict[str, pulumi.Input[str]] = {
        # Functions host storage through the identity (no AzureWebJobsStorage connection string).
        "AzureWebJobsStorage__accountName": storage_account_name,
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": client_id,
        # Ingestion endpoint + instrumentation key: not a credential once local auth is off; the
        # authentication string makes the SDK send Entra ID tokens of the app's identity.
        "APPLICATIONINSIGHTS_CONNECTION_STRING": appinsights_connection_string,
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": pulumi.Output.concat(
            "ClientId=", client_id, ";Authorization=AAD"
        ),
        # The HTTP streaming extension needs the worker to index functions at start-up.
        "PYTHON_ENABLE_INIT_INDEXING": "1",
        # shared.config settings.
        "STORAGE_BACKEND": "cosmos",
        "COSMOS_ENDPOINT": cosmos_endpoint,
        "COSMOS_DATABASE": cfg.data.database,
        "COSMOS_CONTAINER": active_container,
        "COSMOS_ARCHIVE_CONTAINER": archive_container,
        "COSMOS_SHARES_CONTAINER": shares_container,
        "COSMOS_GROUPS_CONTAINER": groups_container,
        "AZURE_CLIENT_ID": client_id,
        "LLM_PROVIDER": "azure-openai",
        "AZURE_OPENAI_ENDPOINT": openai_endpoint,
        "AZURE_OPENAI_DEPLOYMENT": cfg.model.deployment,
        "AZURE_OPENAI_API_VERSION": cfg.model.api_version,
        # Real-time group events: the identity signs in (no key; infra/realtime.py).
        "WEBPUBSUB_ENDPOINT": webpubsub_endpoint,
        "WEBPUBSUB_HUB": webpubsub_hub,
        "AUTH_MODE": "easyauth",
        # The app's second lock behind Easy Auth (docs/security.md, "Authentication"): it
        # verifies the caller's token itself against what Easy Auth is configured with.
        "AUTH_ISSUER": cfg.auth.issuer,
        "AUTH_AUDIENCE": ",".join(cfg.auth.allowed_audiences),
        "AUTH_JWKS_URL": cfg.auth.jwks_url,
        "CORS_ALLOWED_ORIGINS": ",".join(cfg.network.spa_origins),
        # A pepper for pseudonymising emails in logs: kept secret in the Pulumi state.
        "LOG_HASH_SALT": pulumi.Output.secret(cfg.app.log_hash_salt),
        # The key that seals continuation and consistency tokens (docs/security.md, "Tokens the
        # server made"): generated by the stack, secret in the state, the same on every instance.
        "TOKEN_SIGNING_KEY": pulumi.Output.secret(token_signing_key),
        # MAX_*, LLM_*, SYSTEM_PROMPT and ARCHIVE_*.
        **cfg.app.values,
    }
    return settings


def flex_site_config(
    settings: Mapping[str, pulumi.Input[str]], origins: Sequence[str]
) -> web.SiteConfigArgsDict:
    """The site configuration, holding only what Flex Consumption accepts.

    A plain dict on purpose: ``web.SiteConfigArgs`` fills in its own defaults (netFrameworkVersion
    'v4.6', localMySqlEnabled, http20Enabled), and Flex refuses netFrameworkVersion with ARM error
    51021 (pulumi/pulumi-azure-native#4168). A dict reaches the provider exactly as written.
    FTP is off through ``WebAppFtpAllowed``, not ftpsState, which Flex refuses too.
    """
    return {
        "app_settings": [
            {"name": name, "value": value} for name, value in sorted(settings.items())
        ],
        "cors": {"allowed_origins": list(origins), "support_credentials": True},
        "min_tls_version": web.SupportedTlsVersions.SUPPORTED_TLS_VERSIONS_1_2,
        "scm_min_tls_version": web.SupportedTlsVersions.SUPPORTED_TLS_VERSIONS_1_2,
        "http20_enabled": True,
    }


def create_token_signing_key(prefix: str) -> pulumi_random.RandomPassword:
    """The random key behind TOKEN_SIGNING_KEY, made once and kept in the stack's state.

    Its ``result`` is a secret output (the provider marks it so); nobody ever types or sees it.
    Replacing this resource changes the key, which only invalidates outstanding tokens.
    """
    return pulumi_random.RandomPassword(
        f"{prefix}-token-signing-key", length=TOKEN_SIGNING_KEY_LENGTH, special=False
    )


@dataclass(frozen=True)
class HostStorage:
    """The Functions host's storage account, its deployment container and the roles on it."""

    account: storage.StorageAccount
    container: storage.BlobContainer
    roles: tuple[authorization.RoleAssignment, ...]


def create_function_app(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    storage_account_name: pulumi.Input[str],
    function_app_name: pulumi.Input[str],
    identity: managedidentity.UserAssignedIdentity,
    cosmos_endpoint: pulumi.Input[str],
    active_container: str,
    archive_container: str,
    shares_container: str,
    groups_container: str,
    openai_endpoint: pulumi.Input[str],
    webpubsub_endpoint: pulumi.Input[str],
    webpubsub_hub: str,
    appinsights: applicationinsights.Component,
    depends_on: list[pulumi.Resource],
    tags: Mapping[str, str],
) -> FunctionApp:
    """The app's resources, in this order: host storage, plan, signing key, app, Easy Auth, and
    basic-auth publishing switched off. Each piece is one small ``create_*`` below."""
    host = create_host_storage(
        prefix,
        cfg,
        resource_group_name=resource_group_name,
        account_name=storage_account_name,
        principal_id=identity.principal_id,
        tags=tags,
    )
    plan = create_plan(prefix, cfg, resource_group_name=resource_group_name, tags=tags)
    signing_key = create_token_signing_key(prefix)
    settings = app_settings(
        cfg,
        client_id=identity.client_id,
        storage_account_name=host.account.name,
        cosmos_endpoint=cosmos_endpoint,
        active_container=active_container,
        archive_container=archive_container,
        shares_container=shares_container,
        groups_container=groups_container,
        openai_endpoint=openai_endpoint,
        webpubsub_endpoint=webpubsub_endpoint,
        webpubsub_hub=webpubsub_hub,
        appinsights_connection_string=appinsights.connection_string,
        token_signing_key=signing_key.result,
    )
    app = create_web_app(
        prefix,
        cfg,
        resource_group_name=resource_group_name,
        name=function_app_name,
        plan=plan,
        host=host,
        identity=identity,
        settings=settings,
        depends_on=depends_on,
        tags=tags,
    )
    auth = create_easy_auth(prefix, cfg.auth, resource_group_name=resource_group_name, app=app)
    ftp, scm = create_publishing_off(prefix, resource_group_name=resource_group_name, app=app)
    return FunctionApp(
        host.account, host.container, host.roles, plan, app, auth, ftp, scm, signing_key, settings
    )


def create_host_storage(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    account_name: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    tags: Mapping[str, str],
) -> HostStorage:
    """Host storage and deployment packages: Entra ID only, private, TLS 1.2, https only."""
    account = storage.StorageAccount(
        f"{prefix}-storage",
        account_name=account_name,
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind=storage.Kind.STORAGE_V2,
        sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
        allow_shared_key_access=False,
        default_to_o_auth_authentication=True,
        allow_blob_public_access=False,
        allow_cross_tenant_replication=False,
        minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
        enable_https_traffic_only=True,
        public_network_access=storage.PublicNetworkAccess.ENABLED,
        tags=dict(tags),
    )
    container = storage.BlobContainer(
        f"{prefix}-deployment-container",
        account_name=account.name,
        resource_group_name=resource_group_name,
        container_name=DEPLOYMENT_CONTAINER,
        public_access=storage.PublicAccess.NONE,
    )
    # What the Functions host needs from AzureWebJobsStorage with an identity: Blob Data Owner
    # (coordination, timer locks and schedule state, keys, the deployment package) and Table Data
    # Contributor (the host's diagnostic events). No queue or blob triggers, so no queue role.
    roles = (
        grant_role(
            f"{prefix}-role-storage-blob-owner",
            scope=account.id,
            role_id=ROLE_STORAGE_BLOB_DATA_OWNER,
            principal_id=principal_id,
            description="Parley: Functions host storage and deployment package",
        ),
        grant_role(
            f"{prefix}-role-storage-table-contributor",
            scope=account.id,
            role_id=ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR,
            principal_id=principal_id,
            description="Parley: Functions host diagnostic events",
        ),
    )
    return HostStorage(account, container, roles)


def create_plan(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    tags: Mapping[str, str],
) -> web.AppServicePlan:
    """The Flex Consumption plan (Linux)."""
    return web.AppServicePlan(
        f"{prefix}-plan",
        name=f"{prefix}-plan",
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind="functionapp",
        reserved=True,  # Linux
        sku=web.SkuDescriptionArgs(name="FC1", tier="FlexConsumption"),
        tags=dict(tags),
    )


def create_web_app(
    prefix: str,
    cfg: StackConfig,
    *,
    resource_group_name: pulumi.Input[str],
    name: pulumi.Input[str],
    plan: web.AppServicePlan,
    host: HostStorage,
    identity: managedidentity.UserAssignedIdentity,
    settings: Mapping[str, pulumi.Input[str]],
    depends_on: Sequence[pulumi.Resource],
    tags: Mapping[str, str],
) -> web.WebApp:
    """The function app: runtime, scale, deployment package and site config on Flex."""
    deployment_url = pulumi.Output.concat(
        host.account.primary_endpoints.apply(lambda e: e.blob), DEPLOYMENT_CONTAINER
    )
    return web.WebApp(
        f"{prefix}-func",
        name=name,
        resource_group_name=resource_group_name,
        location=cfg.location,
        kind="functionapp,linux",
        reserved=True,
        server_farm_id=plan.id,
        https_only=True,
        client_affinity_enabled=False,
        identity=web.ManagedServiceIdentityArgs(
            type=web.ManagedServiceIdentityType.USER_ASSIGNED,
            user_assigned_identities=[identity.id],
        ),
        function_app_config=web.FunctionAppConfigArgs(
            deployment=web.FunctionsDeploymentArgs(
                storage=web.FunctionsDeploymentStorageArgs(
                    type=web.FunctionsDeploymentStorageType.BLOB_CONTAINER,
                    value=deployment_url,
                    authentication=web.FunctionsDeploymentStorageAuthenticationArgs(
                        type=web.AuthenticationType.USER_ASSIGNED_IDENTITY,
                        user_assigned_identity_resource_id=identity.id,
                    ),
                )
            ),
            runtime=web.FunctionsRuntimeArgs(name=web.RuntimeName.PYTHON, version=PYTHON_VERSION),
            scale_and_concurrency=web.FunctionsScaleAndConcurrencyArgs(
                instance_memory_mb=cfg.scale.instance_memory_mb,
                maximum_instance_count=cfg.scale.maximum_instance_count,
                # Flex runs one HTTP request per instance for Python unless told otherwise.
                triggers=web.FunctionsScaleAndConcurrencyTriggersArgs(
                    http=web.FunctionsScaleAndConcurrencyTriggersHttpArgs(
                        per_instance_concurrency=cfg.scale.http_per_instance_concurrency
                    )
                ),
            ),
        ),
        site_config=flex_site_config(settings, cfg.network.spa_origins),
        tags=dict(tags),
        # The host reads its storage and the package with the identity from its first start.
        opts=pulumi.ResourceOptions(depends_on=[host.container, *host.roles, *depends_on]),
    )


def create_easy_auth(
    prefix: str,
    cfg: AuthConfig,
    *,
    resource_group_name: pulumi.Input[str],
    app: web.WebApp,
) -> web.WebAppAuthSettingsV2:
    """App Service Authentication (Easy Auth v2): every request needs a valid Entra ID token for
    this app registration, except the health probe; no redirect to a login page (it is an API)."""
    return web.WebAppAuthSettingsV2(
        f"{prefix}-auth",
        name=app.name,
        resource_group_name=resource_group_name,
        platform=web.AuthPlatformArgs(enabled=True, runtime_version="~1"),
        global_validation=web.GlobalValidationArgs(
            require_authentication=True,
            unauthenticated_client_action=web.UnauthenticatedClientActionV2.RETURN401,
            excluded_paths=[HEALTH_PATH],
        ),
        identity_providers=web.IdentityProvidersArgs(
            azure_active_directory=web.AzureActiveDirectoryArgs(
                enabled=True,
                registration=web.AzureActiveDirectoryRegistrationArgs(
                    client_id=cfg.client_id, open_id_issuer=cfg.issuer
                ),
                validation=web.AzureActiveDirectoryValidationArgs(
                    allowed_audiences=list(cfg.allowed_audiences)
                ),
            )
        ),
        # Off: its file-system store lives on the content share Flex Consumption does not have,
        # and its blob store needs a SAS URL in an app setting (a credential). Callers send
        # bearer tokens, which the app verifies itself.
        login=web.LoginArgs(token_store=web.TokenStoreArgs(enabled=False)),
        http_settings=web.HttpSettingsArgs(require_https=True),
    )


def create_publishing_off(
    prefix: str, *, resource_group_name: pulumi.Input[str], app: web.WebApp
) -> tuple[web.WebAppFtpAllowed, web.WebAppScmAllowed]:
    """No FTP or SCM basic-auth publishing credentials: deploy with an Entra ID sign-in."""
    ftp = web.WebAppFtpAllowed(
        f"{prefix}-ftp-basic-auth-off",
        name=app.name,
        resource_group_name=resource_group_name,
        allow=False,
    )
    scm = web.WebAppScmAllowed(
        f"{prefix}-scm-basic-auth-off",
        name=app.name,
        resource_group_name=resource_group_name,
        allow=False,
    )
    return ftp, scm
