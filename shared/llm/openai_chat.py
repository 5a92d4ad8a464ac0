"""Chat models behind the ``openai`` package: Azure OpenAI and any OpenAI-compatible server.

Both adapters stream a chat completion and yield its text, then one ``Usage``. Every failure
of the model service becomes ``RateLimited`` (its 429) or ``ModelError``, whose messages are
ours: upstream error text may quote the conversation, so it reaches neither the caller nor
the log (the log gets the status code, the error's class and the upstream request id).

This module imports the SDKs at the top; ``shared.llm`` imports it only when a real model is
configured, so the echo model's cold start does not pay for them.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace

import openai
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from openai.types.chat import ChatCompletionMessageParam

from shared.azure_credential import azure_credential
from shared.config import Settings
from shared.errors import DEFAULT_RETRY_AFTER_S, ModelError, RateLimited
from shared.llm.base import ChatModel, ModelMessage, Usage

log = logging.getLogger("parley.llm")

# The Entra scope of Azure OpenAI (Cognitive Services) data-plane calls.
AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"
# Local servers (Ollama, llama.cpp, vLLM...) need no key, but the SDK sends a bearer header
# whatever happens; a visible placeholder says that no real key is in use.
KEYLESS_PLACEHOLDER = "no-key"
# The most we ever tell a caller to wait (a 429 naming no time gets errors' default).
MAX_RETRY_AFTER_S = 600


class OpenAIChatModel:
    """A ChatModel over an ``openai`` async client (plain or Azure)."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        provider: str,
        credential: AsyncTokenCredential | None = None,
        sends_cache_key: bool = True,
    ) -> None:
        self.name = model
        self.client = client
        self.provider = provider
        # Whether the API takes ``prompt_cache_key`` (an API that does not may refuse it).
        self.sends_cache_key = sends_cache_key
        self._credential = credential  # owned here, closed with the client

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        usage = Usage(model=self.name)
        send_key = cache_key is not None and self.sends_cache_key
        try:
            stream = await self.client.chat.completions.create(
                model=self.name,
                messages=_to_openai(messages),
                stream=True,
                stream_options={"include_usage": True},
                prompt_cache_key=cache_key if send_key else openai.omit,
            )
            # ``async with`` releases the HTTP response also when the consumer stops early.
            async with stream:
                async for chunk in stream:
                    # The model that answered (Azure names the model behind the deployment).
                    usage = replace(usage, model=chunk.model or usage.model)
                    if chunk.usage is not None:
                        details = chunk.usage.prompt_tokens_details
                        usage = Usage(
                            model=usage.model,
                            prompt_tokens=chunk.usage.prompt_tokens,
                            completion_tokens=chunk.usage.completion_tokens,
                            cached_tokens=details.cached_tokens if details else None,
                        )
                    # Azure sends chunks with no choices (content-filter results); only the
                    # first choice is the answer (we never ask for n > 1).
                    for choice in chunk.choices:
                        if choice.index == 0 and choice.delta.content:
                            yield choice.delta.content
        except (openai.OpenAIError, ClientAuthenticationError) as exc:
            raise self._translate(exc) from None
        yield usage

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        try:
            # No retries: a short call is not worth waiting for (the caller has a fallback).
            client = self.client.with_options(max_retries=0, timeout=timeout_s)
            completion = await client.chat.completions.create(
                model=self.name,
                messages=_to_openai(messages),
                # max_completion_tokens: what current models accept (max_tokens is refused by
                # reasoning models); OpenAI-compatible servers ignore or honour it.
                max_completion_tokens=max_tokens,
            )
        except (openai.OpenAIError, ClientAuthenticationError) as exc:
            raise self._translate(exc) from None
        choices = completion.choices
        return (choices[0].message.content or "") if choices else ""

    def _translate(self, exc: Exception) -> ModelError | RateLimited:
        fields: dict[str, object] = {"provider": self.provider, "error": type(exc).__name__}
        if isinstance(exc, openai.APIStatusError):
            fields |= {"upstreamStatus": exc.status_code, "upstreamRequestId": exc.request_id}
        log.warning("model_call_failed %s", json.dumps(fields), extra={"parley": fields})
        if isinstance(exc, openai.RateLimitError):
            return RateLimited(retry_after_s=retry_after_seconds(exc.response.headers))
        if isinstance(exc, openai.APITimeoutError):
            return ModelError("The model did not answer in time.")
        if isinstance(exc, openai.APIConnectionError):
            return ModelError("The model service could not be reached.")
        if isinstance(exc, ClientAuthenticationError):
            return ModelError("The model service could not be authenticated.")
        return ModelError()

    async def close(self) -> None:
        await self.client.close()
        if self._credential is not None:
            await self._credential.close()


def _to_openai(messages: Sequence[ModelMessage]) -> list[ChatCompletionMessageParam]:
    converted: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message["role"] == "system":
            converted.append({"role": "system", "content": message["content"]})
        elif message["role"] == "user":
            converted.append({"role": "user", "content": message["content"]})
        else:
            converted.append({"role": "assistant", "content": message["content"]})
    return converted


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> int:
    """Whole seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date),
    within 1..MAX_RETRY_AFTER_S; DEFAULT_RETRY_AFTER_S when absent or unreadable."""
    seconds: float | None = None
    if (millis := headers.get("retry-after-ms")) is not None:
        seconds = _number(millis, 1000)
    if seconds is None and (value := headers.get("retry-after")) is not None:
        seconds = _number(value, 1)
        if seconds is None:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                seconds = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER_S
    return min(max(math.ceil(seconds), 1), MAX_RETRY_AFTER_S)


def _number(value: str, divisor: int) -> float | None:
    try:
        return float(value) / divisor
    except ValueError:
        return None


# ---- construction ---------------------------------------------------------------------------


def make_azure_model(
    settings: Settings, *, credential: AsyncTokenCredential | None = None
) -> OpenAIChatModel:
    from azure.identity.aio import get_bearer_token_provider

    assert settings.azure_openai_endpoint and settings.azure_openai_deployment  # config checks
    credential = credential or azure_credential(settings)
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=settings.azure_openai_endpoint,
        azure_deployment=settings.azure_openai_deployment,
        api_version=settings.azure_openai_api_version,
        # An Entra token on every request (cached and refreshed by azure-identity); never a key.
        azure_ad_token_provider=get_bearer_token_provider(credential, AZURE_OPENAI_SCOPE),
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )
    return OpenAIChatModel(
        client,
        settings.azure_openai_deployment,
        provider="azure-openai",
        credential=credential,
        sends_cache_key=azure_takes_cache_key(settings.azure_openai_api_version),
    )


def azure_takes_cache_key(api_version: str) -> bool:
    """Whether an Azure OpenAI API version takes ``prompt_cache_key``: the v1 API (``v1``,
    ``preview``) does; the dated versions this code was written against do not document it,
    so it is not sent to them."""
    return api_version in ("v1", "preview")


def make_compatible_model(settings: Settings) -> OpenAIChatModel:
    client = openai.AsyncOpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key or KEYLESS_PLACEHOLDER,
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )
    return OpenAIChatModel(client, settings.openai_model, provider="openai")


def make_openai_model(settings: Settings) -> ChatModel:
    """The model ``settings.resolved_llm_provider`` names (never echo: see shared.llm)."""
    if settings.resolved_llm_provider == "azure-openai":
        return make_azure_model(settings)
    return make_compatible_model(settings)
