"""The benchmark's model server caches as Azure OpenAI documents prompt caching: nothing under
1,024 prompt tokens, then the identical prefix in 128-token steps, per cache key; and it speaks
the OpenAI streaming protocol the service's adapter reads (usage with cached_tokens)."""

from __future__ import annotations

import asyncio

from bench.prompt_cache import PrefixCache, caching_model_server, input_cost, tokens_of
from shared.config import load_settings
from shared.llm import make_model
from shared.llm.base import ModelMessage, Usage


def tokens(n: int, tag: str = "t") -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


def test_no_cache_below_1024_tokens_then_128_token_steps() -> None:
    cache = PrefixCache()
    assert cache.lookup_and_store("k", tokens(1023)) == 0
    assert cache.lookup_and_store("k", tokens(1023)) == 0  # never cached: too short
    assert cache.lookup_and_store("k", tokens(1300)) == 0  # first seen at 1,024+
    assert cache.lookup_and_store("k", tokens(1300)) == 1280  # 1,024 + 2 x 128
    assert cache.lookup_and_store("k", tokens(2000)) == 1280
    assert cache.lookup_and_store("k", tokens(2000)) == 1920


def test_a_changed_beginning_caches_nothing_and_keys_are_separate() -> None:
    cache = PrefixCache()
    cache.lookup_and_store("k", tokens(3000))
    changed = ["other", *tokens(3000)[1:]]
    assert cache.lookup_and_store("k", changed) == 0
    assert cache.lookup_and_store("another key", tokens(3000)) == 0
    # A change after the first 1,024 tokens keeps the whole 128-token steps before it.
    late = [*tokens(3000)[:1500], "x", *tokens(3000)[1501:]]
    assert cache.lookup_and_store("k", late) == 1408


def test_the_adapter_reads_the_servers_cached_tokens() -> None:
    long_text = "word " * 1200  # 6,000 bytes: 1,500 tokens
    messages: list[ModelMessage] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": long_text},
    ]
    expected = len(tokens_of([dict(m) for m in messages]))

    async def twice(base_url: str) -> list[Usage]:
        model = make_model(load_settings({"OPENAI_BASE_URL": base_url, "LLM_MAX_RETRIES": "0"}))
        found: list[Usage] = []
        try:
            for _ in range(2):
                async for piece in model.stream(messages, cache_key="parley-test"):
                    if isinstance(piece, Usage):
                        found.append(piece)
        finally:
            await model.close()
        return found

    with caching_model_server() as url:
        first, second = asyncio.run(twice(url))
    assert (first.prompt_tokens, first.cached_tokens) == (expected, 0)
    assert second.prompt_tokens == expected
    assert second.cached_tokens == expected - (expected - 1024) % 128
    assert input_cost(1_000_000, 0) == 2.0 and input_cost(1_000_000, 1_000_000) == 0.5
