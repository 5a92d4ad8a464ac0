"""The stack's ``pulumi config`` keys: defaults, validation, and one typed object for the program.

``parse_config`` is pure (a mapping of raw strings in, a ``StackConfig`` out) so that every rule
can be tested without the Pulumi engine; ``load_config`` reads the same keys from ``pulumi
config``. Every problem is collected and reported at once, each naming its config key.

Settings that the app also reads (``MAX_*``, ``LLM_*``, ``ARCHIVE_*``...) take their defaults and
ranges from ``shared.config.Settings``, so the stack can never deploy a value the code rejects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from croniter import croniter
from pydantic import ValidationError

from shared.config import DEFAULT_DATABASE, Settings
from shared.origins import origin_problem
from shared.time_limits import TURN_SETTINGS, turn_time_problem

PROJECT = "parley"

# Flex Consumption runs a function for at most 30 minutes unless host.json says otherwise.
FLEX_DEFAULT_FUNCTION_TIMEOUT_S = 30 * 60
# The archival run must stop this long before the host would kill it, to log its summary.
ARCHIVE_BUDGET_MARGIN_S = 60
# Scheduled query rules look back at most two days.
MAX_ALERT_WINDOW_HOURS = 47

FLEX_INSTANCE_MEMORY_MB = (512, 2048, 4096)
# Flex Consumption refuses a scale-out limit below 40 or above 1000 instances.
FLEX_MAXIMUM_INSTANCE_COUNT = (40, 1000)
# Concurrent HTTP invocations per instance (functionAppConfig.scaleAndConcurrency.triggers.http).
# Flex gives Python apps 1 by default, so every open chat stream would hold a whole instance; the
# app is async end to end, so one worker can interleave many. See docs/deploy.md.
DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY = 16
# The defaults of openAiCapacity (thousands of tokens per minute), instanceMemoryMB and
# maximumInstanceCount; the capacity model (bench/capacity.py) reads them too.
DEFAULT_OPENAI_CAPACITY = 10
DEFAULT_INSTANCE_MEMORY_MB = 2048
DEFAULT_MAXIMUM_INSTANCE_COUNT = 40
# Our own bounds, a guard against typos rather than advice: Azure's documentation gives no upper
# limit that we found. docs/deploy.md says how to choose a value.
HTTP_PER_INSTANCE_CONCURRENCY = (1, 1000)
OPENAI_SKUS = ("GlobalStandard", "DataZoneStandard", "Standard")
COSMOS_BACKUP_TIERS = ("Continuous7Days", "Continuous30Days")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
)
_LOCATION = re.compile(r"^[a-z][a-z0-9]{2,39}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,9}$")
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,89}[-\w_()]$")
# Azure OpenAI model and deployment names.
_OPENAI_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MODEL_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_API_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")
# How an operator finds what a region offers (the error messages and docs/deploy.md show it).
LIST_MODELS_COMMAND = "az cognitiveservices model list --location <openAiLocation>"
_COSMOS_NAME = re.compile(r"^[^/\\#?\s][^/\\#?]{0,254}$")
_ENTRA_V2_ISSUER = re.compile(r"^https://[A-Za-z0-9.-]+/[A-Za-z0-9.-]+/v2\.0$")


class StackConfigError(ValueError):
    """One or more ``pulumi config`` values cannot be used; the message names every key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class DataConfig:
    """Cosmos DB. Field comments name the config key."""

    database: str  # cosmosDatabase
    backup_tier: str  # cosmosBackupTier


@dataclass(frozen=True)
class ModelConfig:
    """Azure OpenAI: where, which model, and how the app calls it."""

    location: str  # openAiLocation
    model: str  # openAiModel
    model_version: str  # openAiModelVersion
    deployment: str  # openAiDeploymentName
    sku: str  # openAiSku
    capacity: int  # openAiCapacity
    api_version: str  # openAiApiVersion


@dataclass(frozen=True)
class AuthConfig:
    """Who may call the API: Easy Auth's and the app's own token check."""

    client_id: str  # authClientId
    issuer: str  # authIssuer, or built from authTenantId
    jwks_url: str  # authJwksUrl, or built from an Entra ID v2.0 issuer
    allowed_audiences: tuple[str, ...]  # authAllowedAudiences


@dataclass(frozen=True)
class NetworkConfig:
    """Who may call the API from a browser (CORS)."""

    spa_origins: tuple[str, ...]  # spaOrigins


