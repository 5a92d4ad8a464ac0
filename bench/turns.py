"""Measurement 1: what a chat turn costs on the wire as the conversation grows.

Parley (the turn of shared/turns/ + CosmosStore + EchoModel), the whole-document baseline
(bench/baseline.py) and LangChain's CosmosDBChatMessageHistory (bench/langchain_history.py)
run the same messages on the same local Cosmos server, each through its own counting transport.
Every turn is tallied (requests, bytes, request units); the report picks some turns, and
Parley's steady-state turns are broken down by phase (bench/phases.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from azure.cosmos.aio import CosmosClient

from bench import langchain_history, phases
from bench.baseline import WholeDocumentChat, baseline_container
from bench.common import Cosmos, message_text
from bench.transport import CountingTransport, Tally

# The design's budgets.
# Cosmos requests in any turn after the first: the conversation's three (docs/design.md, "The
# turn"), and, with a token limit set (the default), usage's two: the budget check's query and
# the count's batch (docs/design.md, "Usage and budgets").
CONVERSATION_REQUESTS, USAGE_REQUESTS = 3, 2
MAX_REQUESTS_AFTER_FIRST = CONVERSATION_REQUESTS + USAGE_REQUESTS
GROWTH_FROM_TURN = 25  # the context window is full by then: later turns must cost the same
GROWTH_TOLERANCE = 0.10  # turn 200 within 10% of turn 25
LANGCHAIN_TURN = 100
MIN_LANGCHAIN_RATIO = 20.0  # steady-state bytes at least 20x fewer than LangChain's
# A daily token limit stays set, so each turn pays the budget's requests as in production, but
# one that the full run's 200 turns of one user (each sending a full context window) never spend:
# the default 200,000 refused the full run from about turn 100 on.
BENCH_DAILY_TOKEN_LIMIT = 1_000_000_000


def _row(turn: int, tally: Tally) -> dict[str, Any]:
    return {
        "turn": turn,
        "requests": tally.requests,
        "sent": tally.sent,
        "received": tally.received,
        "bytes": tally.bytes,
        "ru": tally.ru(),
        "kinds": dict(sorted(tally.kinds.items())),
    }


async def _parley_turns(
    cosmos: Cosmos, database: str, turns: int
) -> tuple[list[Tally], list[phases.TurnTrace]]:
    from shared.config import load_settings
    from shared.llm.echo import EchoModel
    from shared.models import ChatRequest
    from shared.turns import Turns

    transport = CountingTransport()
    store = cosmos.store(database, transport=transport)
    model = phases.TimedModel(EchoModel())
    settings = load_settings({"USER_DAILY_TOKEN_LIMIT": str(BENCH_DAILY_TOKEN_LIMIT)})
    service = Turns.build(store, model, settings).chat
    tallies: list[Tally] = []
    traces: list[phases.TurnTrace] = []
    try:
        # Warm-up on another user: account, database and container metadata reads happen once
        # per process, not per turn, so they stay out of turn 1.
        await service.chat("warmup@bench.local", ChatRequest(message="warm-up"))
        session_id: str | None = None
        for turn in range(1, turns + 1):
            start, model.started, model.ended = len(transport.log), None, None
            request = ChatRequest(message=message_text(turn), sessionId=session_id)
            started = time.perf_counter()
            result = await service.chat("parley@bench.local", request)
            ended = time.perf_counter()
            session_id = result.session_id
            log = transport.log[start:]
            tallies.append(Tally.of(log))
            traces.append(phases.TurnTrace(started, ended, log, model.started, model.ended))
    finally:
        await store.close()
    return tallies, traces


async def _baseline_turns(cosmos: Cosmos, database: str, turns: int) -> list[Tally]:
    transport = CountingTransport()
    client = CosmosClient(
        cosmos.endpoint, cosmos.key, connection_verify=cosmos.verify_tls, transport=transport
    )
    tallies: list[Tally] = []
    try:
        db = await client.create_database_if_not_exists(database)
        chat = WholeDocumentChat(await baseline_container(db))
        await chat.turn("warmup@bench.local", "warmup", "warm-up")
        session_id = str(uuid.uuid4())
        for turn in range(1, turns + 1):
            start = len(transport.log)
            await chat.turn("baseline@bench.local", session_id, message_text(turn))
            tallies.append(Tally.of(transport.log[start:]))
    finally:
        await client.close()
    return tallies


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def _at(rows: list[dict[str, Any]], turn: int) -> dict[str, Any] | None:
    return rows[turn - 1] if 0 < turn <= len(rows) else None


def _ratios(other: dict[str, Any], parley: dict[str, Any]) -> dict[str, Any]:
    return {
        "turn": parley["turn"],
        "bytes": _ratio(other["bytes"], parley["bytes"]),
        "sent": _ratio(other["sent"], parley["sent"]),
        "received": _ratio(other["received"], parley["received"]),
    }


def _budgets(parley: list[dict[str, Any]], langchain: list[dict[str, Any]]) -> dict[str, Any]:
    last = len(parley)
    over = [r["turn"] for r in parley[1:] if r["requests"] > MAX_REQUESTS_AFTER_FIRST]
    base = _at(parley, GROWTH_FROM_TURN)
    growth = _ratio(parley[-1]["bytes"], base["bytes"]) if base else None
    p100, l100 = _at(parley, LANGCHAIN_TURN), _at(langchain, LANGCHAIN_TURN)
    langchain_ratio = _ratio(l100["bytes"], p100["bytes"]) if p100 and l100 else None
    return {
        "turns_over_request_budget": over,
        "budget_requests_met": not over,
        "growth_from_turn": GROWTH_FROM_TURN,
        "parley_growth_last_vs_turn25": growth,
        "budget_growth_met": (
            None
            if growth is None or last <= GROWTH_FROM_TURN
            else abs(growth - 1) <= GROWTH_TOLERANCE
        ),
        "langchain_turn": LANGCHAIN_TURN,
        "ratio_langchain_over_parley_bytes_at_100": langchain_ratio,
        "budget_langchain_ratio_met": (
            None if langchain_ratio is None else langchain_ratio >= MIN_LANGCHAIN_RATIO
        ),
    }


def summarise(
    parley: list[Tally],
    baseline: list[Tally],
    langchain: list[Tally],
    traces: list[phases.TurnTrace],
    report_turns: list[int],
) -> dict[str, Any]:
    rows = {
        name: [_row(i, t) for i, t in enumerate(tallies, start=1)]
        for name, tallies in (("parley", parley), ("baseline", baseline), ("langchain", langchain))
    }
    last = len(parley)
    # The ratios are at turn 100 when the run got there (the full run), else at its last turn.
    compare = min(LANGCHAIN_TURN, last)
    p, b, lc = (_at(rows[n], compare) for n in ("parley", "baseline", "langchain"))
    assert p and b and lc
    # Steady state: the context window is full and the session item no longer grows.
    steady = traces[GROWTH_FROM_TURN - 1 :] or traces[-1:]
    return {
        "report_turns": report_turns,
        "last_turn": last,
        "compare_turn": compare,
        "requests_charged": all(t.charged == t.requests for t in parley + baseline + langchain),
        # A server that charges every request the same flat amount gives no estimate at all.
        "charges_seen": sorted({r.charge for t in traces for r in t.requests if r.charge}),
        **{name: [rows[name][t - 1] for t in report_turns] for name in rows},
        **{f"{name}_bytes_per_turn": [r["bytes"] for r in rows[name]] for name in rows},
        "ratio_baseline_over_parley": _ratios(b, p),
        "ratio_langchain_over_parley": _ratios(lc, p),
        "baseline_growth_last_vs_turn25": _ratio(
            rows["baseline"][-1]["bytes"],
            rows["baseline"][min(GROWTH_FROM_TURN, last) - 1]["bytes"],
        ),
        **_budgets(rows["parley"], rows["langchain"]),
        "phases": phases.summarise(steady, last - len(steady) + 1),
    }


def run(cosmos: Cosmos, report_turns: list[int]) -> dict[str, Any]:
    turns = max(report_turns)
    database = f"bench-turns-{uuid.uuid4().hex[:8]}"
    parley, traces = asyncio.run(_parley_turns(cosmos, database, turns))
    baseline = asyncio.run(_baseline_turns(cosmos, database, turns))
    langchain = langchain_history.run_turns(cosmos, database, turns)
    return summarise(parley, baseline, langchain, traces, report_turns)
