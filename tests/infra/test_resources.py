"""Every resource the issue asks for exists, with the stated properties (Pulumi mocks, offline)."""

from __future__ import annotations

import json
import re
from typing import Any

from infra.app import DEPLOYMENT_CONTAINER, FLEX_REJECTED_SITE_CONFIG, HEALTH_PATH
from infra.data import COSMOS_DATA_CONTRIBUTOR_ROLE
from infra.identity import (
    ROLE_COGNITIVE_SERVICES_OPENAI_USER,
    ROLE_MONITORING_METRICS_PUBLISHER,
    ROLE_STORAGE_BLOB_DATA_OWNER,
    ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR,
    ROLE_WEB_PUBSUB_SERVICE_OWNER,
)
from shared.archive import RUN_LOG_PREFIX
from shared.config import DEFAULT_DATABASE
from shared.storage.containers import (
    PARTITION_KEY_PATH,
    container_specs,
    groups_spec,
    shares_spec,
)
from tests.infra.support import (
    CLIENT_ID,
    FUNCTION_TIMEOUT_S,
    SUBSCRIPTION,
    TENANT,
    Deployment,
    make_config,
    run_program,
)

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _role_definition(role_id: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"
    )


def test_resource_group_and_user_assigned_identity(deployment: Deployment) -> None:
    group = deployment.one("resources:ResourceGroup")
    assert group.inputs["resourceGroupName"] == "rg-parley-test"
    assert group.inputs["location"] == "westeurope"
    identity = deployment.one("managedidentity:UserAssignedIdentity")
    assert identity.inputs["resourceGroupName"] == "rg-parley-test"


def test_cosmos_account_is_serverless_keyless_session_tls12_with_pitr(
    deployment: Deployment,
) -> None:
    account = deployment.one("cosmosdb:DatabaseAccount").inputs
    assert account["kind"] == "GlobalDocumentDB"
    assert {"name": "EnableServerless"} in account["capabilities"]
    # Without it Azure refuses a container with a full-text policy or index.
    assert {"name": "EnableNoSQLFullTextSearch"} in account["capabilities"]
    assert account["disableLocalAuth"] is True
    assert account["disableKeyBasedMetadataWriteAccess"] is True
    assert account["consistencyPolicy"]["defaultConsistencyLevel"] == "Session"
    assert account["minimalTlsVersion"] == "Tls12"
    assert account["backupPolicy"]["type"] == "Continuous"
    assert account["backupPolicy"]["continuousModeProperties"]["tier"] == "Continuous7Days"
    assert account["locations"] == [{"locationName": "westeurope", "failoverPriority": 0}]


def test_database_and_containers_equal_the_shared_definitions(deployment: Deployment) -> None:
    database = deployment.one("cosmosdb:SqlResourceSqlDatabase").inputs
    assert database["databaseName"] == DEFAULT_DATABASE
    assert database["resource"] == {"id": DEFAULT_DATABASE}

    containers = {
        c.inputs["containerName"]: c.inputs
        for c in deployment.of_type("cosmosdb:SqlResourceSqlContainer")
    }
    specs = container_specs()
    shares = shares_spec()
    groups = groups_spec()
    assert set(containers) == {
        "Conversations",
        "ConversationsArchive",
        "Shares",
        "GroupChatHistory",
    }
    assert set(containers) == {s.name for s in (*specs, shares, groups)}
    for spec in (*specs, shares, groups):
        resource = containers[spec.name]["resource"]
        assert containers[spec.name]["databaseName"] == DEFAULT_DATABASE
        assert resource["id"] == spec.name
        assert resource["partitionKey"]["paths"] == [spec.partition_key_path]
        assert resource["partitionKey"]["kind"] == "Hash"
        # Field for field, exactly the policy the code was written against.
        assert resource["indexingPolicy"] == spec.indexing_policy
        if spec.full_text_policy is not None:
            assert resource["fullTextPolicy"] == spec.full_text_policy
    for spec in specs:
        assert spec.partition_key_path == PARTITION_KEY_PATH == "/EmailID"
        assert "defaultTtl" not in containers[spec.name]["resource"]  # conversations never expire
    # Shares: one partition per share, time-to-live on with no default (items carry their own).
    assert containers["Shares"]["resource"]["partitionKey"]["paths"] == ["/shareId"]
    assert containers["Shares"]["resource"]["defaultTtl"] == -1
    # Groups: one partition per group (its item, messages and request records), nothing expires.
    assert containers["GroupChatHistory"]["resource"]["partitionKey"]["paths"] == ["/groupId"]
    assert "defaultTtl" not in containers["GroupChatHistory"]["resource"]