@dataclass(frozen=True)
class ScaleConfig:
    """The Flex Consumption app's size, scale-out and run time."""

    instance_memory_mb: int  # instanceMemoryMB
    maximum_instance_count: int  # maximumInstanceCount
    http_per_instance_concurrency: int  # httpPerInstanceConcurrency
    function_timeout_s: int | None  # from host.json; None means unbounded


@dataclass(frozen=True)
class MonitoringConfig:
    """Logs and alerts."""

    alert_email: str  # alertEmail
    log_retention_days: int  # logRetentionDays
    archive_stale_alert_hours: int  # archiveStaleAlertHours


@dataclass(frozen=True)
class AppConfig:
    """App settings with the code's own names, as strings (see ``APP_SETTING_KEYS``)."""

    values: Mapping[str, str]
    log_hash_salt: str = field(repr=False)  # logHashSalt (secret)


@dataclass(frozen=True)
class StackConfig:
    """Everything the program needs, validated: where the stack lives, and one record per
    concern. Field comments name the config key."""

    stack: str
    location: str  # location
    name_prefix: str  # namePrefix
    resource_group_name: str  # resourceGroupName
    data: DataConfig
    model: ModelConfig
    auth: AuthConfig
    network: NetworkConfig
    scale: ScaleConfig
    monitoring: MonitoringConfig
    app: AppConfig


# Config key -> the app setting it feeds (validated and defaulted by shared.config.Settings).
APP_SETTING_KEYS: dict[str, str] = {
    "archiveAfterDays": "ARCHIVE_AFTER_DAYS",
    "archiveSchedule": "ARCHIVE_SCHEDULE",
    "archiveTimeBudgetSeconds": "ARCHIVE_TIME_BUDGET_S",
    "retentionDays": "RETENTION_DAYS",
    "llmTimeoutSeconds": "LLM_TIMEOUT_S",
    "llmMaxRetries": "LLM_MAX_RETRIES",
    "maxHistoryMessages": "MAX_HISTORY_MESSAGES",
    "maxContextTokens": "MAX_CONTEXT_TOKENS",
    "contextWindow": "CONTEXT_WINDOW",
    "maxMessageChars": "MAX_MESSAGE_CHARS",
    "systemPrompt": "SYSTEM_PROMPT",
    "maxSessionMessages": "MAX_SESSION_MESSAGES",
    "titleMode": "TITLE_MODE",
    "titleTimeoutSeconds": "TITLE_TIMEOUT_S",
    "archiveConcurrency": "ARCHIVE_CONCURRENCY",
    "storeTimeoutSeconds": "STORE_TIMEOUT_S",
    "eraseTimeBudgetSeconds": "ERASE_TIME_BUDGET_S",
    "userDailyTokenLimit": "USER_DAILY_TOKEN_LIMIT",
    "userMonthlyTokenLimit": "USER_MONTHLY_TOKEN_LIMIT",
    "importMaxBytes": "IMPORT_MAX_BYTES",
}
# Of those, the ones without a default: unset means the setting is left out of Azure too. None
# now: RETENTION_DAYS (was the optional ARCHIVE_RETENTION_DAYS) defaults to 0, keep everything.
OPTIONAL_APP_SETTING_KEYS: frozenset[str] = frozenset()
# Defaults that differ in Azure from the code's own: there the model is always a real one.
AZURE_DEFAULTS: dict[str, str] = {"TITLE_MODE": "model"}

# Every key this program reads (``pulumi config set <key> ...`` in the project namespace).
CONFIG_KEYS: tuple[str, ...] = (
    "location",
    "namePrefix",
    "resourceGroupName",
    "spaOrigins",
    "alertEmail",
    "authClientId",
    "authTenantId",
    "authIssuer",
    "authJwksUrl",
    "authAllowedAudiences",
    "openAiLocation",
    "openAiModel",
    "openAiModelVersion",
    "openAiDeploymentName",
    "openAiSku",
    "openAiCapacity",
    "openAiApiVersion",
    "cosmosDatabase",
    "cosmosBackupTier",
    "instanceMemoryMB",
    "maximumInstanceCount",
    "httpPerInstanceConcurrency",
    "logRetentionDays",
    "archiveStaleAlertHours",
    "logHashSalt",
    *APP_SETTING_KEYS,
)


