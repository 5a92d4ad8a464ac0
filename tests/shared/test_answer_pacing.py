"""The checkpoints' pacing (shared/answers.py): nothing in the first interval, then one write
per interval, the text only when it changed, no write after the answer ended or was found gone,
and a stop reported once. No time passes: the test ends each pause."""

from __future__ import annotations

import asyncio

from shared.answers import Checkpoints
from shared.storage.base import Checkpoint


class Pauses:
    def __init__(self) -> None:
        self.waiting = 0
        self._tick = asyncio.Event()

    async def sleep(self, _seconds: float) -> None:
        self.waiting += 1
        await self._tick.wait()
        self._tick = asyncio.Event()

    def tick(self) -> None:
        self._tick.set()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def pacer(
    outcomes: list[Checkpoint], text: list[str]
) -> tuple[Checkpoints, Pauses, list[str | None], list[int]]:
    pauses, written, stops = Pauses(), [], []

    async def write(content: str | None) -> Checkpoint:
        written.append(content)
        return outcomes.pop(0) if outcomes else Checkpoint.WRITTEN

    checkpoints = Checkpoints(
        write,
        lambda: "".join(text),
        interval_s=1.0,
        sleep=pauses.sleep,
        on_stop=lambda: stops.append(1),
    )
    return checkpoints, pauses, written, stops


def test_an_answer_ended_within_its_first_interval_is_never_checkpointed() -> None:
    async def scenario() -> None:
        checkpoints, pauses, written, _ = pacer([], ["all of it"])
        checkpoints.start()
        await settle()
        assert pauses.waiting == 1
        await checkpoints.close()
        assert written == [] and checkpoints.writes == 0

    asyncio.run(scenario())


def test_one_write_per_interval_with_the_text_only_when_it_changed() -> None:
    async def scenario() -> None:
        text = ["a"]
        checkpoints, pauses, written, _ = pacer([], text)
        checkpoints.start()
        await settle()
        pauses.tick()  # first checkpoint: creates the item, whatever the text
        await settle()
        pauses.tick()  # nothing new: the time only
        await settle()
        text.append("b")
        pauses.tick()
        await settle()
        await checkpoints.close()
        assert written == ["a", None, "ab"]

    asyncio.run(scenario())


def test_a_stop_is_reported_once_and_a_gone_answer_is_written_no_more() -> None:
    async def scenario() -> None:
        checkpoints, pauses, written, stops = pacer([Checkpoint.WRITTEN, Checkpoint.STOPPED], ["x"])
        checkpoints.start()
        for _ in range(3):
            await settle()
            pauses.tick()
        await settle()
        await checkpoints.close()
        assert (written, stops, checkpoints.stopped) == (["x", None], [1], True)

        checkpoints, pauses, written, stops = pacer([Checkpoint.GONE], ["y"])
        checkpoints.start()
        for _ in range(3):
            await settle()
            pauses.tick()
        await settle()
        await checkpoints.close()
        assert (written, stops, checkpoints.stopped) == (["y"], [], False)

    asyncio.run(scenario())
