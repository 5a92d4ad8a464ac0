"""Answers outlive their requests; ``settled`` waits for every one of them, new ones too."""

from __future__ import annotations

import asyncio

from shared.turns import _keep, settled


def test_settled_waits_for_every_answer_including_those_started_meanwhile() -> None:
    async def scenario() -> list[int]:
        gate = asyncio.Event()
        stored: list[int] = []

        async def answer(n: int) -> None:
            await gate.wait()
            stored.append(n)
            if n == 0:  # another answer starts while the host is settling
                _keep(asyncio.create_task(answer(1)))

        _keep(asyncio.create_task(answer(0)))
        waiting = asyncio.create_task(settled())
        await asyncio.sleep(0)  # one turn of the loop: settled is waiting now
        assert not waiting.done()
        gate.set()
        await waiting
        return stored

    assert asyncio.run(scenario()) == [0, 1]


def test_settled_returns_at_once_when_nothing_runs() -> None:
    asyncio.run(asyncio.wait_for(settled(), timeout=5))