def _setting_default(env_name: str) -> str | None:
    for info in Settings.model_fields.values():
        if info.alias == env_name:
            return None if info.default is None else str(info.default)
    raise KeyError(env_name)


class _Reader:
    """Reads raw config strings, collecting one message per bad key."""

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self._values = {k: v for k, v in values.items() if v is not None and v.strip() != ""}
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{PROJECT}:{key}: {message}")

    def raw(self, key: str) -> str | None:
        value = self._values.get(key)
        return None if value is None else value.strip()

    def text(self, key: str, default: str, pattern: re.Pattern[str], hint: str) -> str:
        value = self.raw(key) or default
        if not pattern.match(value):
            self.fail(key, f"{value!r} is not valid: {hint}")
        return value

    def required(self, key: str, what: str) -> str:
        value = self.raw(key)
        if value is None:
            self.fail(key, f"required: {what} (pulumi config set {key} ...)")
            return ""
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.fail(key, f"{value!r} is not an integer")
            return default
        if not low <= number <= high:
            self.fail(key, f"{number} is out of range: must be between {low} and {high}")
        return number

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(key) or default
        if value not in choices:
            self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def string_list(self, key: str) -> list[str]:
        """A JSON list (``pulumi config set --path 'key[0]' ...``) or a comma-separated string."""
        value = self.raw(key)
        if value is None:
            return []
        if value.startswith("["):
            try:
                parsed: Any = json.loads(value)
            except json.JSONDecodeError:
                self.fail(key, "is not a valid JSON list of strings")
                return []
            if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                self.fail(key, "must be a list of strings")
                return []
            return [v.strip() for v in parsed if v.strip()]
        return [part.strip() for part in value.split(",") if part.strip()]


def _longest_gap(schedule: str) -> timedelta:
    """The longest time between two runs of an NCRONTAB schedule (over 15 days, 3+ runs)."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    horizon = start + timedelta(days=15)
    runs = croniter(schedule, start, second_at_beginning=True)
    times: list[datetime] = [runs.get_next(datetime)]
    # At least three runs (a monthly schedule shows its gap), at most 2000 (an every-second one).
    while len(times) < 3 or (times[-1] < horizon and len(times) < 2000):
        times.append(runs.get_next(datetime))
    return max(later - earlier for earlier, later in pairwise(times))


def read_function_timeout_s(host_json: Path) -> int | None:
    """host.json's functionTimeout in seconds; the Flex default when unset; None if unbounded."""
    if not host_json.is_file():
        return FLEX_DEFAULT_FUNCTION_TIMEOUT_S
    value = json.loads(host_json.read_text(encoding="utf-8")).get("functionTimeout")
    if value is None:
        return FLEX_DEFAULT_FUNCTION_TIMEOUT_S
    value = str(value).strip()
    if value == "-1":
        return None
    days = 0
    if "." in value.split(":")[0]:
        day_part, value = value.split(".", 1)
        days = int(day_part)
    hours, minutes, seconds = (int(float(p)) for p in value.split(":"))
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def parse_config(
    values: Mapping[str, str | None], *, stack: str, function_timeout_s: int | None
) -> StackConfig:
    """Validate the raw ``pulumi config`` strings; raise StackConfigError naming each bad key."""
    r = _Reader(values)
    location, prefix, resource_group = _parse_site(r, stack)
    network = _parse_network(r)
    monitoring = _parse_monitoring(r)
    auth = _parse_auth(r)
    model = _parse_model(r, location)
    data = _parse_data(r)
    scale = _parse_scale(r, function_timeout_s)
    app = _parse_app(r, function_timeout_s, monitoring.archive_stale_alert_hours)
    if r.problems:
        raise StackConfigError(r.problems)
    return StackConfig(
        stack=stack,
        location=location,
        name_prefix=prefix,
        resource_group_name=resource_group,
        data=data,
        model=model,
        auth=auth,
        network=network,
        scale=scale,
        monitoring=monitoring,
        app=app,
    )


