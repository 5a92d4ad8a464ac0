"""The context window: what the model sees, read from the same session data the UI reads.

The window keeps its beginning while it can (``window_start``, "blocks"): consecutive calls of a
conversation then send the same system prompt and the same earlier messages, byte for byte,
and the provider's prompt cache serves that prefix at a discount (Azure OpenAI: identical
prefixes of 1,024 tokens and more, in 128-token steps). ``docs/performance.md`` measures it.

Token counts must work offline (no tokenizer downloads), so they are estimated from UTF-8
bytes; see ``estimate_tokens`` for the error bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.config import WindowPolicy
from shared.llm.base import ModelMessage
from shared.models import Role


class Said(Protocol):
    """Anything with a role and a text: stored messages, and what tests build."""

    @property
    def role(self) -> Role: ...

    @property
    def content(self) -> str: ...


# Per-message framing in the chat format (role, separators): OpenAI documents 3-4 tokens.
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """An upper-leaning estimate of the tokens of ``text``: one token per 3 UTF-8 bytes, plus
    the message's framing.

    Why bytes: the count must work offline (no tokenizer files at run time) and be the same for
    every provider, and byte-level BPE tokenizers (cl100k, o200k, Llama 3) never make a token
    of less than one byte. Error bound, per message (framing aside), for ``n`` UTF-8 bytes:

    - over-estimate: English prose averages about 4 bytes per token (estimate about 1.3x the
      truth), source code about 3-3.5 (1.0-1.2x); a token is at most a few dozen bytes, so
      the estimate can only be high by trimming history a little early;
    - under-estimate: only text that tokenizes below 3 bytes per token (emoji, rare symbols,
      random strings) and never by more than 3x, since a token holds at least one byte:
      the truth is at most ``n``. CJK text is about 3 bytes (one character) per token: close.

    So a trimmed window really holds at most 3x MAX_CONTEXT_TOKENS (24k with the default 8000),
    within the context of any current chat model, and usually 0.75-1.0x of it. (A new message
    larger than the whole budget is still sent whole; MAX_MESSAGE_CHARS bounds it.)
    """
    return -(-len(text.encode("utf-8")) // 3) + MESSAGE_OVERHEAD_TOKENS


# After a block drop the window keeps at least this fraction of the budget (tokens, or messages
# when MAX_HISTORY_MESSAGES binds first) whenever the conversation's exchanges allow it; between
# drops it grows back to the whole budget. Its average is so about (1 + LOW_WATER) / 2 of the
# budget: 0.8 (docs/configuration.md, "The context window"; docs/performance.md measures it).
LOW_WATER = 0.6


class Spoken(Said, Protocol):
    """A stored message: its seq, and on an answer the seq its window started at."""

    @property
    def seq(self) -> int: ...

    @property
    def context_from(self) -> int | None: ...


@dataclass(frozen=True)
class Window:
    """What the model is sent, and the seq of the first message of its history (stored with
    the answer as ``context_from``, so that the next call can keep the same beginning)."""

    messages: list[ModelMessage]
    start_seq: int | None


def previous_start(history: Sequence[Spoken]) -> int | None:
    """The start of the window the newest answer in ``history`` was written from, if known."""
    for message in reversed(history):
        if message.role == "assistant":
            return message.context_from
    return None


def window_start(
    history: Sequence[Spoken],
    *,
    max_messages: int,
    budget: int,
    keep_from: int | None,
    policy: WindowPolicy = "blocks",
) -> int:
    """The index in ``history`` where the window starts.

    ``sliding``: as many of the newest messages as fit both limits, one more dropped each turn
    once full; the prompt's beginning then changes on every call. ``blocks``: the window of the
    previous answer (``keep_from``, a seq) is kept while it still fits with the new messages, so
    consecutive calls share everything but their newest messages (a prompt cache keeps it);
    once it is full a block of the oldest messages goes at once, down to the smallest window that
    still holds ``LOW_WATER`` of the budget. Either way the window starts at a user message, no
    message is split and the newest one is always kept, whole, even alone over the budget.
    """
    n = len(history)
    if n == 0:
        return 0
    tokens = [0] * (n + 1)  # tokens[i]: the estimate of history[i:]
    for i in range(n - 1, -1, -1):
        tokens[i] = tokens[i + 1] + estimate_tokens(history[i].content)

    def fits(i: int) -> bool:
        return n - i <= max_messages and tokens[i] <= budget

    starts = [i for i in range(n) if history[i].role == "user" and fits(i)]
    if not starts:
        return n - 1  # the newest message alone, whole
    sliding = starts[0]
    if policy == "sliding" or keep_from is None:
        return sliding  # nothing to keep: as much as fits
    kept = next((i for i in starts if history[i].seq == keep_from), None)
    if kept is not None:
        return kept  # the same beginning as the previous call
    if any(m.seq == keep_from for m in history[:sliding]):
        # Full: drop a block of the oldest, down to the low-water mark.
        enough = [
            i
            for i in starts
            if tokens[i] >= LOW_WATER * budget or n - i >= LOW_WATER * max_messages
        ]
        return enough[-1] if enough else sliding
    return sliding  # the previous start is out of reach (or no longer a user message)


def context_window(
    system_prompt: str,
    history: Sequence[Spoken],
    *,
    max_messages: int,
    max_tokens: int,
    policy: WindowPolicy = "blocks",
) -> Window:
    """System prompt first, then the window of ``history``, newest last (it ends with the new
    user message). The system prompt counts against ``max_tokens``; ``max_messages`` counts the
    history only, new message included. The previous window's start is read from the newest
    answer in ``history`` (``context_from``)."""
    budget = max(max_tokens - estimate_tokens(system_prompt), 0)
    start = window_start(
        history,
        max_messages=max_messages,
        budget=budget,
        keep_from=previous_start(history),
        policy=policy,
    )
    window = history[start:]
    messages: list[ModelMessage] = [{"role": "system", "content": system_prompt}]
    messages += [{"role": m.role, "content": m.content} for m in window]
    return Window(messages, window[0].seq if window else None)
