"""Measurement: what storing an answer as it grows costs (docs/design.md, "Streaming
checkpoints").

One 2,000-token answer, streamed by a scripted model at 50 tokens a second (40 s of model time,
simulated: nothing waits for it), is a turn of an existing conversation on the local Cosmos
server, counted by the same transport as the turn-cost measurement:

- *without checkpoints*: the same answer arriving within one ``STREAM_CHECKPOINT_MS`` (the
  model is fast): written once, whole, as every answer was before checkpoints existed: the
  turn costs what the turn-cost measurement's steady turns cost;
- *with checkpoints*: the answer spans 40 intervals of the default 1000 ms: its item is created
  at the first checkpoint, patched once per interval, and written whole at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bench.common import Cosmos
from bench.transport import CountingTransport, Tally
from shared.llm.base import ModelMessage, Usage

TOKENS = 2000
TOKENS_PER_S = 50
TOKEN = "word "  # about one token of English each
INTERVAL_S = 1.0  # STREAM_CHECKPOINT_MS's default


class SimulatedTime:
    """Model time: the checkpoints' pauses end when the model has said enough to fill them,
    and the model goes on only once the checkpoint that pause let through has been written (so
    the count is the pacing's, not the machine's)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._waiting: list[tuple[float, asyncio.Future[None]]] = []
        self.asleep = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((self.now + seconds, future))
        self.asleep.set()
        await future

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(0)  # a real model's tokens come over the network: others run between
        self.now += seconds
        due = [(t, f) for t, f in self._waiting if t <= self.now + 1e-9]
        if not due:
            return
        self.asleep.clear()
        for entry in due:
            self._waiting.remove(entry)
            if not entry[1].done():
                entry[1].set_result(None)
        # The checkpoint runs now; the pacer sleeps again once it is written.
        await asyncio.wait_for(self.asleep.wait(), timeout=60)


class StreamedModel:
    """2,000 tokens, each taking 1/50 s of ``time`` (None: no time at all)."""

    name = "bench-streamed"

    def __init__(self, time: SimulatedTime | None) -> None:
        self.time = time

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        for _ in range(TOKENS):
            if self.time is not None:
                await self.time.advance(1 / TOKENS_PER_S)
            yield TOKEN

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        return "a title"  # never asked: the conversation exists already

    async def close(self) -> None:
        return None


async def _answer(cosmos: Cosmos, database: str, *, checkpoints: bool) -> Tally:
    from shared.config import load_settings
    from shared.llm.echo import EchoModel
    from shared.models import ChatRequest
    from shared.turns import Turns

    transport = CountingTransport()
    store = cosmos.store(database, transport=transport)
    settings = load_settings({"STREAM_CHECKPOINT_MS": str(int(INTERVAL_S * 1000))})
    try:
        # Warm-up, and a conversation to continue: the measured turn is a steady one.
        warm = Turns.build(store, EchoModel(), settings).chat
        await warm.chat("warmup@bench.local", ChatRequest(message="warm-up"))
        first = await warm.chat("stream@bench.local", ChatRequest(message="hello"))
        time = SimulatedTime() if checkpoints else None
        sleep = time.sleep if time is not None else _never
        service = Turns.build(store, StreamedModel(time), settings, checkpoint_sleep=sleep).chat
        start = len(transport.log)
        result = await service.chat(
            "stream@bench.local",
            ChatRequest(message="tell me a long story", sessionId=first.session_id),
        )
        assert result.assistant.status == "complete"
        assert len(result.assistant.content) == TOKENS * len(TOKEN)
        return Tally.of(transport.log[start:])
    finally:
        await store.close()


async def _never(_seconds: float) -> None:
    """A pause that never ends by itself: the fast answer ends within its first interval."""
    await asyncio.Event().wait()


def _row(tally: Tally) -> dict[str, Any]:
    return {
        "requests": tally.requests,
        "sent": tally.sent,
        "received": tally.received,
        "bytes": tally.bytes,
        "ru": tally.ru(),
        "kinds": dict(sorted(tally.kinds.items())),
    }


def run(cosmos: Cosmos, steady_requests: int) -> dict[str, Any]:
    """``steady_requests``: what a steady turn costs in requests (the turn-cost measurement's
    budget), which an answer within one interval must not exceed."""
    database = "bench-checkpoints"
    without = _row(asyncio.run(_answer(cosmos, database, checkpoints=False)))
    with_ = _row(asyncio.run(_answer(cosmos, database, checkpoints=True)))
    model_s = TOKENS / TOKENS_PER_S
    return {
        "tokens": TOKENS,
        "model_s": model_s,
        "interval_ms": int(INTERVAL_S * 1000),
        "without": without,
        "with": with_,
        "extra_requests": with_["requests"] - without["requests"],
        "extra_bytes": with_["bytes"] - without["bytes"],
        "extra_ru": (
            round(with_["ru"] - without["ru"], 2)
            if with_["ru"] is not None and without["ru"] is not None
            else None
        ),
        # One write at most per interval, plus the final write: nothing else is added.
        "budget_extra_requests_met": with_["requests"] - without["requests"]
        <= int(model_s / INTERVAL_S) + 1,
        "budget_whole_answer_unchanged": without["requests"] <= steady_requests,
    }