def _parse_site(r: _Reader, stack: str) -> tuple[str, str, str]:
    """The region, the name prefix and the resource group."""
    location = r.text(
        "location",
        "swedencentral",
        _LOCATION,
        "an Azure region name such as 'swedencentral' or 'eastus2' (lower case, no spaces)",
    )
    prefix = r.text(
        "namePrefix",
        "parley",
        _PREFIX,
        "2-10 lower-case letters and digits, starting with a letter",
    )
    resource_group = r.text(
        "resourceGroupName",
        f"rg-{prefix}-{stack}",
        _RESOURCE_GROUP,
        "letters, digits, '-', '_', '.', '(' and ')', not ending in '.'",
    )
    return location, prefix, resource_group


def _parse_network(r: _Reader) -> NetworkConfig:
    origins = r.string_list("spaOrigins")
    if not origins:
        r.fail(
            "spaOrigins", "required: the single-page app's origin(s), e.g. https://app.example.com"
        )
    for origin in origins:
        problem = origin_problem(origin)
        if problem:
            r.fail("spaOrigins", problem)
    return NetworkConfig(spa_origins=tuple(origins))


def _parse_monitoring(r: _Reader) -> MonitoringConfig:
    alert_email = r.required("alertEmail", "where archival alerts are sent")
    if alert_email and not _EMAIL.match(alert_email):
        r.fail("alertEmail", f"{alert_email!r} is not an email address")
    return MonitoringConfig(
        alert_email=alert_email,
        log_retention_days=r.integer("logRetentionDays", 30, 30, 730),
        archive_stale_alert_hours=r.integer(
            "archiveStaleAlertHours", 26, 1, MAX_ALERT_WINDOW_HOURS
        ),
    )


def _parse_auth(r: _Reader) -> AuthConfig:
    client_id = r.required("authClientId", "the Entra ID app registration's client id").lower()
    if client_id and not _GUID.match(client_id):
        r.fail("authClientId", f"{client_id!r} is not a GUID")
    issuer = r.raw("authIssuer")
    tenant = r.raw("authTenantId")
    if issuer is not None:
        if not issuer.startswith("https://") or " " in issuer:
            r.fail("authIssuer", f"{issuer!r} must be an https URL")
    elif tenant is None:
        r.fail("authTenantId", "required (or set authIssuer): the Entra ID tenant id")
        issuer = ""
    elif not _GUID.match(tenant):
        r.fail("authTenantId", f"{tenant!r} is not a GUID")
        issuer = ""
    else:
        issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"
    # The app verifies tokens itself too (docs/security.md), so it needs the issuer's key set.
    # An Entra ID v2.0 issuer https://<host>/<tenant>/v2.0 publishes it at a known address.
    jwks_url = r.raw("authJwksUrl")
    if jwks_url is not None:
        if not jwks_url.startswith("https://") or " " in jwks_url:
            r.fail("authJwksUrl", f"{jwks_url!r} must be an https URL")
    elif _ENTRA_V2_ISSUER.match(issuer):
        jwks_url = issuer.removesuffix("v2.0") + "discovery/v2.0/keys"
    else:
        if issuer:
            r.fail("authJwksUrl", f"required: authIssuer {issuer!r} is not an Entra ID v2.0 issuer")
        jwks_url = ""
    audiences = r.string_list("authAllowedAudiences") or [f"api://{client_id}", client_id]
    if any("," in audience for audience in audiences):
        r.fail("authAllowedAudiences", "an audience must not contain ',' (AUTH_AUDIENCE is a list)")

    return AuthConfig(
        client_id=client_id,
        issuer=issuer,
        jwks_url=jwks_url,
        allowed_audiences=tuple(audiences),
    )


def _parse_model(r: _Reader, location: str) -> ModelConfig:
    openai_location = r.text("openAiLocation", location, _LOCATION, "an Azure region name")
    openai_model, openai_model_version, openai_api_version = _openai_model(r)
    openai_deployment = r.raw("openAiDeploymentName")
    if openai_deployment is None:
        openai_deployment = openai_model  # checked already, by the same rule
    elif not _OPENAI_NAME.match(openai_deployment):
        r.fail(
            "openAiDeploymentName",
            f"{openai_deployment!r} is not valid: 1-64 letters, digits, '-', '_' or '.'",
        )
    openai_sku = r.choice("openAiSku", "GlobalStandard", OPENAI_SKUS)
    openai_capacity = r.integer("openAiCapacity", DEFAULT_OPENAI_CAPACITY, 1, 10_000)

    return ModelConfig(
        location=openai_location,
        model=openai_model,
        model_version=openai_model_version,
        deployment=openai_deployment,
        sku=openai_sku,
        capacity=openai_capacity,
        api_version=openai_api_version,
    )


