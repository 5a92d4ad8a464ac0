"""A chat turn fits in Azure's 230 s for an HTTP answer: the rule, the settings that break it, and
the model's deadline that makes the count true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from shared.config import ConfigError, load_settings
from shared.errors import ModelError
from shared.llm.base import ModelMessage, Usage
from shared.models import ChatRequest
from shared.storage.sqlite import SqliteStore
from shared.time_limits import HTTP_RESPONSE_LIMIT_S, model_budget_s, turn_budget_s
from tests.support.conversations import Conversations


def test_the_model_budget_counts_every_attempt_and_the_sdks_backoff() -> None:
    assert model_budget_s(60, 0) == 60
    # Pauses of 0.5, 1, 2, 4, 8, 8 s (the openai SDK's, capped at 8 s).
    assert model_budget_s(10, 6) == 70 + 0.5 + 1 + 2 + 4 + 8 + 8


def test_the_defaults_fit_in_230_s() -> None:
    settings = load_settings({})
    budget = turn_budget_s(
        llm_timeout_s=settings.llm_timeout_s,
        llm_max_retries=settings.llm_max_retries,
        store_timeout_s=settings.store_timeout_s,
        title_timeout_s=settings.title_timeout_s,
    )
    assert budget == 20 + 181.5 + 20 <= HTTP_RESPONSE_LIMIT_S


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"LLM_TIMEOUT_S": "70"}, "LLM_TIMEOUT_S=70"),
        ({"LLM_MAX_RETRIES": "4"}, "LLM_MAX_RETRIES=4"),
        ({"LLM_MAX_RETRIES": "0", "LLM_TIMEOUT_S": "120", "STORE_TIMEOUT_S": "60"}, "STORE_"),
    ],
)
def test_settings_that_cannot_answer_in_time_are_refused_naming_them(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert "230s" in message and named in message
    for name in ("LLM_TIMEOUT_S", "LLM_MAX_RETRIES", "STORE_TIMEOUT_S"):
        assert name in message


def test_a_long_timeout_fits_with_fewer_retries() -> None:
    assert load_settings({"LLM_TIMEOUT_S": "150", "LLM_MAX_RETRIES": "0"}).llm_timeout_s == 150


class TricklingModel:
    """Sends a piece, then nothing (a stream that never ends): each read could be within the
    SDK's per-read timeout; only the answer's whole deadline stops it."""

    name = "trickling"

    def __init__(self) -> None:
        self.never = asyncio.Event()

    async def stream(self, messages: Sequence[ModelMessage]) -> AsyncIterator[str | Usage]:
        yield "a start"
        await self.never.wait()

    async def close(self) -> None:
        return None


def test_the_answer_stops_at_the_models_whole_deadline(tmp_path: Path) -> None:
    # One attempt of 0.2 s: the deadline under test, not a wait for time to pass.
    settings = load_settings({"LLM_TIMEOUT_S": "0.2", "LLM_MAX_RETRIES": "0"})

    async def scenario() -> tuple[type[BaseException], float]:
        store = SqliteStore(tmp_path / "c.db")
        service = Conversations(store, TricklingModel(), settings)
        turn = await service.begin_turn("a@example.com", ChatRequest(message="hello"))
        started = time.monotonic()
        with pytest.raises(ModelError) as caught:
            # The bound only turns a hang (without the deadline) into a failure.
            await asyncio.wait_for(turn.result(), timeout=5)
        return type(caught.value), time.monotonic() - started

    error, took = asyncio.run(scenario())
    assert error is ModelError
    assert took < 5  # never waits for the stream that does not end
