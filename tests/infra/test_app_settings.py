"""App settings: they cover what the code reads, the code accepts them, and they hold no secret."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pulumi
import pytest

from infra.app import NOT_IN_AZURE, PLATFORM_SETTINGS
from shared.auth import configuration_problem
from shared.config import SETTINGS, load_settings
from tests.infra.support import (
    RANDOM_PASSWORD,
    TENANT,
    Deployment,
    make_config,
    pulumi_test,
    run_program,
)

# Fragments that only appear in credentials: storage/Service Bus/Event Hubs keys, SAS tokens,
# database passwords, private keys, and the code's own key settings.
CREDENTIAL_MARKERS = (
    "AccountKey=",
    "SharedAccessKey",
    "SharedAccessSignature",
    "sig=",
    "Password=",
    "pwd=",
    "ClientSecret",
    "client_secret",
    "-----BEGIN",
    "COSMOS_KEY",
    "OPENAI_API_KEY",
    "WEBPUBSUB_KEY",
    "AccessKey=",
    "api-key",
)
# Fragments of connection strings of any kind (a credential or the way to one).
CONNECTION_STRING_MARKERS = (
    "DefaultEndpointsProtocol=",
    "AccountName=",
    "AccountEndpoint=",
    "Endpoint=sb://",
    "InstrumentationKey=",
    "IngestionEndpoint=",
)


def _uncovered(code_settings: Sequence[str], app_setting_names: Iterable[str]) -> list[str]:
    """Settings the code reads that the deployment neither sets nor lists in NOT_IN_AZURE."""
    return sorted(set(code_settings) - set(NOT_IN_AZURE) - set(app_setting_names))


def test_every_setting_the_code_reads_is_set_or_explicitly_not_in_azure(
    deployment: Deployment,
) -> None:
    # A new setting in shared.config.SETTINGS fails here until infra/app.py sets it or lists it
    # in NOT_IN_AZURE with a reason.
    missing = _uncovered(SETTINGS, deployment.app_settings())
    assert not missing, f"settings the code reads but the deployment ignores: {missing}"


def test_a_new_setting_in_the_code_would_be_caught(deployment: Deployment) -> None:
    grown = (*SETTINGS, "SOME_NEW_SETTING")
    assert _uncovered(grown, deployment.app_settings()) == ["SOME_NEW_SETTING"]


def test_the_not_in_azure_list_is_current_and_never_set(deployment: Deployment) -> None:
    stale = sorted(set(NOT_IN_AZURE) - set(SETTINGS))
    assert not stale, f"NOT_IN_AZURE names settings the code no longer reads: {stale}"
    assert all(reason.strip() for reason in NOT_IN_AZURE.values())
    assert not set(NOT_IN_AZURE) & set(deployment.app_settings())
    assert {"COSMOS_KEY", "OPENAI_API_KEY", "SQLITE_PATH", "PORT"} <= set(NOT_IN_AZURE)


def test_no_unknown_app_settings(deployment: Deployment) -> None:
    unknown = sorted(set(deployment.app_settings()) - set(SETTINGS) - set(PLATFORM_SETTINGS))
    assert not unknown, f"app settings neither the code nor the platform reads: {unknown}"
    assert set(PLATFORM_SETTINGS) <= set(deployment.app_settings())


def test_retention_keeps_everything_unless_configured() -> None:
    without = run_program(make_config({"retentionDays": None}))
    assert without.app_settings()["RETENTION_DAYS"] == "0"
    optional = set(SETTINGS) - set(NOT_IN_AZURE) - set(without.app_settings())
    assert optional == set()


def test_settings_point_at_the_deployed_resources(deployment: Deployment) -> None:
    settings = deployment.app_settings()
    identity = deployment.one("managedidentity:UserAssignedIdentity").outputs
    storage = deployment.one("storage:StorageAccount").outputs
    cosmos = deployment.one("cosmosdb:DatabaseAccount").outputs
    openai = deployment.one("cognitiveservices:Account").outputs
    component = deployment.one("applicationinsights:Component").outputs
    assert settings["AzureWebJobsStorage__accountName"] == storage["name"]
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == identity["clientId"]
    assert settings["AZURE_CLIENT_ID"] == identity["clientId"]
    assert settings["STORAGE_BACKEND"] == "cosmos"
    assert settings["COSMOS_ENDPOINT"] == cosmos["documentEndpoint"]
    assert settings["COSMOS_DATABASE"] == "chat"
    assert settings["COSMOS_CONTAINER"] == "Conversations"
    assert settings["COSMOS_ARCHIVE_CONTAINER"] == "ConversationsArchive"
    assert settings["COSMOS_SHARES_CONTAINER"] == "Shares"
    assert settings["LLM_PROVIDER"] == "azure-openai"
    assert settings["AZURE_OPENAI_ENDPOINT"] == openai["properties"]["endpoint"]
    assert settings["AZURE_OPENAI_DEPLOYMENT"] == "gpt-4.1-mini"
    # In step with the deployed model: the configured version, not the code's default.
    assert settings["AZURE_OPENAI_API_VERSION"] == "2025-04-01-preview"
    assert settings["AUTH_MODE"] == "easyauth"
    assert settings["CORS_ALLOWED_ORIGINS"] == "https://chat.example.com,http://localhost:5173"
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == component["connectionString"]
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        f"ClientId={identity['clientId']};Authorization=AAD"
    )
    assert settings["PYTHON_ENABLE_INIT_INDEXING"] == "1"
    assert settings["MAX_MESSAGE_CHARS"] == "12000"  # from config
    assert settings["RETENTION_DAYS"] == "365"  # from config
    for name in ("AzureWebJobsStorage", "FUNCTIONS_WORKER_RUNTIME", "WEBSITE_RUN_FROM_PACKAGE"):
        assert name not in settings  # a connection string; not allowed on Flex; ditto


def test_the_code_accepts_the_deployed_settings(deployment: Deployment) -> None:
    settings = load_settings(deployment.app_settings())
    assert settings.resolved_storage_backend == "cosmos"
    assert settings.resolved_llm_provider == "azure-openai"
    assert settings.auth_mode == "easyauth"
    assert settings.auth_issuer == deployment.cfg.auth.issuer
    assert settings.auth_audiences == deployment.cfg.auth.allowed_audiences
    assert settings.cosmos_key is None and settings.openai_api_key is None
    assert settings.cors_allowed_origins == deployment.cfg.network.spa_origins


def test_the_app_verifies_tokens_against_what_easy_auth_accepts(deployment: Deployment) -> None:
    # The second lock behind Easy Auth (docs/security.md): the same issuer and audiences, and
    # the issuer's key set, so a token Easy Auth accepts is one the app accepts too.
    settings = deployment.app_settings()
    aad = deployment.one("web:WebAppAuthSettingsV2").inputs["identityProviders"]
    aad = aad["azureActiveDirectory"]
    assert settings["AUTH_MODE"] == "easyauth"
    assert settings["AUTH_ISSUER"] == aad["registration"]["openIdIssuer"]
    assert settings["AUTH_AUDIENCE"].split(",") == aad["validation"]["allowedAudiences"]
    assert settings["AUTH_JWKS_URL"] == (
        f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"
    )
    # What the app makes of them: a verifier, not "every call refused".
    assert configuration_problem(load_settings(settings)) is None
    # The platform's own flag is never set by the stack: only App Service may say it.
    assert "WEBSITE_AUTH_ENABLED" not in settings


def test_the_token_store_stays_off(deployment: Deployment) -> None:
    # On Flex Consumption it would need a blob SAS URL in an app setting; the app takes bearer
    # tokens (Authorization) as proof instead of the store's X-MS-TOKEN-AAD-ID-TOKEN.
    login = deployment.one("web:WebAppAuthSettingsV2").inputs["login"]
    assert login["tokenStore"]["enabled"] is False


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_no_credential_in_any_app_setting_or_output(deployment: Deployment) -> None:
    settings = deployment.app_settings()
    for name, value in settings.items():
        for marker in CREDENTIAL_MARKERS:
            assert marker.lower() not in value.lower(), f"{name} looks like a credential"
            assert marker.lower() not in name.lower(), f"{name} names a credential"
    for name, value in deployment.outputs.items():
        for marker in CREDENTIAL_MARKERS + CONNECTION_STRING_MARKERS:
            assert marker.lower() not in str(value).lower(), f"output {name} holds {marker}"
    assert deployment.cfg.app.log_hash_salt not in _strings(dict(deployment.outputs))
    assert deployment.app_settings()["TOKEN_SIGNING_KEY"] not in _strings(dict(deployment.outputs))


def test_only_connection_string_is_application_insights(deployment: Deployment) -> None:
    # APPLICATIONINSIGHTS_CONNECTION_STRING is an ingestion endpoint plus the instrumentation
    # key, which identifies the component; it is not a credential because the component has
    # local auth disabled (DisableLocalAuth): ingestion demands an Entra ID token of the app's
    # identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING). It is the only connection-string-like
    # setting allowed, and it must carry no key material.
    settings = deployment.app_settings()
    connection_like = sorted(
        name
        for name, value in settings.items()
        if any(marker.lower() in value.lower() for marker in CONNECTION_STRING_MARKERS)
    )
    assert connection_like == ["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    value = settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    assert deployment.one("applicationinsights:Component").inputs["disableLocalAuth"] is True
    for marker in ("AccountKey=", "SharedAccessKey=", "SharedAccessSignature=", "Password="):
        assert marker.lower() not in value.lower()
    assert set(re.findall(r"(\w+)=", value)) <= {
        "InstrumentationKey",
        "IngestionEndpoint",
        "LiveEndpoint",
        "ApplicationId",
    }


def test_the_log_hash_salt_is_a_pulumi_secret(deployment: Deployment) -> None:
    # A pepper for pseudonymising emails in logs (not a credential): encrypted in the state,
    # never exported. The whole siteConfig is then secret in the state, which Pulumi shows as
    # [secret] in diffs.
    web_app = deployment.one("web:WebApp")
    assert "siteConfig" in web_app.secret_inputs
    assert deployment.app_settings()["LOG_HASH_SALT"] == deployment.cfg.app.log_hash_salt


def test_the_token_signing_key_is_generated_by_the_stack(deployment: Deployment) -> None:
    # TOKEN_SIGNING_KEY (docs/security.md, "Tokens the server made"): a random password the stack
    # makes once and keeps, 64 letters and digits, never typed by anyone and never exported.
    (key,) = [r for r in deployment.resources if r.type == RANDOM_PASSWORD]
    assert key.inputs["length"] == 64
    assert key.inputs["special"] is False
    value = deployment.app_settings()["TOKEN_SIGNING_KEY"]
    assert value == key.outputs["result"]
    assert len(value) == 64 and value.isalnum()
    assert "siteConfig" in deployment.one("web:WebApp").secret_inputs
    assert value not in _strings(dict(deployment.outputs))
    # The code takes it as its key (32 to 512 characters), not its development fallback.
    assert load_settings(deployment.app_settings()).resolved_token_signing_key == value


@pytest.mark.parametrize("marker", ["AccountKey=abc", "SharedAccessKey=abc"])
def test_the_scan_finds_key_material(marker: str) -> None:
    # The scan above must be able to fail: a planted key is caught.
    assert any(m.lower() in marker.lower() for m in CREDENTIAL_MARKERS)


@pytest.mark.usefixtures("pulumi_mocks")
@pulumi_test
def test_app_settings_never_include_the_key_settings() -> Any:
    from infra.app import app_settings

    settings = app_settings(
        make_config(),
        client_id="c",
        storage_account_name="s",
        cosmos_endpoint="https://x.documents.azure.com:443/",
        active_container="Conversations",
        archive_container="ConversationsArchive",
        shares_container="Shares",
        groups_container="GroupChatHistory",
        openai_endpoint="https://x.openai.azure.com/",
        webpubsub_endpoint="https://x.webpubsub.azure.com",
        webpubsub_hub="parley",
        appinsights_connection_string="InstrumentationKey=k;IngestionEndpoint=https://i/",
        # A plain value: the setting must be secret whatever the key's source says about it.
        token_signing_key=pulumi.Output.from_input("k" * 64),
    )
    assert "COSMOS_KEY" not in settings and "OPENAI_API_KEY" not in settings
    assert "WEBPUBSUB_KEY" not in settings
    salt = pulumi.Output.from_input(settings["LOG_HASH_SALT"])
    signing_key = pulumi.Output.from_input(settings["TOKEN_SIGNING_KEY"])

    async def salt_is_secret() -> None:
        assert await salt.is_secret() is True
        assert await signing_key.is_secret() is True

    return asyncio.ensure_future(salt_is_secret())
