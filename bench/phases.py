"""Where the time and bytes of a chat turn go: read, first batch, model, second batch.

Phases come from what the counting transport saw during the turn (each request's kind and
order) and from when the model ran, never from the store's internals, so the breakdown survives
a change of how the store reads or writes:

- ``read``: the read requests (point read, query, or the SDK's query plan) before the turn's
  first write;
- ``first batch``: every other request before the model starts (the user message's write);
- ``model``: requests while the model streams (normally none);
- ``second batch``: requests after the model ends (the answer's write);
- ``other``: metadata requests (account, database, container), wherever they fall.

Each phase's wall time is a span of the turn, so the spans add up to the turn: ``read`` runs
from the turn's start to its last read's end, ``first batch`` from there to its last write's
end, ``model`` from there to the model's end (building the prompt included), ``second batch``
from there to its last write's end, and ``rest`` to the turn's end. Beside it, the time spent
inside the phase's own requests (or inside the model) shows what is waiting and what is code.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.transport import Request, Tally, role

if TYPE_CHECKING:
    from shared.llm.base import ChatModel

PHASES = ("read", "first batch", "model", "second batch", "rest", "other")


class TimedModel:
    """A chat model wrapper that notes when the wrapped model's stream starts and ends."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.started: float | None = None
        self.ended: float | None = None

    async def stream(
        self, messages: Sequence[Any], *, cache_key: str | None = None
    ) -> AsyncIterator[Any]:
        self.started, self.ended = time.perf_counter(), None
        async for piece in self.inner.stream(messages, cache_key=cache_key):
            yield piece
        self.ended = time.perf_counter()

    async def complete(self, messages: Sequence[Any], *, max_tokens: int, timeout_s: float) -> str:
        # A title call: not the turn's answer, so not timed.
        answer: str = await self.inner.complete(
            messages, max_tokens=max_tokens, timeout_s=timeout_s
        )
        return answer

    async def close(self) -> None:
        await self.inner.close()


@dataclass(frozen=True)
class TurnTrace:
    """One turn: its wall-clock bounds, the requests it sent, and when the model ran."""

    started: float
    ended: float
    requests: list[Request]
    model_started: float | None
    model_ended: float | None


def assign(trace: TurnTrace) -> dict[str, list[Request]]:
    """The turn's requests by phase (see the module's docstring)."""
    out: dict[str, list[Request]] = {name: [] for name in PHASES}
    wrote = False
    for request in trace.requests:
        kind = role(request.kind)
        if kind == "meta":
            out["other"].append(request)
        elif trace.model_started is not None and request.started >= trace.model_started:
            after = trace.model_ended is not None and request.started >= trace.model_ended
            out["second batch" if after else "model"].append(request)
        elif kind == "read" and not wrote:
            out["read"].append(request)
        else:
            wrote = True
            out["first batch"].append(request)
    return out


def breakdown(trace: TurnTrace) -> dict[str, dict[str, Any]]:
    """Per phase: requests, bytes, request units, wall span and the time inside its calls."""
    groups = assign(trace)

    def last_end(name: str, default: float) -> float:
        return max((r.ended for r in groups[name]), default=default)

    bounds = [trace.started]
    bounds.append(last_end("read", bounds[-1]))
    bounds.append(last_end("first batch", bounds[-1]))
    bounds.append(max(trace.model_ended or bounds[-1], last_end("model", bounds[-1])))
    bounds.append(last_end("second batch", bounds[-1]))
    bounds.append(max(trace.ended, bounds[-1]))
    spans = {name: bounds[i + 1] - bounds[i] for i, name in enumerate(PHASES[:5])}

    out: dict[str, dict[str, Any]] = {}
    for name in PHASES:
        tally = Tally.of(groups[name])
        inside = sum(r.seconds for r in groups[name])
        if name == "model" and trace.model_started is not None and trace.model_ended is not None:
            inside += trace.model_ended - trace.model_started
        out[name] = {
            "requests": tally.requests,
            "kinds": dict(sorted(tally.kinds.items())),
            "sent": tally.sent,
            "received": tally.received,
            "ru": tally.ru(),
            "wall_ms": spans.get(name, 0.0) * 1000,
            "inside_ms": inside * 1000,
        }
    return out


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def summarise(traces: list[TurnTrace], first_turn: int) -> dict[str, Any]:
    """Phases over steady-state turns: mean requests, bytes and request units (they add up to
    the turn's), median times (robust to a slow moment of a busy machine)."""
    per_turn = [breakdown(t) for t in traces]
    phases: dict[str, Any] = {}
    for name in PHASES:
        rows = [turn[name] for turn in per_turn]
        charges = [r["ru"] for r in rows if r["ru"] is not None]
        kinds: dict[str, float] = {}
        for row in rows:
            for kind, count in row["kinds"].items():
                kinds[kind] = kinds.get(kind, 0) + count / len(rows)
        phases[name] = {
            "requests": round(_mean([r["requests"] for r in rows]), 2),
            "kinds": {k: round(v, 2) for k, v in sorted(kinds.items())},
            "sent": round(_mean([r["sent"] for r in rows])),
            "received": round(_mean([r["received"] for r in rows])),
            "ru": round(_mean(charges), 2) if charges else None,
            "wall_ms_p50": round(statistics.median([r["wall_ms"] for r in rows]), 3),
            "inside_ms_p50": round(statistics.median([r["inside_ms"] for r in rows]), 3),
        }
    turn_ms = [(t.ended - t.started) * 1000 for t in traces]
    return {
        "turns": [first_turn, first_turn + len(traces) - 1],
        "phases": phases,
        "turn_ms_p50": round(statistics.median(turn_ms), 3),
    }
