"""``Turn.finish``: what a streamed response whose client has gone waits for before its
invocation ends (``functions/chat.py``, ``AnswerStream``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from shared.models import MessageRecord
from shared.turns import Turn

AT = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)


def record(seq: int, role: str, content: str) -> MessageRecord:
    return MessageRecord.model_validate(
        {"session_id": "s1", "seq": seq, "role": role, "content": content, "timestamp": AT}
    )


def test_finish_starts_an_answer_the_stream_never_asked_for_and_waits_for_it() -> None:
    async def scenario() -> tuple[bool, list[str]]:
        stored: list[str] = []

        async def answer(queue: asyncio.Queue[str | None]) -> MessageRecord:
            stored.append("the answer")
            return record(2, "assistant", "the answer")

        # The client left before the stream read a single delta: nothing started the answer.
        turn = Turn("s1", "t", record(1, "user", "q"), _answer=answer)
        return await turn.finish(5), stored

    assert asyncio.run(scenario()) == (True, ["the answer"])


def test_finish_waits_for_the_title_too() -> None:
    async def scenario() -> tuple[bool, str]:
        gate = asyncio.Event()

        async def answer(queue: asyncio.Queue[str | None]) -> MessageRecord:
            return record(2, "assistant", "a")

        async def title() -> str | None:
            await gate.wait()
            return "A title"

        turn = Turn("s1", "t", record(1, "user", "q"), _answer=answer, _title=title())
        finishing = asyncio.create_task(turn.finish(5))
        await asyncio.sleep(0)  # one turn of the loop: the answer is done, the title is not
        assert not finishing.done()
        gate.set()
        return await finishing, await turn.model_title() or ""

    assert asyncio.run(scenario()) == (True, "A title")


def test_finish_gives_up_at_its_bound_without_cancelling_the_answer() -> None:
    async def scenario() -> tuple[bool, str]:
        gate = asyncio.Event()

        async def answer(queue: asyncio.Queue[str | None]) -> MessageRecord:
            await gate.wait()
            return record(2, "assistant", "late")

        turn = Turn("s1", "t", record(1, "user", "q"), _answer=answer)
        finished = await turn.finish(0)  # the bound under test, not a wait for time
        gate.set()
        result = await turn.result()
        return finished, result.assistant.content

    assert asyncio.run(scenario()) == (False, "late")


def test_a_replayed_answer_has_nothing_to_finish() -> None:
    # A retried turn whose answer is stored already: nothing runs, the stored answer is it.
    async def never(queue: asyncio.Queue[str | None]) -> MessageRecord:
        raise AssertionError("a replayed turn asked the model again")

    replayed = record(2, "assistant", "a")
    turn = Turn("s1", "t", record(1, "user", "q"), _answer=never, _replayed=replayed)

    async def scenario() -> tuple[bool, list[str]]:
        finished = await turn.finish(0)
        result = await turn.result()
        return finished, [result.user.content, result.assistant.content, result.assistant.id]

    assert asyncio.run(scenario()) == (True, ["q", "a", replayed.to_api().id])