def _parse_data(r: _Reader) -> DataConfig:
    cosmos_database = r.text(
        "cosmosDatabase", DEFAULT_DATABASE, _COSMOS_NAME, "1-255 characters, none of / \\ # ?"
    )
    backup_tier = r.choice("cosmosBackupTier", "Continuous7Days", COSMOS_BACKUP_TIERS)

    return DataConfig(database=cosmos_database, backup_tier=backup_tier)


def _parse_scale(r: _Reader, function_timeout_s: int | None) -> ScaleConfig:
    memory = r.integer("instanceMemoryMB", DEFAULT_INSTANCE_MEMORY_MB, 1, 1_000_000)
    if memory not in FLEX_INSTANCE_MEMORY_MB and r.raw("instanceMemoryMB") is not None:
        r.fail(
            "instanceMemoryMB",
            f"{memory} is not a Flex Consumption size: one of "
            + ", ".join(str(m) for m in FLEX_INSTANCE_MEMORY_MB),
        )
    max_instances = r.integer(
        "maximumInstanceCount", DEFAULT_MAXIMUM_INSTANCE_COUNT, *FLEX_MAXIMUM_INSTANCE_COUNT
    )
    http_concurrency = r.integer(
        "httpPerInstanceConcurrency",
        DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY,
        *HTTP_PER_INSTANCE_CONCURRENCY,
    )
    return ScaleConfig(
        instance_memory_mb=memory,
        maximum_instance_count=max_instances,
        http_per_instance_concurrency=http_concurrency,
        function_timeout_s=function_timeout_s,
    )


def _parse_app(r: _Reader, function_timeout_s: int | None, stale_hours: int) -> AppConfig:
    """The app settings the stack passes through, checked by the code's own rules, and the salt."""
    salt = r.required(
        "logHashSalt",
        "a random secret that pseudonymises emails in logs "
        '(pulumi config set --secret logHashSalt "$(openssl rand -hex 32)")',
    )
    if salt and len(salt) < 16:
        r.fail("logHashSalt", "must be at least 16 characters (use openssl rand -hex 32)")

    app_values = _app_setting_values(r)
    _check_archive(r, app_values, function_timeout_s, stale_hours)
    _check_turn_time(r, app_values)

    return AppConfig(values=app_values, log_hash_salt=salt)


def _openai_model(r: _Reader) -> tuple[str, str, str]:
    """The model to deploy, its version, and the API version the app calls it with.

    None has a default: Azure closes model versions to new deployments on its own calendar (this
    stack's old default, gpt-4o-mini 2024-07-18, was closed), and newer models need newer API
    versions. The operator picks all three from what the region offers at deploy time.
    """
    where = f"list what the region offers with `{LIST_MODELS_COMMAND}` (docs/deploy.md)"
    model = r.required("openAiModel", f"the model to deploy, e.g. gpt-4.1-mini; {where}")
    if model and not _OPENAI_NAME.match(model):
        r.fail("openAiModel", f"{model!r} is not a model name (letters, digits, '-', '_', '.')")
    version = r.required("openAiModelVersion", f"that model's version, e.g. 2025-04-14; {where}")
    if version and not _MODEL_VERSION.match(version):
        r.fail("openAiModelVersion", f"{version!r} is not a model version")
    api_version = r.required(
        "openAiApiVersion",
        "the Azure OpenAI API version the app calls the model with (AZURE_OPENAI_API_VERSION), "
        "one the model supports (docs/deploy.md)",
    )
    if api_version:
        _check_api_version(r, api_version)
    return model, version, api_version


def _check_api_version(r: _Reader, api_version: str) -> None:
    """A dated API version, no older than the one the app is written against.

    Older versions may lack request fields the app sends (streamed usage, stream_options).
    """
    floor = _setting_default("AZURE_OPENAI_API_VERSION") or ""
    floor_match = _API_VERSION.match(floor)
    match = _API_VERSION.match(api_version)
    if not match:
        r.fail(
            "openAiApiVersion",
            f"{api_version!r} is not an API version (YYYY-MM-DD or YYYY-MM-DD-preview)",
        )
    elif floor_match and match.group(1) < floor_match.group(1):
        r.fail(
            "openAiApiVersion",
            f"{api_version!r} is older than {floor}, the version the app is written against",
        )


