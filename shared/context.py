"""The context window: what the model sees, read from the same session data the UI reads.

Token counts must work offline (no tokenizer downloads), so they are estimated from UTF-8
bytes; see ``estimate_tokens`` for the error bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from shared.llm.base import ModelMessage
from shared.models import Role


class Said(Protocol):
    """Anything with a role and a text: stored messages, and what tests build."""

    @property
    def role(self) -> Role: ...

    @property
    def content(self) -> str: ...


S = TypeVar("S", bound=Said)

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


def trim_history(history: Sequence[S], *, max_messages: int, max_tokens: int) -> list[S]:
    """The newest messages that fit both limits, oldest first. The newest message is always
    kept, whole, even if it alone exceeds the budget; no message is ever split."""
    kept: list[S] = []
    used = 0
    for message in reversed(history):
        cost = estimate_tokens(message.content)
        if kept and (len(kept) >= max_messages or used + cost > max_tokens):
            break
        kept.append(message)
        used += cost
    kept.reverse()
    return kept


def model_messages(
    system_prompt: str,
    history: Sequence[Said],
    *,
    max_messages: int,
    max_tokens: int,
) -> list[ModelMessage]:
    """System prompt first, then the trimmed history, newest last (it ends with the new user
    message). The system prompt counts against ``max_tokens``; ``max_messages`` counts the
    history only, new message included.

    The window starts at a user message: an answer whose question fell out of the window is
    dropped too, because it means little alone and strict chat templates (many local model
    servers) refuse a conversation that does not start with the user.
    """
    budget = max(max_tokens - estimate_tokens(system_prompt), 0)
    window = trim_history(history, max_messages=max_messages, max_tokens=budget)
    while len(window) > 1 and window[0].role == "assistant":
        window = window[1:]
    messages: list[ModelMessage] = [{"role": "system", "content": system_prompt}]
    messages += [{"role": m.role, "content": m.content} for m in window]
    return messages
