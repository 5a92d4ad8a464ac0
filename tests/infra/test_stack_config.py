"""``pulumi config`` validation: one test per rule, each naming the key in its error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.data import indexing_policy_args
from infra.stack_config import (
    CONFIG_KEYS,
    DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY,
    FLEX_DEFAULT_FUNCTION_TIMEOUT_S,
    StackConfigError,
    load_config,
    parse_config,
    read_function_timeout_s,
)
from shared.config import Settings
from shared.storage.containers import DEFAULT_DATABASE
from tests.infra.conftest import (
    CLIENT_ID,
    FULL_CONFIG,
    TENANT,
    make_config,
    run_main,
)

MINIMAL = {
    "spaOrigins": "https://chat.example.com",
    "alertEmail": "ops@example.com",
    "authClientId": CLIENT_ID,
    "authTenantId": TENANT,
    "openAiModel": "gpt-4.1-mini",
    "openAiModelVersion": "2025-04-14",
    "openAiApiVersion": "2024-10-21",
    "logHashSalt": "0123456789abcdef0123",
}


def _problems(overrides: dict[str, str | None], timeout: int | None = 1800) -> list[str]:
    values = {**FULL_CONFIG, **overrides}
    with pytest.raises(StackConfigError) as caught:
        parse_config(values, stack="test", function_timeout_s=timeout)
    return caught.value.problems


def _rejects(key: str, value: str | None, fragment: str, timeout: int | None = 1800) -> None:
    problems = _problems({key: value}, timeout)
    assert any(p.startswith(f"parley:{key}:") and fragment in p for p in problems), problems


def test_minimal_config_takes_the_documented_defaults() -> None:
    cfg = parse_config(MINIMAL, stack="dev", function_timeout_s=1800)
    assert cfg.location == "swedencentral"
    assert cfg.resource_group_name == "rg-parley-dev"
    assert cfg.openai_sku == "GlobalStandard" and cfg.openai_capacity == 10
    assert cfg.cosmos_database == DEFAULT_DATABASE
    assert cfg.instance_memory_mb == 2048 and cfg.maximum_instance_count == 40
    assert cfg.http_per_instance_concurrency == DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY == 16
    assert cfg.archive_stale_alert_hours == 26
    assert cfg.auth_issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    # App-setting defaults are the code's own defaults.
    assert cfg.app_values["ARCHIVE_AFTER_DAYS"] == "30"
    assert cfg.app_values["ARCHIVE_SCHEDULE"] == "0 0 3 * * *"
    assert cfg.app_values["RETENTION_DAYS"] == "0"
    assert "logHashSalt" not in repr(cfg) and MINIMAL["logHashSalt"] not in repr(cfg)


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems({"alertEmail": "nope", "openAiCapacity": "0", "location": "West Europe"})
    keys = {p.split(":")[1] for p in problems}
    assert {"alertEmail", "openAiCapacity", "location"} <= keys


def test_location_must_be_a_region_name() -> None:
    _rejects("location", "West Europe", "region")


def test_name_prefix_must_be_short_lower_case() -> None:
    _rejects("namePrefix", "Parley-App", "lower-case")


def test_spa_origins_are_required() -> None:
    _rejects("spaOrigins", None, "required")


def test_spa_origins_reject_the_wildcard() -> None:
    _rejects("spaOrigins", '["*"]', "wildcards are not allowed")


def test_spa_origins_reject_a_wildcard_subdomain() -> None:
    _rejects("spaOrigins", "https://*.example.com", "wildcards are not allowed")


def test_spa_origins_must_be_https() -> None:
    _rejects("spaOrigins", "http://chat.example.com", "must use https")


def test_spa_origins_allow_http_only_for_localhost() -> None:
    for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000"):
        cfg = make_config({"spaOrigins": origin})
        assert cfg.spa_origins == (origin,)


def test_spa_origins_have_no_path() -> None:
    _rejects("spaOrigins", "https://chat.example.com/", "no path")


def test_spa_origins_are_lower_case() -> None:
    _rejects("spaOrigins", "https://Chat.example.com", "lower case")


def test_spa_origins_must_be_a_list_of_strings() -> None:
    _rejects("spaOrigins", '["https://a.example.com", 3]', "list of strings")


def test_spa_origins_accept_a_comma_separated_list() -> None:
    cfg = make_config({"spaOrigins": "https://a.example.com, https://b.example.com"})
    assert cfg.spa_origins == ("https://a.example.com", "https://b.example.com")


def test_alert_email_is_required() -> None:
    _rejects("alertEmail", None, "required")


def test_alert_email_must_be_an_address() -> None:
    _rejects("alertEmail", "ops-at-example.com", "not an email address")


def test_auth_client_id_is_required() -> None:
    _rejects("authClientId", None, "required")


def test_auth_client_id_must_be_a_guid() -> None:
    _rejects("authClientId", "my-app", "not a GUID")


def test_auth_tenant_id_is_required_without_an_issuer() -> None:
    _rejects("authTenantId", None, "required")


def test_auth_tenant_id_must_be_a_guid() -> None:
    _rejects("authTenantId", "contoso.onmicrosoft.com", "not a GUID")


def test_auth_issuer_must_be_https() -> None:
    _rejects("authIssuer", "http://login.example.com/", "https URL")


def test_auth_issuer_replaces_the_tenant() -> None:
    issuer = "https://login.microsoftonline.com/organizations/v2.0"
    cfg = make_config({"authTenantId": None, "authIssuer": issuer})
    assert cfg.auth_issuer == issuer


def test_the_jwks_url_follows_an_entra_v2_issuer() -> None:
    # The app verifies tokens itself as well as Easy Auth: it needs the issuer's key set.
    assert make_config().auth_jwks_url == (
        f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"
    )
    external_id = f"https://{TENANT}.ciamlogin.com/{TENANT}/v2.0"
    cfg = make_config({"authTenantId": None, "authIssuer": external_id})
    assert cfg.auth_jwks_url == f"https://{TENANT}.ciamlogin.com/{TENANT}/discovery/v2.0/keys"


def test_the_jwks_url_can_be_set_and_must_be_https() -> None:
    url = "https://keys.example.com/jwks.json"
    assert make_config({"authJwksUrl": url}).auth_jwks_url == url
    _rejects("authJwksUrl", "http://keys.example.com/jwks.json", "https URL")


def test_another_issuer_needs_its_jwks_url() -> None:
    problems = _problems({"authTenantId": None, "authIssuer": "https://idp.example.com/"})
    assert any(p.startswith("parley:authJwksUrl: required") for p in problems), problems


def test_an_audience_cannot_contain_a_comma() -> None:
    _rejects("authAllowedAudiences", '["api://a,b"]', "must not contain ','")


def test_openai_capacity_must_be_positive() -> None:
    _rejects("openAiCapacity", "0", "out of range")


def test_openai_capacity_must_be_an_integer() -> None:
    _rejects("openAiCapacity", "ten", "not an integer")


def test_openai_sku_must_be_known() -> None:
    _rejects("openAiSku", "Premium", "not one of")


def test_openai_deployment_name_is_checked() -> None:
    _rejects("openAiDeploymentName", "bad name!", "not valid")


def test_openai_api_version_is_a_date() -> None:
    _rejects("openAiApiVersion", "latest", "not an API version")


@pytest.mark.parametrize("key", ["openAiModel", "openAiModelVersion", "openAiApiVersion"])
def test_the_model_and_its_api_version_have_no_default(key: str) -> None:
    # A default model is refused by Azure once its version closes to new deployments (as
    # gpt-4o-mini 2024-07-18 did): the operator picks model, version and API version together.
    _rejects(key, None, "required")


def test_a_missing_model_names_the_keys_and_how_to_list_models() -> None:
    problems = _problems({"openAiModel": None, "openAiModelVersion": None})
    assert any(p.startswith("parley:openAiModel:") for p in problems), problems
    assert any(p.startswith("parley:openAiModelVersion:") for p in problems), problems
    assert all("az cognitiveservices model list --location" in p for p in problems), problems
    # The deployment name defaults to the model; its absence is not reported twice.
    assert not any(p.startswith("parley:openAiDeploymentName:") for p in problems), problems


def test_openai_model_name_and_version_are_checked() -> None:
    _rejects("openAiModel", "gpt 4", "not a model name")
    _rejects("openAiModelVersion", "2025/04/14", "not a model version")


def test_the_api_version_is_not_older_than_the_code_is_written_against() -> None:
    floor = Settings.model_fields["azure_openai_api_version"].default
    assert floor == "2024-10-21"
    _rejects("openAiApiVersion", "2024-06-01", "older than 2024-10-21")
    _rejects("openAiApiVersion", "2024-10-01-preview", "older than 2024-10-21")
    for accepted in (floor, "2024-12-01-preview", "2025-04-01-preview"):
        assert make_config({"openAiApiVersion": accepted}).openai_api_version == accepted


def test_http_per_instance_concurrency_is_bounded() -> None:
    _rejects("httpPerInstanceConcurrency", "0", "out of range")
    _rejects("httpPerInstanceConcurrency", "1001", "out of range")
    _rejects("httpPerInstanceConcurrency", "many", "not an integer")
    assert make_config({"httpPerInstanceConcurrency": "1"}).http_per_instance_concurrency == 1


def test_instance_memory_is_a_flex_size() -> None:
    _rejects("instanceMemoryMB", "1024", "not a Flex Consumption size")


def test_maximum_instance_count_is_bounded() -> None:
    _rejects("maximumInstanceCount", "0", "out of range")
    _rejects("maximumInstanceCount", "1001", "out of range")


def test_maximum_instance_count_is_at_least_flex_s_minimum() -> None:
    # Flex Consumption refuses a scale-out limit below 40.
    _rejects("maximumInstanceCount", "39", "must be between 40 and 1000")
    assert make_config({"maximumInstanceCount": "40"}).maximum_instance_count == 40


def test_log_retention_is_bounded() -> None:
    _rejects("logRetentionDays", "7", "out of range")


def test_cosmos_backup_tier_is_known() -> None:
    _rejects("cosmosBackupTier", "Periodic", "not one of")


def test_cosmos_database_name_is_checked() -> None:
    _rejects("cosmosDatabase", "a/b", "not valid")


def test_archive_schedule_is_six_field_ncrontab() -> None:
    _rejects("archiveSchedule", "0 3 * * *", "6-field NCRONTAB")


def test_archive_schedule_must_parse() -> None:
    _rejects("archiveSchedule", "0 0 25 * * *", "6-field NCRONTAB")


def test_stale_alert_must_outlast_the_gap_between_runs() -> None:
    # A weekly schedule would trip a 26-hour "no run" alert every week.
    problems = _problems({"archiveSchedule": "0 0 3 * * 1"})
    assert any(p.startswith("parley:archiveStaleAlertHours:") for p in problems), problems


def test_stale_alert_rejects_a_monthly_schedule() -> None:
    problems = _problems({"archiveSchedule": "0 0 3 1 * *"})
    assert any(p.startswith("parley:archiveStaleAlertHours:") for p in problems), problems


def test_frequent_schedules_are_accepted_quickly() -> None:
    cfg = make_config({"archiveSchedule": "*/10 * * * * *"})
    assert cfg.app_values["ARCHIVE_SCHEDULE"] == "*/10 * * * * *"


def test_stale_alert_fits_the_alert_window() -> None:
    _rejects("archiveStaleAlertHours", "72", "out of range")


def test_archive_time_budget_stays_below_the_function_timeout() -> None:
    _rejects("archiveTimeBudgetSeconds", "1790", "below the function timeout", timeout=1800)


def test_archive_time_budget_is_unbounded_with_an_unbounded_timeout() -> None:
    cfg = parse_config(
        {**FULL_CONFIG, "archiveTimeBudgetSeconds": "3000"}, stack="t", function_timeout_s=None
    )
    assert cfg.app_values["ARCHIVE_TIME_BUDGET_S"] == "3000"


def test_archive_time_budget_uses_the_code_range() -> None:
    _rejects("archiveTimeBudgetSeconds", "0", "ARCHIVE_TIME_BUDGET_S")


def test_archive_after_days_uses_the_code_range() -> None:
    _rejects("archiveAfterDays", "0", "ARCHIVE_AFTER_DAYS")


def test_retention_days_uses_the_code_range() -> None:
    _rejects("retentionDays", "-1", "RETENTION_DAYS")


def test_max_message_chars_uses_the_code_range() -> None:
    _rejects("maxMessageChars", "0", "MAX_MESSAGE_CHARS")


def test_max_history_messages_uses_the_code_range() -> None:
    _rejects("maxHistoryMessages", "many", "MAX_HISTORY_MESSAGES")


def test_llm_timeout_uses_the_code_range() -> None:
    _rejects("llmTimeoutSeconds", "0", "LLM_TIMEOUT_S")


def test_log_hash_salt_is_required() -> None:
    _rejects("logHashSalt", None, "required")


def test_log_hash_salt_is_long_enough() -> None:
    _rejects("logHashSalt", "short", "at least 16")


def test_log_hash_salt_must_be_stored_as_a_secret(tmp_path: Path) -> None:
    with pytest.raises(StackConfigError) as caught:
        load_config(FULL_CONFIG.get, is_secret=lambda key: False, stack="t", repo_root=tmp_path)
    assert any(
        p.startswith("parley:logHashSalt:") and "--secret" in p for p in caught.value.problems
    )


def test_load_config_reads_every_key_and_host_json(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"functionTimeout": "00:10:00"}))
    seen: list[str] = []

    def get(key: str) -> str | None:
        seen.append(key)
        return FULL_CONFIG.get(key)

    cfg = load_config(get, is_secret=lambda key: True, stack="t", repo_root=tmp_path)
    assert cfg.function_timeout_s == 600
    assert sorted(seen) == sorted(CONFIG_KEYS)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, FLEX_DEFAULT_FUNCTION_TIMEOUT_S),
        ({}, FLEX_DEFAULT_FUNCTION_TIMEOUT_S),
        ({"functionTimeout": "00:05:00"}, 300),
        ({"functionTimeout": "01:00:00"}, 3600),
        ({"functionTimeout": "1.02:00:00"}, 93600),
        ({"functionTimeout": "-1"}, None),
    ],
)
def test_function_timeout_comes_from_host_json(
    tmp_path: Path, content: dict[str, Any] | None, expected: int | None
) -> None:
    if content is not None:
        (tmp_path / "host.json").write_text(json.dumps(content))
    assert read_function_timeout_s(tmp_path / "host.json") == expected


def test_unknown_indexing_policy_keys_fail_loudly() -> None:
    with pytest.raises(ValueError, match="spatialIndexes"):
        indexing_policy_args({"indexingMode": "consistent", "spatialIndexes": []})


def test_the_program_refuses_bad_config_before_declaring_anything(
    pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infra.__main__ as program

    config = {f"parley:{k}": v for k, v in {**FULL_CONFIG, "spaOrigins": "*"}.items()}
    pulumi.runtime.set_all_config(config, secret_keys=["parley:logHashSalt"])
    try:
        with pytest.raises(StackConfigError, match="wildcards are not allowed"):
            program.main()
    finally:
        pulumi.runtime.set_all_config({})
    assert pulumi_mocks.resources == []


def test_the_program_reads_pulumi_config(
    pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {f"parley:{k}": v for k, v in FULL_CONFIG.items()}
    pulumi.runtime.set_all_config(config, secret_keys=["parley:logHashSalt"])
    try:
        outputs = run_main(monkeypatch)
    finally:
        pulumi.runtime.set_all_config({})
    types = {r.type for r in pulumi_mocks.resources}
    # 29 resources (the Shares and GroupChatHistory containers and the analytics workbook among
    # them), the lock, and the stack's reference to its own deployed outputs.
    assert "azure-native:web:WebApp" in types and len(pulumi_mocks.resources) == 31
    assert outputs["dataIdentity"]["location"] == "westeurope"


def test_the_defaults_fit_the_repository_host_json() -> None:
    # The real host.json bounds the archival run; the default budget must fit inside it.
    repo_root = Path(__file__).resolve().parents[2]
    timeout = read_function_timeout_s(repo_root / "host.json")
    cfg = parse_config(MINIMAL, stack="dev", function_timeout_s=timeout)
    if timeout is not None:
        assert float(cfg.app_values["ARCHIVE_TIME_BUDGET_S"]) < timeout


# ---- a chat turn within Azure's 230 s for an HTTP answer -------------------------------------


def test_model_timeouts_that_cannot_answer_within_230_s_are_refused_naming_the_keys() -> None:
    # 3 attempts of 70 s, the backoff, and two 20 s storage budgets: 251.5 s.
    problems = _problems({"llmTimeoutSeconds": "70"})
    [problem] = [p for p in problems if "230s" in p]
    assert problem.startswith("parley:llmTimeoutSeconds:")
    for key in ("llmTimeoutSeconds=70", "llmMaxRetries=2", "storeTimeoutSeconds=20"):
        assert key in problem
    assert "LLM_TIMEOUT_S" not in problem  # the operator's keys, not the app's names


def test_the_same_timeout_fits_with_fewer_retries() -> None:
    # 2 attempts of 70 s, 0.5 s of backoff, 40 s of storage: 180.5 s. Each value alone is
    # checked beside the others as configured, not beside the defaults.
    values = {**FULL_CONFIG, "llmTimeoutSeconds": "70", "llmMaxRetries": "1"}
    cfg = parse_config(values, stack="test", function_timeout_s=1800)
    assert cfg.app_values["LLM_TIMEOUT_S"] == "70"


def test_storage_budgets_count_too() -> None:
    values = {"llmMaxRetries": "0", "llmTimeoutSeconds": "150", "storeTimeoutSeconds": "45"}
    problems = _problems(values)
    assert any(p.startswith("parley:llmTimeoutSeconds:") and "230s" in p for p in problems)