def _app_setting_values(r: _Reader) -> dict[str, str]:
    """The config keys that are app settings, defaulted and checked by the code's own model."""
    result: dict[str, str] = {}
    for key, env_name in APP_SETTING_KEYS.items():
        value = r.raw(key)
        if value is None:
            value = AZURE_DEFAULTS.get(env_name) or _setting_default(env_name)
        if value is None:
            continue  # optional, and not configured: left out of Azure as well
        try:
            Settings.model_validate({env_name: value})
        except ValidationError as exc:
            # The value itself; rules on combinations (errors with no field) are checked with
            # every configured value, not this one beside the defaults (``_check_turn_time``).
            if errors := [err for err in exc.errors() if err["loc"]]:
                message = "; ".join(str(err["msg"]) for err in errors)
                r.fail(key, f"{value!r} is not valid for {env_name}: {message}")
                continue
        result[env_name] = value
    return result


def _check_archive(
    r: _Reader, values: Mapping[str, str], function_timeout_s: int | None, stale_hours: int
) -> None:
    schedule = values.get("ARCHIVE_SCHEDULE")
    if schedule is not None:
        if len(schedule.split()) != 6 or not croniter.is_valid(schedule, second_at_beginning=True):
            r.fail(
                "archiveSchedule",
                f"{schedule!r} is not a 6-field NCRONTAB expression "
                "('{second} {minute} {hour} {day} {month} {day-of-week}')",
            )
        else:
            gap = _longest_gap(schedule)
            if gap + timedelta(hours=1) > timedelta(hours=stale_hours):
                r.fail(
                    "archiveStaleAlertHours",
                    f"{stale_hours}h is too short for archiveSchedule {schedule!r}: runs can be "
                    f"{gap} apart, so the 'no archival run' alert would fire between healthy runs",
                )
    budget = values.get("ARCHIVE_TIME_BUDGET_S")
    if budget is not None and function_timeout_s is not None:
        limit = function_timeout_s - ARCHIVE_BUDGET_MARGIN_S
        if float(budget) > limit:
            r.fail(
                "archiveTimeBudgetSeconds",
                f"{budget}s must stay below the function timeout ({function_timeout_s}s, from "
                f"host.json or the Flex default) minus {ARCHIVE_BUDGET_MARGIN_S}s: "
                f"at most {limit}s",
            )


def _check_turn_time(r: _Reader, values: Mapping[str, str]) -> None:
    """A chat turn must fit in Azure's 230 s for an HTTP answer: the app's own rule
    (``shared.time_limits``), with the config keys named instead of the app settings."""
    keys = {env: key for key, env in APP_SETTING_KEYS.items()}
    names = {field: keys[env] for field, env in TURN_SETTINGS.items()}
    if any(env not in values for env in TURN_SETTINGS.values()):
        return  # a bad value, reported already
    problem = turn_time_problem(
        llm_timeout_s=float(values["LLM_TIMEOUT_S"]),
        llm_max_retries=int(values["LLM_MAX_RETRIES"]),
        store_timeout_s=float(values["STORE_TIMEOUT_S"]),
        title_timeout_s=float(values["TITLE_TIMEOUT_S"]),
        names=names,
    )
    if problem:
        r.fail(names["llm_timeout_s"], problem)


def load_config(
    get: Callable[[str], str | None],
    *,
    is_secret: Callable[[str], bool],
    stack: str,
    repo_root: Path,
) -> StackConfig:
    """Read every key through ``get`` (``pulumi.Config().get``) and validate.

    ``is_secret`` tells whether a key was set with ``--secret``: the log hash salt must be, so
    that it is encrypted in the stack's config file and state.
    """
    values = {key: get(key) for key in CONFIG_KEYS}
    problems: list[str] = []
    if values.get("logHashSalt") and not is_secret("logHashSalt"):
        problems.append(
            f"{PROJECT}:logHashSalt: must be set as a secret "
            '(pulumi config set --secret logHashSalt "$(openssl rand -hex 32)")'
        )
    try:
        cfg = parse_config(
            values,
            stack=stack,
            function_timeout_s=read_function_timeout_s(repo_root / "host.json"),
        )
    except StackConfigError as exc:
        raise StackConfigError(exc.problems + problems) from None
    if problems:
        raise StackConfigError(problems)
    return cfg