def test_message_text_and_titles_are_in_the_full_text_index(deployment: Deployment) -> None:
    """What the search's queries match with the full-text functions (shared/search.py): each
    path in the policy (Azure refuses an index path the policy lacks) and in the index."""
    searched = {spec.name for spec in container_specs()}
    for container in deployment.of_type("cosmosdb:SqlResourceSqlContainer"):
        resource = container.inputs["resource"]
        if container.inputs["containerName"] not in searched:
            # Shares are read by id, groups by group: neither is in the personal search.
            assert "fullTextPolicy" not in resource
            continue
        indexed = [entry["path"] for entry in resource["indexingPolicy"]["fullTextIndexes"]]
        declared = [entry["path"] for entry in resource["fullTextPolicy"]["fullTextPaths"]]
        # the text, and its accent-folded copy where it has accents (shared/search.py)
        assert indexed == declared == ["/content", "/title", "/contentFolded", "/titleFolded"]
        assert resource["fullTextPolicy"]["defaultLanguage"] == "en-US"


def test_cosmos_data_contributor_is_granted_on_the_database(deployment: Deployment) -> None:
    account = deployment.one("cosmosdb:DatabaseAccount")
    principal = deployment.one("managedidentity:UserAssignedIdentity").outputs["principalId"]
    grant = deployment.one("cosmosdb:SqlResourceSqlRoleAssignment").inputs
    assert grant["roleDefinitionId"] == (
        f"{account.id}/sqlRoleDefinitions/{COSMOS_DATA_CONTRIBUTOR_ROLE}"
    )
    assert COSMOS_DATA_CONTRIBUTOR_ROLE == "00000000-0000-0000-0000-000000000002"
    assert grant["principalId"] == principal
    assert grant["scope"] == f"{account.id}/dbs/{DEFAULT_DATABASE}"
    assert GUID.match(grant["roleAssignmentId"])


def test_cosmos_role_assignment_waits_for_the_database_and_every_container(
    deployment: Deployment,
) -> None:
    # Cosmos DB answers 412 ("another operation in progress requires an exclusive lock") to a
    # role assignment created while a container is still being created.
    grant = deployment.one("cosmosdb:SqlResourceSqlRoleAssignment").logical_name
    database = deployment.one("cosmosdb:SqlResourceSqlDatabase").logical_name
    containers = [c.logical_name for c in deployment.of_type("cosmosdb:SqlResourceSqlContainer")]
    assert len(containers) == 4  # active, archive, shares, groups
    assert {database, *containers} <= set(deployment.depends_on[grant])


def test_host_storage_is_keyless_private_and_tls12(deployment: Deployment) -> None:
    account = deployment.one("storage:StorageAccount").inputs
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["enableHttpsTrafficOnly"] is True
    assert account["kind"] == "StorageV2"
    container = deployment.one("storage:BlobContainer").inputs
    assert container["containerName"] == DEPLOYMENT_CONTAINER
    assert container["publicAccess"] == "None"
    assert container["accountName"] == account["accountName"]


