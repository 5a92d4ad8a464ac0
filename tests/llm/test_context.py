"""The context window: both limits, whole messages only, the new message always kept."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.context import (
    MESSAGE_OVERHEAD_TOKENS,
    estimate_tokens,
    model_messages,
    trim_history,
)
from shared.models import MessageRecord, Role

AT = datetime(2026, 11, 22, tzinfo=UTC)


def conversation(*contents: str) -> list[MessageRecord]:
    """Alternating user/assistant messages, user first, seq from 1."""
    roles: tuple[Role, Role] = ("user", "assistant")
    return [
        MessageRecord(session_id="s", seq=i + 1, role=roles[i % 2], content=text, timestamp=AT)
        for i, text in enumerate(contents)
    ]


def text_of_tokens(tokens: int, char: str = "x") -> str:
    """A message whose estimate is exactly ``tokens``."""
    return char * (3 * (tokens - MESSAGE_OVERHEAD_TOKENS))


def test_estimate_is_utf8_bytes_over_three_rounded_up_plus_framing() -> None:
    assert estimate_tokens("") == MESSAGE_OVERHEAD_TOKENS
    assert estimate_tokens("abc") == 1 + MESSAGE_OVERHEAD_TOKENS
    assert estimate_tokens("abcd") == 2 + MESSAGE_OVERHEAD_TOKENS
    assert estimate_tokens("日本") == 2 + MESSAGE_OVERHEAD_TOKENS  # 6 bytes
    assert estimate_tokens("😀") == 2 + MESSAGE_OVERHEAD_TOKENS  # 4 bytes


def test_message_limit_keeps_the_newest() -> None:
    history = conversation("u1", "a1", "u2", "a2", "u3")
    kept = trim_history(history, max_messages=3, max_tokens=10_000)
    assert [m.seq for m in kept] == [3, 4, 5]


def test_token_limit_is_inclusive_and_never_splits() -> None:
    history = conversation(
        text_of_tokens(30, "a"), text_of_tokens(30, "b"), text_of_tokens(40, "c")
    )
    exactly = trim_history(history, max_messages=100, max_tokens=70)
    assert [m.seq for m in exactly] == [2, 3]
    one_short = trim_history(history, max_messages=100, max_tokens=69)
    assert [m.seq for m in one_short] == [3]
    # Kept messages are whole: same objects, same text.
    assert exactly == history[1:]


def test_a_message_over_the_budget_is_kept_whole_when_newest() -> None:
    history = conversation("short", "reply", text_of_tokens(500))
    kept = trim_history(history, max_messages=10, max_tokens=100)
    assert kept == history[2:]


def test_model_messages_system_first_new_message_last_and_within_both_limits() -> None:
    system = "Be brief."  # 3 + 4 = 7 tokens of the budget
    history = conversation("u1", "a1", "u2", "a2", "u3", "a3", "u4")
    by_count = model_messages(system, history, max_messages=3, max_tokens=10_000)
    assert by_count == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "u3"},
        {"role": "assistant", "content": "a3"},
        {"role": "user", "content": "u4"},
    ]
    # The system prompt takes its share: 7 + 3 x 5 = 22 fits, one token less drops to one.
    assert len(model_messages(system, history, max_messages=10, max_tokens=22)) == 4
    by_tokens = model_messages(system, history, max_messages=10, max_tokens=21)
    assert by_tokens == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "u4"},
    ]


def test_window_never_starts_with_an_answer_whose_question_fell_out() -> None:
    history = conversation("u1", "a1", "u2", "a2", "u3")
    messages = model_messages("S", history, max_messages=4, max_tokens=10_000)
    # The last four are a1 u2 a2 u3; a1 without u1 is dropped.
    assert [m["content"] for m in messages] == ["S", "u2", "a2", "u3"]


def test_new_message_kept_even_when_the_system_prompt_fills_the_budget() -> None:
    history = conversation("u1", "a1", "the new one")
    messages = model_messages("p" * 3000, history, max_messages=20, max_tokens=100)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[-1]["content"] == "the new one"
