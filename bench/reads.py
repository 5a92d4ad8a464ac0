"""Measurement: what reading costs as a user's data grows, on the local Cosmos server.

- Message pages: page 1 and page 20 of a 2,000-message conversation, paged backwards 50 at a
  time (``GET /api/sessions/{id}/messages?before=``): one single-partition query each, whose
  cost must not depend on how far back the page is.
- Search: one phrase over a user with 100, 1,000 and 10,000 messages. Message text is not
  indexed (writes stay cheap), so a search scans the user's own partition: its cost grows with
  the user's data, and this says by how much.

Bytes, requests and request units (the local server's estimate) are counted at the SDK's
transport, as for a turn.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Cosmos, seed_session
from bench.transport import CountingTransport, Tally

PAGE_SIZE = 50
SESSION_MESSAGES = 2000
SESSION_SIZE_FOR_SEARCH = 50  # messages per session of the search user
NEEDLE = "pelican-kumquat"  # in exactly one message of each search user


def _row(tally: Tally) -> dict[str, Any]:
    return {
        "requests": tally.requests,
        "bytes": tally.bytes,
        "request_units": tally.ru(),
        "kinds": dict(sorted(tally.kinds.items())),
    }


async def _seed_session(store: Any, email: str, messages: int, needle_at: int | None) -> str:
    extra = {needle_at: f" {NEEDLE}"} if needle_at else None
    start = datetime.now(UTC) - timedelta(days=1)
    return await seed_session(store, email, messages=messages, start=start, extra=extra)


async def _pages(cosmos: Cosmos, database: str) -> dict[str, Any]:
    transport = CountingTransport()
    store = cosmos.store(database, transport=transport)
    email = "pages@bench.local"
    try:
        session_id = await _seed_session(store, email, SESSION_MESSAGES, None)
        rows: dict[int, dict[str, Any]] = {}
        before: int | None = None
        for page_number in range(1, 21):
            start = len(transport.log)
            page, _ = await store.page_messages(
                email, session_id, where="active", limit=PAGE_SIZE, before_seq=before
            )
            rows[page_number] = {**_row(Tally.of(transport.log[start:])), "messages": len(page)}
            before = page[0].seq
    finally:
        await store.close()
    first, last = rows[1], rows[20]
    return {
        "session_messages": SESSION_MESSAGES,
        "page_size": PAGE_SIZE,
        "page_1": first,
        "page_20": last,
        "ratio_bytes_20_over_1": round(last["bytes"] / first["bytes"], 3),
        "budget_met": last["requests"] == first["requests"] == 1
        and abs(last["bytes"] / first["bytes"] - 1) <= 0.10,
    }


async def _search(cosmos: Cosmos, database: str, sizes: list[int]) -> dict[str, Any]:
    transport = CountingTransport()
    store = cosmos.store(database, transport=transport)
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            email = f"search-{size}@bench.local"
            sessions = max(1, size // SESSION_SIZE_FOR_SEARCH)
            for index in range(sessions):
                # The phrase is in one message of the middle session.
                needle_at = 7 if index == sessions // 2 else None
                await _seed_session(store, email, min(size, SESSION_SIZE_FOR_SEARCH), needle_at)
            start = len(transport.log)
            results, _ = await store.search(
                email, NEEDLE, where="active", limit=20, after=None, hits_per_session=3
            )
            if len(results) != 1:
                raise RuntimeError(f"search found {len(results)} sessions, expected 1")
            rows.append({"messages": size, **_row(Tally.of(transport.log[start:]))})
    finally:
        await store.close()
    return {"rows": rows}


def run(cosmos: Cosmos, search_sizes: list[int]) -> dict[str, Any]:
    database = f"bench-reads-{uuid.uuid4().hex[:8]}"
    return {
        "pages": asyncio.run(_pages(cosmos, database)),
        "search": asyncio.run(_search(cosmos, database, search_sizes)),
    }
