"""The echo model (API.md): for running and testing without any model service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from shared.llm.base import ModelMessage, Usage


class EchoModel:
    """Replies exactly ``echo[N]: <message>``, N being the earlier messages it was given."""

    name = "echo"

    async def stream(self, messages: Sequence[ModelMessage]) -> AsyncIterator[str | Usage]:
        conversation = [m for m in messages if m["role"] != "system"]
        earlier, latest = conversation[:-1], conversation[-1]
        reply = f"echo[{len(earlier)}]: {latest['content']}"
        # Word by word, so streaming is exercised even without a model service.
        words = reply.split(" ")
        for index, word in enumerate(words):
            yield word if index == len(words) - 1 else word + " "
        yield Usage(model=self.name, prompt_tokens=0, completion_tokens=len(words))

    async def close(self) -> None:
        return None
