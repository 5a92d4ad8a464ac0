"""``pulumi config`` validation: each rule refuses a value naming its key (``REJECTED``, one
row a rule), and what a rule accepts."""

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
from shared.config import DEFAULT_DATABASE, Settings
from tests.infra.support import (
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


# Each key refused with a value (None: the key left out), and a fragment of the problem the
# operator reads; the problems start with the key (the function timeout: 1800 s).
REJECTED: list[tuple[str, str | None, str]] = [
    ("location", "West Europe", "region"),
    ("namePrefix", "Parley-App", "lower-case"),
    ("spaOrigins", None, "required"),
    ("spaOrigins", '["*"]', "wildcards are not allowed"),
    ("spaOrigins", "https://*.example.com", "wildcards are not allowed"),
    ("spaOrigins", "http://chat.example.com", "must use https"),
    ("spaOrigins", "https://chat.example.com/", "no path"),
    ("spaOrigins", "https://Chat.example.com", "lower case"),
    ("spaOrigins", '["https://a.example.com", 3]', "list of strings"),
    ("alertEmail", None, "required"),
    ("alertEmail", "ops-at-example.com", "not an email address"),
    ("authClientId", None, "required"),
    ("authClientId", "my-app", "not a GUID"),
    ("authTenantId", None, "required"),
    ("authTenantId", "contoso.onmicrosoft.com", "not a GUID"),
    ("authIssuer", "http://login.example.com/", "https URL"),
    ("authJwksUrl", "http://keys.example.com/jwks.json", "https URL"),
    ("authAllowedAudiences", '["api://a,b"]', "must not contain ','"),
    ("openAiCapacity", "0", "out of range"),
    ("openAiCapacity", "ten", "not an integer"),
    ("openAiSku", "Premium", "not one of"),
    ("openAiDeploymentName", "bad name!", "not valid"),
    ("openAiApiVersion", "latest", "not an API version"),
    # No default model: Azure refuses one once its version closes to new deployments (as
    # gpt-4o-mini 2024-07-18 did), so the operator picks model, version and API version together.
    ("openAiModel", None, "required"),
    ("openAiModelVersion", None, "required"),
    ("openAiApiVersion", None, "required"),
    ("openAiModel", "gpt 4", "not a model name"),
    ("openAiModelVersion", "2025/04/14", "not a model version"),
    ("openAiApiVersion", "2024-06-01", "older than 2024-10-21"),
    ("openAiApiVersion", "2024-10-01-preview", "older than 2024-10-21"),
    ("httpPerInstanceConcurrency", "0", "out of range"),
    ("httpPerInstanceConcurrency", "1001", "out of range"),
    ("httpPerInstanceConcurrency", "many", "not an integer"),
    ("instanceMemoryMB", "1024", "not a Flex Consumption size"),
    ("maximumInstanceCount", "0", "out of range"),
    ("maximumInstanceCount", "1001", "out of range"),
    ("maximumInstanceCount", "39", "must be between 40 and 1000"),  # Flex's minimum
    ("logRetentionDays", "7", "out of range"),
    ("cosmosBackupTier", "Periodic", "not one of"),
    ("cosmosDatabase", "a/b", "not valid"),
    ("archiveSchedule", "0 3 * * *", "6-field NCRONTAB"),
    ("archiveSchedule", "0 0 25 * * *", "6-field NCRONTAB"),
    ("archiveStaleAlertHours", "72", "out of range"),
    ("archiveTimeBudgetSeconds", "1790", "below the function timeout"),
    ("archiveTimeBudgetSeconds", "0", "ARCHIVE_TIME_BUDGET_S"),
    ("archiveAfterDays", "0", "ARCHIVE_AFTER_DAYS"),
    ("retentionDays", "-1", "RETENTION_DAYS"),
    ("maxMessageChars", "0", "MAX_MESSAGE_CHARS"),
    ("maxHistoryMessages", "many", "MAX_HISTORY_MESSAGES"),
    ("llmTimeoutSeconds", "0", "LLM_TIMEOUT_S"),
    ("logHashSalt", None, "required"),
    ("logHashSalt", "short", "at least 16"),
]


@pytest.mark.parametrize(("key", "value", "fragment"), REJECTED, ids=lambda v: str(v))
def test_a_bad_value_is_refused_naming_its_key(key: str, value: str | None, fragment: str) -> None:
    problems = _problems({key: value})
    assert any(p.startswith(f"parley:{key}:") and fragment in p for p in problems), problems


def test_minimal_config_takes_the_documented_defaults() -> None:
    cfg = parse_config(MINIMAL, stack="dev", function_timeout_s=1800)
    assert cfg.location == "swedencentral"
    assert cfg.resource_group_name == "rg-parley-dev"
    assert cfg.model.sku == "GlobalStandard" and cfg.model.capacity == 10
    assert cfg.data.database == DEFAULT_DATABASE
    assert cfg.scale.instance_memory_mb == 2048 and cfg.scale.maximum_instance_count == 40
    assert cfg.scale.http_per_instance_concurrency == DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY == 16
    assert cfg.monitoring.archive_stale_alert_hours == 26
    assert cfg.auth.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    # App-setting defaults are the code's own defaults.
    assert cfg.app.values["ARCHIVE_AFTER_DAYS"] == "30"
    assert cfg.app.values["ARCHIVE_SCHEDULE"] == "0 0 3 * * *"
    assert cfg.app.values["RETENTION_DAYS"] == "0"
    assert "logHashSalt" not in repr(cfg) and MINIMAL["logHashSalt"] not in repr(cfg)


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems({"alertEmail": "nope", "openAiCapacity": "0", "location": "West Europe"})
    keys = {p.split(":")[1] for p in problems}
    assert {"alertEmail", "openAiCapacity", "location"} <= keys


def test_spa_origins_allow_http_only_for_localhost() -> None:
    for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000"):
        cfg = make_config({"spaOrigins": origin})
        assert cfg.network.spa_origins == (origin,)


def test_spa_origins_accept_a_comma_separated_list() -> None:
    cfg = make_config({"spaOrigins": "https://a.example.com, https://b.example.com"})
    assert cfg.network.spa_origins == ("https://a.example.com", "https://b.example.com")


def test_auth_issuer_replaces_the_tenant() -> None:
    issuer = "https://login.microsoftonline.com/organizations/v2.0"
    cfg = make_config({"authTenantId": None, "authIssuer": issuer})
    assert cfg.auth.issuer == issuer


def test_the_jwks_url_follows_an_entra_v2_issuer() -> None:
    # The app verifies tokens itself as well as Easy Auth: it needs the issuer's key set.
    assert make_config().auth.jwks_url == (
        f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"
    )
    external_id = f"https://{TENANT}.ciamlogin.com/{TENANT}/v2.0"
    cfg = make_config({"authTenantId": None, "authIssuer": external_id})
    assert cfg.auth.jwks_url == f"https://{TENANT}.ciamlogin.com/{TENANT}/discovery/v2.0/keys"


def test_the_jwks_url_can_be_set() -> None:
    url = "https://keys.example.com/jwks.json"
    assert make_config({"authJwksUrl": url}).auth.jwks_url == url


def test_another_issuer_needs_its_jwks_url() -> None:
    problems = _problems({"authTenantId": None, "authIssuer": "https://idp.example.com/"})
    assert any(p.startswith("parley:authJwksUrl: required") for p in problems), problems


def test_a_missing_model_names_the_keys_and_how_to_list_models() -> None:
    problems = _problems({"openAiModel": None, "openAiModelVersion": None})
    assert any(p.startswith("parley:openAiModel:") for p in problems), problems
    assert any(p.startswith("parley:openAiModelVersion:") for p in problems), problems
    assert all("az cognitiveservices model list --location" in p for p in problems), problems
    # The deployment name defaults to the model; its absence is not reported twice.
    assert not any(p.startswith("parley:openAiDeploymentName:") for p in problems), problems


def test_the_api_version_may_be_the_code_s_or_newer() -> None:
    floor = Settings.model_fields["azure_openai_api_version"].default
    assert floor == "2024-10-21"
    for accepted in (floor, "2024-12-01-preview", "2025-04-01-preview"):
        assert make_config({"openAiApiVersion": accepted}).model.api_version == accepted


def test_http_per_instance_concurrency_may_be_one() -> None:
    assert make_config({"httpPerInstanceConcurrency": "1"}).scale.http_per_instance_concurrency == 1


def test_maximum_instance_count_may_be_flex_s_minimum() -> None:
    # Flex Consumption refuses a scale-out limit below 40.
    assert make_config({"maximumInstanceCount": "40"}).scale.maximum_instance_count == 40


def test_stale_alert_must_outlast_the_gap_between_runs() -> None:
    # A weekly schedule would trip a 26-hour "no run" alert every week.
    problems = _problems({"archiveSchedule": "0 0 3 * * 1"})
    assert any(p.startswith("parley:archiveStaleAlertHours:") for p in problems), problems


def test_stale_alert_rejects_a_monthly_schedule() -> None:
    problems = _problems({"archiveSchedule": "0 0 3 1 * *"})
    assert any(p.startswith("parley:archiveStaleAlertHours:") for p in problems), problems


def test_frequent_schedules_are_accepted_quickly() -> None:
    cfg = make_config({"archiveSchedule": "*/10 * * * * *"})
    assert cfg.app.values["ARCHIVE_SCHEDULE"] == "*/10 * * * * *"


def test_archive_time_budget_is_unbounded_with_an_unbounded_timeout() -> None:
    cfg = parse_config(
        {**FULL_CONFIG, "archiveTimeBudgetSeconds": "3000"}, stack="t", function_timeout_s=None
    )
    assert cfg.app.values["ARCHIVE_TIME_BUDGET_S"] == "3000"


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
    assert cfg.scale.function_timeout_s == 600
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
    # 32 resources (the Shares and GroupChatHistory containers, the analytics workbook, Web
    # PubSub with its hub and role among them), the lock, and the stack's reference to its own
    # deployed outputs.
    assert "azure-native:web:WebApp" in types and len(pulumi_mocks.resources) == 34
    assert outputs["dataIdentity"]["location"] == "westeurope"


def test_the_defaults_fit_the_repository_host_json() -> None:
    # The real host.json bounds the archival run; the default budget must fit inside it.
    repo_root = Path(__file__).resolve().parents[2]
    timeout = read_function_timeout_s(repo_root / "host.json")
    cfg = parse_config(MINIMAL, stack="dev", function_timeout_s=timeout)
    if timeout is not None:
        assert float(cfg.app.values["ARCHIVE_TIME_BUDGET_S"]) < timeout


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
    assert cfg.app.values["LLM_TIMEOUT_S"] == "70"


def test_storage_budgets_count_too() -> None:
    values = {"llmMaxRetries": "0", "llmTimeoutSeconds": "150", "storeTimeoutSeconds": "45"}
    problems = _problems(values)
    assert any(p.startswith("parley:llmTimeoutSeconds:") and "230s" in p for p in problems)
