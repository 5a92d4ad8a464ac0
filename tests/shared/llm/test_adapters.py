"""The model adapters through the real ``openai`` client against the scripted server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from email.utils import formatdate
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from shared.azure_credential import azure_credential
from shared.config import load_settings
from shared.errors import DEFAULT_RETRY_AFTER_S, ApiError, ModelError, RateLimited
from shared.llm import make_model
from shared.llm.base import ChatModel, ModelMessage, Usage
from shared.llm.echo import EchoModel
from shared.llm.openai_chat import (
    AZURE_OPENAI_SCOPE,
    KEYLESS_PLACEHOLDER,
    OpenAIChatModel,
    make_azure_model,
    retry_after_seconds,
)
from tests.support.fake_openai import FakeOpenAI, Hang, Status, Stream

MESSAGES: list[ModelMessage] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "and now?"},
]


def openai_model(fake: FakeOpenAI, **env: str) -> ChatModel:
    settings = load_settings(
        {
            "OPENAI_BASE_URL": fake.url + "/v1",
            "OPENAI_MODEL": "local-model",
            "LLM_MAX_RETRIES": "0",
            "LLM_TIMEOUT_S": "0.5",
            **env,
        }
    )
    return make_model(settings)


def collect(model: ChatModel, messages: Sequence[ModelMessage] = MESSAGES) -> list[str | Usage]:
    async def run() -> list[str | Usage]:
        try:
            return [item async for item in model.stream(messages)]
        finally:
            await model.close()

    return asyncio.run(run())


def failure(model: ChatModel) -> ApiError:
    with pytest.raises(ApiError) as caught:
        collect(model)
    return caught.value


# ---- openai-compatible -------------------------------------------------------------------


def test_streams_pieces_then_usage_and_sends_the_exact_request(fake: FakeOpenAI) -> None:
    fake.script(Stream(("Hel", "lo", "!"), model="served-model", usage=(21, 4)))
    items = collect(openai_model(fake))
    assert items == ["Hel", "lo", "!", Usage("served-model", 21, 4)]
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "local-model"
    assert request.body["messages"] == MESSAGES
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    # No key configured: a visible placeholder, never anything from the environment.
    assert request.headers["authorization"] == f"Bearer {KEYLESS_PLACEHOLDER}"


def test_cached_prompt_tokens_are_read_and_the_cache_key_is_sent(fake: FakeOpenAI) -> None:
    fake.script(Stream(("ok",), usage=(2048, 5), cached=1920))
    model = openai_model(fake)

    async def run() -> list[str | Usage]:
        try:
            return [item async for item in model.stream(MESSAGES, cache_key="parley-abc")]
        finally:
            await model.close()

    assert asyncio.run(run()) == ["ok", Usage("fake-model-2025", 2048, 5, 1920)]
    assert fake.requests[0].body["prompt_cache_key"] == "parley-abc"
    # Without a key (and by default) the field is not sent at all.
    collect(openai_model(fake))
    assert "prompt_cache_key" not in fake.requests[1].body


def test_azure_sends_the_cache_key_only_to_the_v1_api() -> None:
    from shared.llm.openai_chat import azure_takes_cache_key

    assert azure_takes_cache_key("v1") and azure_takes_cache_key("preview")
    assert not azure_takes_cache_key("2024-10-21")


def test_configured_key_is_sent_as_bearer(fake: FakeOpenAI) -> None:
    collect(openai_model(fake, OPENAI_API_KEY="sk-local-test"))
    assert fake.requests[0].headers["authorization"] == "Bearer sk-local-test"


def test_server_without_usage_still_names_the_model(fake: FakeOpenAI) -> None:
    fake.script(Stream(("ok",), usage=None))
    assert collect(openai_model(fake)) == ["ok", Usage("fake-model-2025", None, None)]


def test_rate_limit_becomes_rate_limited_with_retry_after(fake: FakeOpenAI) -> None:
    fake.script(Status(429, {"error": {"message": "slow down"}}, {"retry-after": "7"}))
    error = failure(openai_model(fake))
    assert isinstance(error, RateLimited)
    assert error.retry_after_s == 7
    assert len(fake.requests) == 1  # LLM_MAX_RETRIES=0: no retry


def test_rate_limit_without_header_gets_the_default(fake: FakeOpenAI) -> None:
    fake.script(Status(429, {"error": {"message": "slow down"}}))
    error = failure(openai_model(fake))
    assert isinstance(error, RateLimited) and error.retry_after_s == DEFAULT_RETRY_AFTER_S


def test_server_error_is_a_model_error_that_leaks_nothing(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(Status(500, {"error": {"message": "upstream secret detail"}}))
    with caplog.at_level(logging.DEBUG):
        error = failure(openai_model(fake))
    assert isinstance(error, ModelError)
    assert "secret" not in error.message
    assert error.__cause__ is None and error.__suppress_context__
    assert "upstream secret detail" not in caplog.text
    assert '"upstreamStatus": 500' in caplog.text


def test_retries_are_bounded_by_the_setting(fake: FakeOpenAI) -> None:
    # retry-after-ms keeps the SDK's back-off short; three 500s, two retries allowed.
    busy = Status(500, {"error": {"message": "busy"}}, {"retry-after-ms": "1"})
    fake.script(busy, busy, busy, Stream(("late",)))
    assert isinstance(failure(openai_model(fake, LLM_MAX_RETRIES="2")), ModelError)
    assert len(fake.requests) == 3


def test_a_silent_server_times_out(fake: FakeOpenAI) -> None:
    fake.script(Hang())
    started = time.monotonic()
    error = failure(openai_model(fake))
    assert isinstance(error, ModelError)
    assert error.message == "The model did not answer in time."
    assert time.monotonic() - started < 5  # LLM_TIMEOUT_S=0.5, not the SDK's default 600 s


def test_error_event_mid_stream_raises_after_the_first_pieces(fake: FakeOpenAI) -> None:
    fake.script(Stream(("one", "two", "three"), fail_after=1))
    model = openai_model(fake)
    seen: list[str | Usage] = []

    async def run() -> None:
        try:
            async for item in model.stream(MESSAGES):
                seen.append(item)
        finally:
            await model.close()

    with pytest.raises(ModelError) as caught:
        asyncio.run(run())
    assert seen == ["one"]
    assert "secret" not in caught.value.message


def test_unreachable_server_is_a_model_error(fake: FakeOpenAI) -> None:
    from tools.local.host import free_port

    model = make_model(
        load_settings(
            {"OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "LLM_MAX_RETRIES": "0"}
        )
    )
    error = failure(model)
    assert error.message == "The model service could not be reached."


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "12"}, 12),
        ({"retry-after": "0.2"}, 1),
        ({"retry-after-ms": "2500", "retry-after": "60"}, 3),
        ({"retry-after": formatdate(1_000_030, usegmt=True)}, 30),
        ({"retry-after": "soon"}, DEFAULT_RETRY_AFTER_S),
        ({"retry-after": "999999"}, 600),
        ({}, DEFAULT_RETRY_AFTER_S),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: int) -> None:
    assert retry_after_seconds(headers, now=1_000_000) == expected


def test_provider_selection() -> None:
    assert isinstance(make_model(load_settings({})), EchoModel)
    model = make_model(load_settings({"OPENAI_API_KEY": "sk-x"}))
    assert isinstance(model, OpenAIChatModel) and model.provider == "openai"
    asyncio.run(model.close())


# ---- azure-openai (managed identity) -------------------------------------------------------


class RecordingCredential:
    """Stands in for the managed identity, which does not exist on this machine (a mock):
    records the scopes asked for and hands out a fixed token."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("fake-entra-token", int(time.time()) + 3600)

    async def close(self) -> None:
        self.closed = True