def test_role_assignments_are_exactly_the_expected_grants(deployment: Deployment) -> None:
    ids = {
        token: deployment.one(token).id
        for token in (
            "storage:StorageAccount",
            "applicationinsights:Component",
            "cognitiveservices:Account",
            "webpubsub:WebPubSub",
        )
    }
    grants = {
        (g.inputs["roleDefinitionId"], g.inputs["scope"])
        for g in deployment.of_type("authorization:RoleAssignment")
    }
    assert grants == {
        (_role_definition(ROLE_STORAGE_BLOB_DATA_OWNER), ids["storage:StorageAccount"]),
        (_role_definition(ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR), ids["storage:StorageAccount"]),
        (_role_definition(ROLE_MONITORING_METRICS_PUBLISHER), ids["applicationinsights:Component"]),
        (_role_definition(ROLE_COGNITIVE_SERVICES_OPENAI_USER), ids["cognitiveservices:Account"]),
        (_role_definition(ROLE_WEB_PUBSUB_SERVICE_OWNER), ids["webpubsub:WebPubSub"]),
    }
    assert ROLE_COGNITIVE_SERVICES_OPENAI_USER == "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
    # "Web PubSub Service Owner" (the only built-in data-plane role that can send; the other,
    # "Web PubSub Service Reader", is read-only).
    assert ROLE_WEB_PUBSUB_SERVICE_OWNER == "12cf5a90-567b-43ae-8102-96cf46c7d9b4"


def test_every_role_assignment_names_the_identity_and_a_narrow_scope(
    deployment: Deployment,
) -> None:
    principal = deployment.one("managedidentity:UserAssignedIdentity").outputs["principalId"]
    arm = deployment.of_type("authorization:RoleAssignment")
    cosmos = deployment.of_type("cosmosdb:SqlResourceSqlRoleAssignment")
    assert len(arm) == 5 and len(cosmos) == 1
    # A resource inside the resource group: never the subscription, never the whole group.
    narrow = re.compile(rf"^/subscriptions/{SUBSCRIPTION}/resourceGroups/[^/]+/providers/.+")
    for grant in [*arm, *cosmos]:
        assert grant.inputs["principalId"] == principal, grant.logical_name
        assert narrow.match(grant.inputs["scope"]), grant.inputs["scope"]
    for grant in arm:
        assert grant.inputs["principalType"] == "ServicePrincipal"
        assert GUID.match(grant.inputs["roleAssignmentName"])
    names = [g.inputs["roleAssignmentName"] for g in arm]
    assert len(set(names)) == len(names)


def test_role_assignment_names_are_deterministic(deployment: Deployment) -> None:
    again = run_program(make_config())
    first = sorted(
        g.inputs["roleAssignmentName"] for g in deployment.of_type("authorization:RoleAssignment")
    )
    second = sorted(
        g.inputs["roleAssignmentName"] for g in again.of_type("authorization:RoleAssignment")
    )
    assert first == second
    assert (
        deployment.one("cosmosdb:SqlResourceSqlRoleAssignment").inputs["roleAssignmentId"]
        == again.one("cosmosdb:SqlResourceSqlRoleAssignment").inputs["roleAssignmentId"]
    )


def test_flex_consumption_plan(deployment: Deployment) -> None:
    plan = deployment.one("web:AppServicePlan").inputs
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["reserved"] is True
    assert plan["kind"] == "functionapp"


