"""The echo model (``docs/configuration.md``, "The model"): for running and testing without
any model service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from shared.llm.base import ModelMessage, Usage


class EchoModel:
    """Replies exactly ``echo[N]: <message>``, N being the earlier messages it was given."""

    name = "echo"

    @staticmethod
    def reply(messages: Sequence[ModelMessage]) -> str:
        conversation = [m for m in messages if m["role"] != "system"]
        earlier, latest = conversation[:-1], conversation[-1]
        return f"echo[{len(earlier)}]: {latest['content']}"

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        # Word by word, so streaming is exercised even without a model service.
        words = self.reply(messages).split(" ")
        for index, word in enumerate(words):
            yield word if index == len(words) - 1 else word + " "
        # It reads no prompt, so it reports none: usage estimates it (shared/usage.py), and the
        # budgets work with the echo model as with a real one.
        yield Usage(model=self.name, completion_tokens=len(words))

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        # The same rule, in one piece: a title call is answered deterministically.
        return self.reply(messages)

    async def close(self) -> None:
        return None
