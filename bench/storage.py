"""Measurement: what a conversation occupies in each container, on the local Cosmos server.

One user holds ``SESSIONS`` conversations of ``TURNS`` turns each, written through the real
turn (shared/turns/, CosmosStore, the echo model); then an archival pass moves them
all (its clock set past ``ARCHIVE_AFTER_DAYS``). Each container is read back whole and every
stored item measured as the JSON the server keeps (system properties included), by item type.

The archival pass is counted at the SDK's transport too: its request units per session moved,
housekeeping and retention scans included (``archival``).

The capacity model (``python -m bench.capacity``) scales storage from these figures: the bytes of
a message item beyond its text (``message_overhead_bytes``, the same for any text length), and
the fixed items of a session and of a user. Azure also bills the index; the local server does
not build one the way Azure does, so the model applies an index factor of its own (an input).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from bench.common import Cosmos, message_text
from bench.transport import CountingTransport, Tally

SESSIONS = 20  # as many as the benchmark's stub pass archives (bench/archival.py)
TURNS = 10


def _measure(container: Any, email: str) -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in container.query_items("SELECT * FROM c", partition_key=email):
        by_type[str(item.get("type", "other"))].append(item)
    return by_type


def _size(item: dict[str, Any]) -> int:
    return len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())


def _summary(by_type: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, items in sorted(by_type.items()):
        sizes = [_size(i) for i in items]
        out[kind] = {"items": len(items), "bytes": sum(sizes)}
        if kind == "message":
            text = [len(str(i.get("content", "")).encode()) for i in items]
            out[kind]["content_bytes"] = sum(text)
            out[kind]["overhead_bytes_mean"] = round(
                statistics.fmean(s - t for s, t in zip(sizes, text, strict=True)), 1
            )
    return out


async def _run(cosmos: Cosmos, database: str) -> dict[str, Any]:
    from azure.cosmos import CosmosClient

    from shared.archive.sweep import ArchivePolicy, run_archive
    from shared.clock import SystemClock
    from shared.config import DEFAULT_ACTIVE_CONTAINER, DEFAULT_ARCHIVE_CONTAINER, load_settings
    from shared.llm.echo import EchoModel
    from shared.models import ChatRequest
    from shared.turns import Turns

    settings = load_settings({})
    email = "storage@bench.local"
    transport = CountingTransport()
    store = cosmos.store(database, transport=transport)
    try:
        service = Turns.build(store, EchoModel(), settings).chat
        for _ in range(SESSIONS):
            session_id: str | None = None
            for turn in range(1, TURNS + 1):
                request = ChatRequest(message=message_text(turn), sessionId=session_id)
                session_id = (await service.chat(email, request)).session_id
        raw = CosmosClient(cosmos.endpoint, cosmos.key, connection_verify=cosmos.verify_tls)
        db = raw.get_database_client(database)
        active = _summary(_measure(db.get_container_client(DEFAULT_ACTIVE_CONTAINER), email))

        class _Later:
            def now(self) -> Any:
                return SystemClock().now() + timedelta(days=settings.archive_after_days + 1)

        policy = ArchivePolicy(after_days=settings.archive_after_days, time_budget_s=120.0)
        start = len(transport.log)
        summary = await run_archive(store, policy, clock=_Later())
        archival = Tally.of(transport.log[start:])
        archived = _summary(_measure(db.get_container_client(DEFAULT_ARCHIVE_CONTAINER), email))
        left = _summary(_measure(db.get_container_client(DEFAULT_ACTIVE_CONTAINER), email))
    finally:
        await store.close()
    return {
        "sessions": SESSIONS,
        "turns_per_session": TURNS,
        "messages_per_session": 2 * TURNS,
        "message_text_bytes_mean": round(
            statistics.fmean(len(message_text(t).encode()) for t in range(1, TURNS + 1)), 1
        ),
        "archived_sessions": summary.archived,
        "archival": {
            "sessions_archived": summary.archived,
            "requests": archival.requests,
            "request_units": archival.ru(),
            "request_units_per_session": round(
                (archival.ru() or 0.0) / max(1, summary.archived), 2
            ),
        },
        "active": active,
        "archive": archived,
        "active_after_archival": left,
    }


def run(cosmos: Cosmos) -> dict[str, Any]:
    return asyncio.run(_run(cosmos, f"bench-storage-{uuid.uuid4().hex[:8]}"))
