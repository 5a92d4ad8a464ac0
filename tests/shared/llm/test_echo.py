"""The echo model's answer (shared/llm/echo.py): ``echo[N]:`` on a line of its own, so that a
message opening with a Markdown table or list still renders as one (marked, as the web client
uses it, renders ``echo[0]: | a | b |`` as a paragraph, and ``echo[0]:\\n| a | b |`` as a
table)."""

from __future__ import annotations

import asyncio

from shared.llm.base import ModelMessage, Usage
from shared.llm.echo import EchoModel

TABLE = "| a | b |\n|---|---|\n| 1 | 2 |"
MESSAGES: list[ModelMessage] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": TABLE},
]


async def _streamed(messages: list[ModelMessage]) -> tuple[list[str], list[Usage]]:
    pieces: list[str] = []
    usages: list[Usage] = []
    async for piece in EchoModel().stream(messages):
        if isinstance(piece, Usage):
            usages.append(piece)
        else:
            pieces.append(piece)
    return pieces, usages


def test_the_prefix_stands_on_a_line_of_its_own() -> None:
    pieces, usages = asyncio.run(_streamed(MESSAGES))
    assert "".join(pieces) == "echo[2]:\n" + TABLE
    # The prefix is a piece of its own, then the message word by word.
    assert pieces[0] == "echo[2]:\n"
    assert [u.completion_tokens for u in usages] == [len(pieces)]


def test_a_title_call_is_answered_on_one_line() -> None:
    # The title prompt asks for one line: the prefix stays on it.
    title = asyncio.run(EchoModel().complete(MESSAGES[:2], max_tokens=20, timeout_s=1.0))
    assert title == "echo[0]: hi"
