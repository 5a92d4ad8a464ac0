"""The context window: what the model sees, read from the same session data the UI reads.

Token counts must work offline (no tokenizer downloads), so they are estimated from UTF-8
bytes; see ``estimate_tokens`` for the error bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.llm.base import ModelMessage
from shared.models import ContextMessage

# Per-message framing in the chat format (role, separators): OpenAI documents 3-4 tokens.
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """An upper-leaning estimate of the tokens of ``text``: one token per 3 UTF-8 bytes.

    BPE tokenizers (cl100k/o200k) average about 4 bytes per token on English prose and about
    3 bytes (one CJK character) per token on CJK text, so this overestimates English by about a
    third and is close for CJK. It can underestimate only for text that tokenizes worse than
    3 bytes per token (long runs of emoji or random symbols), by at most a factor of 3.
    Overestimating only trims history a little early; the model's own limit is far above
    MAX_CONTEXT_TOKENS's default.
    """
    return -(-len(text.encode("utf-8")) // 3) + MESSAGE_OVERHEAD_TOKENS


def trim_history(
    history: Sequence[ContextMessage], *, max_messages: int, max_tokens: int
) -> list[ContextMessage]:
    """The newest messages that fit both limits, oldest first. The newest message is always
    kept, whole, even if it alone exceeds the budget; no message is ever split."""
    kept: list[ContextMessage] = []
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
    history: Sequence[ContextMessage],
    *,
    max_messages: int,
    max_tokens: int,
) -> list[ModelMessage]:
    """System prompt first, then the trimmed history, newest last (it ends with the new user
    message)."""
    budget = max(max_tokens - estimate_tokens(system_prompt), 0)
    window = trim_history(history, max_messages=max_messages, max_tokens=budget)
    messages: list[ModelMessage] = [{"role": "system", "content": system_prompt}]
    messages += [{"role": m.role, "content": m.content} for m in window]
    return messages
