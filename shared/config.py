"""Settings read from the environment once, validated, and shared by every layer.

``SETTINGS`` below is the one list of environment variables the code reads (besides the
platform's proxy variables, ``PROXY_VARIABLES``); the Pulumi program sets app settings from the
same list, and a test checks that nothing is missed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.origins import origin_problem
from shared.signing import DEVELOPMENT_KEY
from shared.time_limits import turn_time_problem

StorageBackend = Literal["sqlite", "cosmos"]
LlmProvider = Literal["azure-openai", "openai", "echo"]
AuthMode = Literal["easyauth", "jwt", "dev"]
TitleMode = Literal["model", "first-message"]
WindowPolicy = Literal["blocks", "sliding"]

# The Cosmos DB database and containers unless the settings name others (the containers'
# definitions: shared/storage/containers.py, which reads these).
DEFAULT_DATABASE = "chat"
DEFAULT_ACTIVE_CONTAINER = "Conversations"
DEFAULT_ARCHIVE_CONTAINER = "ConversationsArchive"
DEFAULT_SHARES_CONTAINER = "Shares"
DEFAULT_GROUPS_CONTAINER = "GroupChatHistory"

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer clearly and concisely, and say so when you do not know."
)


class ConfigError(ValueError):
    """The environment holds a setting that cannot be used; the message names it."""


class Settings(BaseModel):
    """Every setting, by its environment variable name (``docs/configuration.md`` lists them)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    storage_backend: StorageBackend | None = Field(None, alias="STORAGE_BACKEND")
    sqlite_path: str = Field(".data/conversations.db", alias="SQLITE_PATH")
    cosmos_endpoint: str | None = Field(None, alias="COSMOS_ENDPOINT")
    cosmos_key: str | None = Field(None, alias="COSMOS_KEY", repr=False)
    cosmos_verify_tls: bool = Field(True, alias="COSMOS_VERIFY_TLS")
    cosmos_database: str = Field(DEFAULT_DATABASE, alias="COSMOS_DATABASE")
    cosmos_container: str = Field(DEFAULT_ACTIVE_CONTAINER, alias="COSMOS_CONTAINER")
    cosmos_archive_container: str = Field(
        DEFAULT_ARCHIVE_CONTAINER, alias="COSMOS_ARCHIVE_CONTAINER"
    )
    cosmos_shares_container: str = Field(DEFAULT_SHARES_CONTAINER, alias="COSMOS_SHARES_CONTAINER")
    cosmos_groups_container: str = Field(DEFAULT_GROUPS_CONTAINER, alias="COSMOS_GROUPS_CONTAINER")
    azure_client_id: str | None = Field(None, alias="AZURE_CLIENT_ID")

    llm_provider: LlmProvider | None = Field(None, alias="LLM_PROVIDER")
    azure_openai_endpoint: str | None = Field(None, alias="AZURE_OPENAI_ENDPOINT")
    azure_openai_deployment: str | None = Field(None, alias="AZURE_OPENAI_DEPLOYMENT")
    azure_openai_api_version: str = Field("2024-10-21", alias="AZURE_OPENAI_API_VERSION")
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    openai_api_key: str | None = Field(None, alias="OPENAI_API_KEY", repr=False)
    openai_model: str = Field("gpt-4o-mini", alias="OPENAI_MODEL")
    llm_timeout_s: float = Field(60.0, alias="LLM_TIMEOUT_S", gt=0, le=600)
    llm_max_retries: int = Field(2, alias="LLM_MAX_RETRIES", ge=0, le=10)
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, alias="SYSTEM_PROMPT")
    max_history_messages: int = Field(20, alias="MAX_HISTORY_MESSAGES", ge=1, le=500)
    max_context_tokens: int = Field(8000, alias="MAX_CONTEXT_TOKENS", ge=100, le=1_000_000)
    # How the window drops old messages (shared/context.py): "blocks" keeps its beginning for
    # the prompt cache; "sliding" drops one message a turn (the benchmark's comparison).
    context_window: WindowPolicy = Field("blocks", alias="CONTEXT_WINDOW")
    max_message_chars: int = Field(16000, alias="MAX_MESSAGE_CHARS", ge=1, le=1_000_000)
    # GET /api/sessions/{id} returns at most this many newest messages (older ones page).
    max_session_messages: int = Field(200, alias="MAX_SESSION_MESSAGES", ge=1, le=1000)
    # Members of one group at most (the group item holds them all, and each message's write
    # replaces it: a bound on its size).
    group_max_members: int = Field(50, alias="GROUP_MAX_MEMBERS", ge=1, le=500)
    # Titles written by the model; unset: "model" with a real model, "first-message" with echo.
    title_mode: TitleMode | None = Field(None, alias="TITLE_MODE")
    title_timeout_s: float = Field(10.0, alias="TITLE_TIMEOUT_S", gt=0, le=120)
    # A streamed answer sends an SSE comment after this many seconds without an event, so that
    # no proxy or load balancer on the way takes a silent model for a dead connection.
    sse_keepalive_s: float = Field(15.0, alias="SSE_KEEPALIVE_S", gt=0, le=120)
    # An answer still being generated after this many milliseconds is stored as it grows, its
    # text so far written at most once per interval, so a reader on any instance is at most this
    # far behind and a stop takes about this long; one that ends sooner is written once, whole
    # (shared/answers.py).
    stream_checkpoint_ms: int = Field(1000, alias="STREAM_CHECKPOINT_MS", ge=50, le=60_000)
    # Model tokens (prompt + completion) a user may spend per UTC day / month; 0: no limit
    # (shared/usage/).
    user_daily_token_limit: int = Field(200_000, alias="USER_DAILY_TOKEN_LIMIT", ge=0)
    user_monthly_token_limit: int = Field(0, alias="USER_MONTHLY_TOKEN_LIMIT", ge=0)

    # Real-time delivery of group events through Azure Web PubSub (shared/realtime/): off
    # (clients poll) unless WEBPUBSUB_ENDPOINT is set. In Azure the managed identity signs in;
    # WEBPUBSUB_KEY is for the local stand-in only (tools/webpubsub/README.md).
    webpubsub_endpoint: str | None = Field(None, alias="WEBPUBSUB_ENDPOINT")
    webpubsub_hub: str = Field(
        "parley", alias="WEBPUBSUB_HUB", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,127}$"
    )
    webpubsub_key: str | None = Field(None, alias="WEBPUBSUB_KEY", repr=False)

    auth_mode: AuthMode | None = Field(None, alias="AUTH_MODE")
    # The token issuer, the audiences accepted (comma-separated) and the issuer's key set: what
    # jwt mode verifies, and what easyauth mode verifies again behind App Service Authentication.
    auth_issuer: str | None = Field(None, alias="AUTH_ISSUER")
    auth_audiences: tuple[str, ...] = Field((), alias="AUTH_AUDIENCE")
    auth_jwks_url: str | None = Field(None, alias="AUTH_JWKS_URL")
    # Set by App Service itself (read-only): whether its authentication module is on. Unset
    # outside App Service; easyauth mode refuses every call when it says False.
    website_auth_enabled: bool | None = Field(None, alias="WEBSITE_AUTH_ENABLED")
    cors_allowed_origins: tuple[str, ...] = Field((), alias="CORS_ALLOWED_ORIGINS")
    log_hash_salt: str = Field("parley", alias="LOG_HASH_SALT", repr=False)
    # The key that seals the tokens a client carries back (shared/signing.py); a deployment's
    # secret, generated by `pulumi up`. Unset: a fixed development key that protects nothing.
    token_signing_key: str | None = Field(
        None, alias="TOKEN_SIGNING_KEY", repr=False, min_length=32, max_length=512
    )

    archive_after_days: int = Field(30, alias="ARCHIVE_AFTER_DAYS", ge=1, le=36500)
    archive_schedule: str = Field("0 0 3 * * *", alias="ARCHIVE_SCHEDULE")
    archive_time_budget_s: float = Field(240.0, alias="ARCHIVE_TIME_BUDGET_S", gt=0, le=3600)
    # Conversations, active or archived, whose last activity is older than this many days are
    # deleted by the archival pass (pinned ones never); 0 keeps everything (docs/privacy.md).
    retention_days: int = Field(0, alias="RETENTION_DAYS", ge=0, le=36500)
    # Sessions the archival pass moves at once (bounded; throttling slows it, never fails it).
    archive_concurrency: int = Field(8, alias="ARCHIVE_CONCURRENCY", ge=1, le=64)

    # The most one request may spend waiting on storage, SDK retries included: well inside the
    # Functions timeout, so a hung store becomes a 503 with Retry-After, never a hung request.
    store_timeout_s: float = Field(20.0, alias="STORE_TIMEOUT_S", gt=0, le=120)
    # DELETE /api/sessions works in steps of at most this long (202 + Retry-After when unfinished).
    erase_time_budget_s: float = Field(20.0, alias="ERASE_TIME_BUDGET_S", gt=0, le=120)
    # The largest file POST /api/import (and python -m shared.importer) accepts: 413 above it.
    import_max_bytes: int = Field(
        50 * 1024 * 1024, alias="IMPORT_MAX_BYTES", ge=1024, le=100 * 1024 * 1024
    )

    port: int = Field(7071, alias="PORT", ge=1, le=65535)
    # The local host only (devhost/timeouts.py): a request's headers, and then its body, must
    # arrive within these, or it is answered 408 and its connection closed.
    devhost_header_timeout_s: float = Field(10.0, alias="DEVHOST_HEADER_TIMEOUT_S", gt=0, le=600)
    devhost_body_timeout_s: float = Field(30.0, alias="DEVHOST_BODY_TIMEOUT_S", gt=0, le=600)

    @field_validator("cors_allowed_origins", "auth_audiences", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("website_auth_enabled", mode="before")
    @classmethod
    def _platform_bool(cls, value: object) -> object:
        # The platform writes "True"/"False"; tolerate the case and stray spaces it might add.
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _valid_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Credentials (Easy Auth cookies, bearer tokens) are allowed: each origin exactly.
        problems = [p for p in map(origin_problem, value) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.resolved_storage_backend == "cosmos" and not self.cosmos_endpoint:
            raise ValueError("STORAGE_BACKEND=cosmos needs COSMOS_ENDPOINT")
        provider = self.resolved_llm_provider
        if provider == "azure-openai" and not (
            self.azure_openai_endpoint and self.azure_openai_deployment
        ):
            raise ValueError(
                "LLM_PROVIDER=azure-openai needs AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT"
            )
        if self.webpubsub_endpoint and not self.webpubsub_endpoint.startswith(
            ("https://", "http://")
        ):
            raise ValueError("WEBPUBSUB_ENDPOINT must be an https:// (or local http://) URL")
        # A bearer token alone is the caller's word in jwt mode: without what verifies it the
        # app does not start (easyauth starts, and refuses every call: shared/auth).
        missing = self.missing_token_settings()
        if self.auth_mode == "jwt" and missing:
            raise ValueError(f"AUTH_MODE=jwt needs {', '.join(missing)}")
        # A turn must be able to end within Azure's limit for an HTTP answer (230 s).
        problem = turn_time_problem(
            llm_timeout_s=self.llm_timeout_s,
            llm_max_retries=self.llm_max_retries,
            store_timeout_s=self.store_timeout_s,
            title_timeout_s=self.title_timeout_s,
        )
        if problem:
            raise ValueError(problem)
        return self

    def missing_token_settings(self) -> list[str]:
        """The settings that verify a caller's token (AUTH_MODE jwt, easyauth) and are unset:
        the one rule for "the auth settings are complete"."""
        values = {
            "AUTH_ISSUER": self.auth_issuer,
            "AUTH_AUDIENCE": self.auth_audiences,
            "AUTH_JWKS_URL": self.auth_jwks_url,
        }
        return [name for name, value in values.items() if not value]

    @property
    def resolved_storage_backend(self) -> StorageBackend:
        if self.storage_backend:
            return self.storage_backend
        return "cosmos" if self.cosmos_endpoint else "sqlite"

    @property
    def resolved_token_signing_key(self) -> str:
        return self.token_signing_key or DEVELOPMENT_KEY

    @property
    def resolved_llm_provider(self) -> LlmProvider:
        if self.llm_provider:
            return self.llm_provider
        if self.azure_openai_endpoint:
            return "azure-openai"
        if self.openai_base_url or self.openai_api_key:
            return "openai"
        return "echo"

    @property
    def resolved_title_mode(self) -> TitleMode:
        if self.title_mode:
            return self.title_mode
        return "first-message" if self.resolved_llm_provider == "echo" else "model"


# Every environment variable the code reads, in one list (the aliases above). The Pulumi
# program and its tests use this to prove that the deployment sets what the code needs.
SETTINGS: tuple[str, ...] = tuple(
    str(field.alias) for field in Settings.model_fields.values() if field.alias
)


# Not Parley's settings but the platform's: the proxy variables HTTP clients honour. They are
# read only to know whether there is a proxy to look for (``proxy_configured``).
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def proxy_configured(environ: Mapping[str, str] | None = None) -> bool:
    source = os.environ if environ is None else environ
    return any(source.get(name) for name in PROXY_VARIABLES)


# Settings that were renamed: set under the old name, the configuration is refused.
RENAMED_SETTINGS: dict[str, tuple[str, str]] = {
    "ARCHIVE_RETENTION_DAYS": (
        "RETENTION_DAYS",
        "it now deletes active conversations too, never pinned ones",
    ),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; a bad value raises ConfigError naming the variable."""
    source = os.environ if environ is None else environ
    for old_name, (new_name, why) in RENAMED_SETTINGS.items():
        if source.get(old_name, "") != "":
            # Never ignored quietly: the new setting may mean something else.
            raise ConfigError(f"{old_name} is now {new_name} ({why}): set that instead.")
    # Empty variables count as unset, as they do in Azure app settings.
    values = {name: source[name] for name in SETTINGS if source.get(name, "") != ""}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the local host's restarts)."""
    get_settings.cache_clear()
