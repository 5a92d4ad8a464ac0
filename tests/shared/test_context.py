"""The context window: both limits, whole messages only, the new message always kept."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from shared.config import WindowPolicy
from shared.context import (
    LOW_WATER,
    MESSAGE_OVERHEAD_TOKENS,
    Window,
    context_window,
    estimate_tokens,
)
from shared.models import MessageRecord, Role

AT = datetime(2026, 11, 22, tzinfo=UTC)


def model_messages(
    system_prompt: str, history: list[MessageRecord], *, max_messages: int, max_tokens: int
) -> list[dict[str, str]]:
    """The sliding window's messages (``context_window`` with nothing to keep)."""
    window = context_window(
        system_prompt, history, max_messages=max_messages, max_tokens=max_tokens, policy="sliding"
    )
    return [dict(m) for m in window.messages]


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
    kept = model_messages("S", history, max_messages=3, max_tokens=10_000)
    assert [m["content"] for m in kept] == ["S", "u2", "a2", "u3"]


def test_token_limit_is_inclusive_and_never_splits() -> None:
    history = conversation(
        text_of_tokens(30, "a"), text_of_tokens(30, "b"), text_of_tokens(40, "c")
    )
    system = "S"  # 1 + 4 = 5 tokens
    exactly = model_messages(system, history, max_messages=100, max_tokens=105)
    assert [m["content"][0] for m in exactly[1:]] == ["a", "b", "c"]
    one_short = model_messages(system, history, max_messages=100, max_tokens=104)
    # b (an answer) alone cannot start the window: c goes alone.
    assert [m["content"][0] for m in one_short[1:]] == ["c"]
    # Kept messages are whole: the same text.
    assert [m["content"] for m in exactly[1:]] == [m.content for m in history]


def test_a_message_over_the_budget_is_kept_whole_when_newest() -> None:
    history = conversation("short", "reply", text_of_tokens(500))
    for policy in ("blocks", "sliding"):
        window = context_window("S", history, max_messages=10, max_tokens=100, policy=policy)
        assert [m["content"] for m in window.messages[1:]] == [history[-1].content]
        assert window.start_seq == 3


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


# ---- a window the prompt cache can keep ---------------------------------------------------

SYSTEM = "You are a helpful assistant."
BUDGET_TOKENS = 2000  # MAX_CONTEXT_TOKENS of these tests, the system prompt included


def exchange_sizes(turn: int) -> tuple[int, int]:
    """A question and an answer of varying lengths (deterministic), in estimated tokens."""
    return 20 + (turn * 37) % 60, 80 + (turn * 53) % 160


def run_conversation(
    turns: int, *, policy: WindowPolicy, max_messages: int = 500
) -> list[tuple[Window, list[MessageRecord]]]:
    """Each call's window and the history it was made from, answers storing ``context_from``
    as the service does."""
    stored: list[MessageRecord] = []
    calls: list[tuple[Window, list[MessageRecord]]] = []
    for turn in range(1, turns + 1):
        question, answer = exchange_sizes(turn)
        seq = len(stored) + 1
        stored.append(message(seq, "user", text_of_tokens(question, "q")))
        window = context_window(
            SYSTEM, stored, max_messages=max_messages, max_tokens=BUDGET_TOKENS, policy=policy
        )
        calls.append((window, list(stored)))
        reply = message(seq + 1, "assistant", text_of_tokens(answer, "a"))
        stored.append(reply.model_copy(update={"context_from": window.start_seq}))
    return calls


def message(seq: int, role: Role, content: str) -> MessageRecord:
    return MessageRecord(session_id="s", seq=seq, role=role, content=content, timestamp=AT)


def history_tokens(window: Window) -> int:
    return sum(estimate_tokens(m["content"]) for m in window.messages[1:])


def budget() -> int:
    return BUDGET_TOKENS - estimate_tokens(SYSTEM)


def test_consecutive_calls_share_their_beginning_until_a_block_drop() -> None:
    calls = run_conversation(120, policy="blocks")
    drops = []
    for turn, ((before, _), (after, _)) in enumerate(itertools.pairwise(calls), 2):
        if after.start_seq == before.start_seq:
            # Byte for byte: the previous prompt is where this one starts.
            assert after.messages[: len(before.messages)] == before.messages
            assert len(after.messages) == len(before.messages) + 2
        else:
            drops.append(turn)
            assert after.start_seq is not None and before.start_seq is not None
            assert after.start_seq > before.start_seq  # a block of the oldest went at once
            assert after.messages[0] == before.messages[0]  # the system prompt never changes
    # Full from about turn 10, then a drop every few turns, not one every turn.
    assert drops and drops[0] >= 8
    gaps = [b - a for a, b in itertools.pairwise(drops)]
    assert min(gaps) >= 3, gaps


def test_the_sliding_window_changes_its_beginning_every_turn_once_full() -> None:
    calls = run_conversation(60, policy="sliding")
    starts = [window.start_seq for window, _ in calls[30:]]
    moved = [b != a for a, b in itertools.pairwise(starts)]
    assert sum(moved) >= 0.8 * len(moved)


def test_the_window_starts_at_a_user_message_and_ends_with_the_new_one() -> None:
    for policy in ("blocks", "sliding"):
        for window, history in run_conversation(80, policy=policy):
            assert window.messages[0] == {"role": "system", "content": SYSTEM}
            assert window.messages[1]["role"] == "user"
            assert window.messages[-1]["content"] == history[-1].content
            assert history_tokens(window) <= budget()


def test_once_full_the_model_sees_at_least_the_low_water_mark_and_most_of_the_budget() -> None:
    calls = run_conversation(200, policy="blocks")
    full = next(i for i, (w, h) in enumerate(calls) if w.start_seq != h[0].seq)
    kept = [history_tokens(window) for window, _ in calls[full:]]
    assert min(kept) >= LOW_WATER * budget()
    assert sum(kept) / len(kept) >= 0.75 * budget()


def test_the_message_limit_drops_in_blocks_too() -> None:
    # Short messages: 20 of them fit the token budget, so the message limit binds first.
    stored: list[MessageRecord] = []
    windows: list[Window] = []
    for turn in range(1, 61):
        stored.append(message(2 * turn - 1, "user", "a short question"))
        window = context_window(SYSTEM, stored, max_messages=20, max_tokens=BUDGET_TOKENS)
        windows.append(window)
        answer = message(2 * turn, "assistant", "a short answer")
        stored.append(answer.model_copy(update={"context_from": window.start_seq}))
    counts = [len(window.messages) - 1 for window in windows[10:]]
    assert max(counts) <= 20 and min(counts) >= LOW_WATER * 20
    starts = [window.start_seq for window in windows[10:]]
    assert len(set(starts)) <= len(starts) / 4 + 1  # each kept for four calls


def test_an_answer_without_a_window_start_gets_as_much_as_fits() -> None:
    # Conversations stored before windows were kept: the first call takes the sliding window.
    history = conversation(*[text_of_tokens(300, c) for c in "abcdefghijk"])
    blocks = context_window(SYSTEM, history, max_messages=100, max_tokens=BUDGET_TOKENS)
    sliding = context_window(
        SYSTEM, history, max_messages=100, max_tokens=BUDGET_TOKENS, policy="sliding"
    )
    assert blocks == sliding