def test_function_app_runs_python_311_on_flex_with_the_identity(deployment: Deployment) -> None:
    app = deployment.one("web:WebApp").inputs
    identity = deployment.one("managedidentity:UserAssignedIdentity")
    storage = deployment.one("storage:StorageAccount")
    assert app["kind"] == "functionapp,linux"
    assert app["serverFarmId"] == deployment.one("web:AppServicePlan").id
    assert app["httpsOnly"] is True
    assert app["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [identity.id]}

    config = app["functionAppConfig"]
    package = config["deployment"]["storage"]
    assert package["type"] == "blobContainer"
    assert package["value"] == (
        f"https://{storage.outputs['name']}.blob.core.windows.net/{DEPLOYMENT_CONTAINER}"
    )
    assert package["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": identity.id,
    }
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    # From config (4096 / 60 / 24 in the test stack, not the defaults).
    assert config["scaleAndConcurrency"] == {
        "instanceMemoryMB": 4096,
        "maximumInstanceCount": 60,
        "triggers": {"http": {"perInstanceConcurrency": 24}},
    }


def test_http_concurrency_defaults_to_many_requests_per_instance() -> None:
    # Flex gives Python apps 1 concurrent HTTP request per instance unless this is set: every
    # streaming chat would hold a whole instance.
    app = run_program(make_config({"httpPerInstanceConcurrency": None})).one("web:WebApp")
    http = app.inputs["functionAppConfig"]["scaleAndConcurrency"]["triggers"]["http"]
    assert http == {"perInstanceConcurrency": 16}


def test_site_config_sends_nothing_flex_consumption_rejects(deployment: Deployment) -> None:
    # ARM error 51021 names these for Flex sites; SiteConfigArgs would add netFrameworkVersion.
    assert {
        "ftpsState",
        "netFrameworkVersion",
        "use32BitWorkerProcess",
        "functionsRuntimeScaleMonitoringEnabled",
        "linuxFxVersion",
    } <= FLEX_REJECTED_SITE_CONFIG
    site = deployment.one("web:WebApp").inputs["siteConfig"]
    assert not set(site) & FLEX_REJECTED_SITE_CONFIG, sorted(set(site) & FLEX_REJECTED_SITE_CONFIG)
    # Exactly what the program means to send, nothing filled in on its behalf.
    assert set(site) == {
        "appSettings",
        "cors",
        "minTlsVersion",
        "scmMinTlsVersion",
        "http20Enabled",
    }


def test_https_tls12_and_no_basic_auth_publishing(deployment: Deployment) -> None:
    site = deployment.one("web:WebApp").inputs["siteConfig"]
    assert site["minTlsVersion"] == "1.2"
    assert site["scmMinTlsVersion"] == "1.2"
    assert "connectionStrings" not in site
    app_name = deployment.one("web:WebApp").outputs["name"]
    for token in ("web:WebAppFtpAllowed", "web:WebAppScmAllowed"):
        policy = deployment.one(token).inputs
        assert policy["allow"] is False
        assert policy["name"] == app_name


def test_cors_lists_the_spa_origins_with_credentials_and_never_a_wildcard(
    deployment: Deployment,
) -> None:
    cors = deployment.one("web:WebApp").inputs["siteConfig"]["cors"]
    assert cors["allowedOrigins"] == ["https://chat.example.com", "http://localhost:5173"]
    assert cors["supportCredentials"] is True
    assert not any("*" in origin for origin in cors["allowedOrigins"])
    assert "*" not in deployment.app_settings()["CORS_ALLOWED_ORIGINS"]


def test_easy_auth_requires_entra_id_and_answers_401_except_health(
    deployment: Deployment,
) -> None:
    auth = deployment.one("web:WebAppAuthSettingsV2").inputs
    assert auth["name"] == deployment.one("web:WebApp").outputs["name"]
    assert auth["platform"]["enabled"] is True
    validation = auth["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert validation["excludedPaths"] == [HEALTH_PATH] == ["/api/health"]
    assert "redirectToProvider" not in validation
    aad = auth["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"] == {
        "clientId": CLIENT_ID,
        "openIdIssuer": f"https://login.microsoftonline.com/{TENANT}/v2.0",
    }
    assert "clientSecretSettingName" not in aad["registration"]
    assert aad["validation"]["allowedAudiences"] == [f"api://{CLIENT_ID}", CLIENT_ID]
    assert auth["httpSettings"]["requireHttps"] is True


def test_azure_openai_account_deployment_and_access(deployment: Deployment) -> None:
    account = deployment.one("cognitiveservices:Account")
    assert account.inputs["kind"] == "OpenAI"
    props = account.inputs["properties"]
    assert props["disableLocalAuth"] is True
    assert props["customSubDomainName"] == account.inputs["accountName"]
    model = deployment.one("cognitiveservices:Deployment").inputs
    assert model["accountName"] == account.inputs["accountName"]
    assert model["deploymentName"] == "gpt-4.1-mini"
    assert model["properties"]["model"] == {
        "format": "OpenAI",
        "name": "gpt-4.1-mini",
        "version": "2025-04-14",
    }
    assert model["sku"] == {"name": "GlobalStandard", "capacity": 25}


def test_log_analytics_and_application_insights_accept_entra_id_only(
    deployment: Deployment,
) -> None:
    workspace = deployment.one("operationalinsights:Workspace")
    assert workspace.inputs["features"]["disableLocalAuth"] is True
    component = deployment.one("applicationinsights:Component").inputs
    assert component["disableLocalAuth"] is True
    assert component["workspaceResourceId"] == workspace.id
    assert component["ingestionMode"] == "LogAnalytics"


def test_alerts_email_the_configured_address(deployment: Deployment) -> None:
    group = deployment.one("monitor:ActionGroup").inputs
    assert group["enabled"] is True
    assert [r["emailAddress"] for r in group["emailReceivers"]] == ["ops@example.com"]
    assert len(group["groupShortName"]) <= 12
    rules = deployment.of_type("monitor:ScheduledQueryRule")
    assert len(rules) == 2
    component = deployment.one("applicationinsights:Component").id
    action_group = deployment.one("monitor:ActionGroup").id
    for rule in rules:
        assert rule.inputs["scopes"] == [component]
        assert rule.inputs["actions"]["actionGroups"] == [action_group]
        assert rule.inputs["enabled"] is True
        assert rule.inputs["kind"] == "LogAlert"


def _rule(deployment: Deployment, suffix: str) -> dict[str, Any]:
    (rule,) = [
        r.inputs
        for r in deployment.of_type("monitor:ScheduledQueryRule")
        if r.inputs["ruleName"].endswith(suffix)
    ]
    return dict(rule)


def test_alert_on_archival_failures(deployment: Deployment) -> None:
    rule = _rule(deployment, "archive-failures")
    (condition,) = rule["criteria"]["allOf"]
    query = condition["query"]
    assert query.startswith("traces\n")
    assert f'message startswith "{RUN_LOG_PREFIX}"' in query
    assert f'parse_json(substring(message, strlen("{RUN_LOG_PREFIX}")))' in query
    assert "toint(run.failed) > 0" in query
    assert condition["metricMeasureColumn"] == "failedRuns"
    assert "summarize failedRuns = count()" in query
    assert condition["timeAggregation"] == "Total"
    assert condition["operator"] == "GreaterThan"
    assert condition["threshold"] == 0
    assert rule["windowSize"] == rule["evaluationFrequency"] == "PT1H"


def test_alert_when_no_archival_run_completed_for_26_hours(deployment: Deployment) -> None:
    rule = _rule(deployment, "archive-stale")
    (condition,) = rule["criteria"]["allOf"]
    query = condition["query"]
    assert query.startswith("traces\n")
    assert "where timestamp > ago(26h)" in query
    assert f'message startswith "{RUN_LOG_PREFIX}"' in query
    assert "summarize completedRuns = count()" in query
    assert condition["metricMeasureColumn"] == "completedRuns"
    assert condition["timeAggregation"] == "Total"
    assert condition["operator"] == "LessThan"
    assert condition["threshold"] == 1
    # The query may only read inside the window: it must cover the 26 hours.
    assert rule["windowSize"] == "P2D"
    assert rule["autoMitigate"] is True


def test_the_alerts_take_the_prefix_from_the_archive_code() -> None:
    # One home for the prefix: the archive logs it, the alerts import it (no copy to drift).
    import infra.monitoring as monitoring

    names = vars(monitoring)
    assert names["RUN_LOG_PREFIX"] is RUN_LOG_PREFIX
    copies = [k for k, v in names.items() if v == RUN_LOG_PREFIX and k != "RUN_LOG_PREFIX"]
    assert not copies


def test_the_queries_read_the_summary_line_the_app_logs() -> None:
    # The trace message the archival timer logs (logger parley.archive), as documented.
    summary = {"archived": 3, "skipped": 0, "failed": 2, "orphansRemoved": 0, "durationMs": 812}
    message = f"archive_run {json.dumps(summary)}"
    assert message.startswith(RUN_LOG_PREFIX)
    # What substring(message, strlen(prefix)) yields is the JSON object, whole.
    assert json.loads(message[len(RUN_LOG_PREFIX) :])["failed"] == 2


def test_outputs_name_the_api_cosmos_and_identity(deployment: Deployment) -> None:
    outputs = deployment.outputs
    app = deployment.one("web:WebApp").outputs
    identity = deployment.one("managedidentity:UserAssignedIdentity").outputs
    assert outputs["apiBaseUrl"] == f"https://{app['defaultHostName']}/api"
    assert (
        outputs["cosmosEndpoint"]
        == (deployment.one("cosmosdb:DatabaseAccount").outputs["documentEndpoint"])
    )
    assert outputs["identityClientId"] == identity["clientId"]
    assert outputs["identityPrincipalId"] == identity["principalId"]
    assert outputs["functionAppName"] == app["name"]


def test_all_resources_share_the_configured_location(deployment: Deployment) -> None:
    for resource in deployment.resources:
        location = resource.inputs.get("location")
        if location is not None and resource.type != "azure-native:monitor:ActionGroup":
            assert location == "westeurope", resource.logical_name


def test_archive_time_budget_is_below_the_function_timeout(deployment: Deployment) -> None:
    assert float(deployment.app_settings()["ARCHIVE_TIME_BUDGET_S"]) < FUNCTION_TIMEOUT_S


def test_web_pubsub_is_keyless_with_one_hub_that_denies_anonymous_clients(
    deployment: Deployment,
) -> None:
    service = deployment.one("webpubsub:WebPubSub")
    assert service.inputs["disableLocalAuth"] is True
    assert service.inputs["disableAadAuth"] is False
    assert service.inputs["sku"]["name"] == "Standard_S1"
    assert service.inputs["location"] == "westeurope"
    hub = deployment.one("webpubsub:WebPubSubHub").inputs
    assert hub["resourceName"] == service.inputs["resourceName"]
    assert hub["hubName"] == "parley"
    assert hub["properties"]["anonymousConnectPolicy"] == "deny"
    # No upstream: clients only receive, and the app decides who is in which group.
    assert not hub["properties"].get("eventHandlers")


def test_the_app_reaches_web_pubsub_through_its_identity_only(deployment: Deployment) -> None:
    service = deployment.one("webpubsub:WebPubSub")
    settings = deployment.app_settings()
    assert settings["WEBPUBSUB_ENDPOINT"] == f"https://{service.outputs['hostName']}"
    assert settings["WEBPUBSUB_HUB"] == deployment.one("webpubsub:WebPubSubHub").inputs["hubName"]
    assert "WEBPUBSUB_KEY" not in settings
    # The app starts only once it may publish (the role) to the hub it names.
    app = deployment.one("web:WebApp").logical_name
    owner = [
        g.logical_name
        for g in deployment.of_type("authorization:RoleAssignment")
        if g.inputs["scope"] == service.id
    ]
    assert len(owner) == 1
    hub = deployment.one("webpubsub:WebPubSubHub").logical_name
    assert {owner[0], hub} <= set(deployment.depends_on[app])