def test_azure_uses_an_entra_token_for_the_cognitive_services_scope_and_no_key(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key lying around in the environment must not be picked up by the SDK.
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "env-key-must-not-be-used")
    settings = load_settings(
        {
            "AZURE_OPENAI_ENDPOINT": fake.url,
            "AZURE_OPENAI_DEPLOYMENT": "chat-dep",
            "LLM_MAX_RETRIES": "0",
            "LLM_TIMEOUT_S": "0.5",
        }
    )
    assert settings.resolved_llm_provider == "azure-openai"
    credential = RecordingCredential()
    model = make_azure_model(settings, credential=credential)  # type: ignore[arg-type]
    assert model.client.api_key in ("", None) or model.client.api_key.startswith("<")
    fake.script(Stream(("hi",), model="gpt-4o-2024-11-20", usage=(9, 1)))

    assert collect(model) == ["hi", Usage("gpt-4o-2024-11-20", 9, 1)]
    assert credential.scopes == [(AZURE_OPENAI_SCOPE,)]
    assert credential.closed  # the adapter owns it
    (request,) = fake.requests
    assert request.path == "/openai/deployments/chat-dep/chat/completions?api-version=2024-10-21"
    assert request.headers["authorization"] == "Bearer fake-entra-token"
    assert "api-key" not in request.headers
    assert request.body["messages"] == MESSAGES


def test_azure_credential_is_the_user_assigned_identity_when_named() -> None:
    named = azure_credential(
        load_settings({"AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555"})
    )
    default = azure_credential(load_settings({}))
    try:
        assert isinstance(named, ManagedIdentityCredential)
        assert isinstance(default, DefaultAzureCredential)
    finally:
        asyncio.run(named.close())
        asyncio.run(default.close())
