"""The echo model (``docs/configuration.md``, "The model"): for running and testing without
any model service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from shared.llm.base import ModelMessage, Usage


def echo_prefix(earlier: int) -> str:
    return f"echo[{earlier}]:"


def echo_reply(earlier: int, message: str) -> str:
    """The echo model's answer to ``message`` after ``earlier`` messages: ``echo[N]:`` on a line
    of its own, then the message, so that a message that opens with a Markdown table or list
    still renders as one."""
    return f"{echo_prefix(earlier)}\n{message}"


class EchoModel:
    """Replies exactly ``echo[N]:``, a line break and the message, N being the earlier messages
    it was given; a title call (asked for one line) gets ``echo[N]: <message>``."""

    name = "echo"

    @staticmethod
    def _read(messages: Sequence[ModelMessage]) -> tuple[int, str]:
        conversation = [m for m in messages if m["role"] != "system"]
        earlier, latest = conversation[:-1], conversation[-1]
        return len(earlier), latest["content"]

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        # The prefix line, then word by word, so streaming is exercised even without a model
        # service.
        earlier, message = self._read(messages)
        yield echo_prefix(earlier) + "\n"
        words = message.split(" ")
        for index, word in enumerate(words):
            yield word if index == len(words) - 1 else word + " "
        # It reads no prompt, so it reports none: usage estimates it (shared/usage/), and the
        # budgets work with the echo model as with a real one.
        yield Usage(model=self.name, completion_tokens=1 + len(words))

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        # A title call, answered deterministically on the one line the title prompt asks for.
        earlier, message = self._read(messages)
        return f"{echo_prefix(earlier)} {message}"

    async def close(self) -> None:
        return None
