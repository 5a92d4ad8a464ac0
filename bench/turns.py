"""Measurement 1: what a chat turn costs on the wire as the conversation grows.

Parley (ConversationService + CosmosStore + EchoModel) and the whole-document baseline run the
same messages on the same local Cosmos server, each through its own CountingTransport. Every
turn is tallied; the report picks turns 1, 2, 10, 50, 100, 200.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from azure.cosmos.aio import CosmosClient

from bench.baseline import WholeDocumentChat, baseline_container
from bench.common import Cosmos, message_text
from bench.transport import CountingTransport, Tally

MAX_POINT_READS, MAX_BATCHES = 1, 2  # DESIGN.md's per-turn budget
GROWTH_TOLERANCE = 0.10  # turn 200 within 10% of turn 2


def _row(turn: int, tally: Tally) -> dict[str, Any]:
    return {
        "turn": turn,
        "requests": tally.requests,
        "sent": tally.sent,
        "received": tally.received,
        "bytes": tally.sent + tally.received,
        "kinds": dict(sorted(tally.kinds.items())),
    }


async def _parley_turns(cosmos: Cosmos, database: str, turns: int) -> list[dict[str, Any]]:
    from shared.config import load_settings
    from shared.llm.echo import EchoModel
    from shared.models import ChatRequest
    from shared.service import ConversationService

    transport = CountingTransport()
    store = cosmos.store(database, transport=transport)
    service = ConversationService(store, EchoModel(), load_settings({}))
    rows: list[dict[str, Any]] = []
    try:
        # Warm-up on another user: account, database and container metadata reads happen once
        # per process, not per turn, so they stay out of turn 1.
        await service.chat("warmup@bench.local", ChatRequest(message="warm-up"))
        session_id: str | None = None
        for turn in range(1, turns + 1):
            before = transport.tally.copy()
            request = ChatRequest(message=message_text(turn), sessionId=session_id)
            result = await service.chat("parley@bench.local", request)
            session_id = result.session_id
            rows.append(_row(turn, transport.tally.minus(before)))
    finally:
        await store.close()
    return rows


async def _baseline_turns(cosmos: Cosmos, database: str, turns: int) -> list[dict[str, Any]]:
    transport = CountingTransport()
    client = CosmosClient(
        cosmos.endpoint, cosmos.key, connection_verify=cosmos.verify_tls, transport=transport
    )
    rows: list[dict[str, Any]] = []
    try:
        db = await client.create_database_if_not_exists(database)
        chat = WholeDocumentChat(await baseline_container(db))
        await chat.turn("warmup@bench.local", "warmup", "warm-up")
        session_id = str(uuid.uuid4())
        for turn in range(1, turns + 1):
            before = transport.tally.copy()
            await chat.turn("baseline@bench.local", session_id, message_text(turn))
            rows.append(_row(turn, transport.tally.minus(before)))
    finally:
        await client.close()
    return rows


def _pick(rows: list[dict[str, Any]], turn: int) -> dict[str, Any]:
    return rows[turn - 1]


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def summarise(
    parley: list[dict[str, Any]], baseline: list[dict[str, Any]], report_turns: list[int]
) -> dict[str, Any]:
    last = len(parley)
    over = [
        r["turn"]
        for r in parley
        if r["kinds"].get("point_read", 0) > MAX_POINT_READS
        or r["kinds"].get("batch", 0) > MAX_BATCHES
        or set(r["kinds"]) - {"point_read", "batch"}
    ]
    p_last, p2, p10 = _pick(parley, last), _pick(parley, 2), _pick(parley, 10)
    b_last = _pick(baseline, last)
    growth_vs_2 = _ratio(p_last["bytes"], p2["bytes"])
    growth_vs_10 = _ratio(p_last["bytes"], p10["bytes"])
    return {
        "report_turns": report_turns,
        "last_turn": last,
        "parley": [_pick(parley, t) for t in report_turns],
        "baseline": [_pick(baseline, t) for t in report_turns],
        "parley_bytes_per_turn": [r["bytes"] for r in parley],
        "baseline_bytes_per_turn": [r["bytes"] for r in baseline],
        "ratio_baseline_over_parley_bytes_at_last": _ratio(b_last["bytes"], p_last["bytes"]),
        "ratio_baseline_over_parley_sent_at_last": _ratio(b_last["sent"], p_last["sent"]),
        "ratio_baseline_over_parley_received_at_last": _ratio(
            b_last["received"], p_last["received"]
        ),
        "parley_growth_last_vs_turn2": growth_vs_2,
        "parley_growth_last_vs_turn10": growth_vs_10,
        "baseline_growth_last_vs_turn2": _ratio(b_last["bytes"], _pick(baseline, 2)["bytes"]),
        "turns_over_operation_budget": over,
        "budget_operations_met": not over,
        "budget_growth_vs_turn2_met": abs(growth_vs_2 - 1) <= GROWTH_TOLERANCE,
        "budget_growth_vs_turn10_met": abs(growth_vs_10 - 1) <= GROWTH_TOLERANCE,
    }


def run(cosmos: Cosmos, report_turns: list[int]) -> dict[str, Any]:
    turns = max(report_turns)
    database = f"bench-turns-{uuid.uuid4().hex[:8]}"
    parley = asyncio.run(_parley_turns(cosmos, database, turns))
    baseline = asyncio.run(_baseline_turns(cosmos, database, turns))
    return summarise(parley, baseline, report_turns)
