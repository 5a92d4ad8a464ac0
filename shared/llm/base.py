"""The model protocol: a chat model streams text for a list of messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict


class ModelMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Usage:
    """The last item a stream yields: which model answered and what it cost."""

    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Of the prompt tokens, those the provider's prompt cache served (billed at a discount).
    cached_tokens: int | None = None


class ChatModel(Protocol):
    name: str

    def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        """Yield the answer's text in pieces, then one Usage. Raises shared.errors.ModelError
        (or RateLimited) when the model cannot answer. ``cache_key`` names the conversation to
        providers whose prompt cache routes by it (``prompt_cache_key``); others ignore it."""
        ...

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        """One short answer in one piece, with its own token limit and timeout (titles).
        Raises ModelError (or RateLimited) when the model cannot answer in time."""
        ...

    async def close(self) -> None: ...
