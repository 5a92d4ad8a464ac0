"""Measurement: what reading costs as a user's data grows, on the local Cosmos server.

- Message pages: page 1 and page 20 of a 2,000-message conversation, paged backwards 50 at a
  time (``GET /api/sessions/{id}/messages?before=``): one single-partition query each, whose
  cost must not depend on how far back the page is.
- Search: one phrase over a user with 100, 1,000, 10,000 and 100,000 messages (fewer in
  ``--quick``), through the full-text index as the app searches, and beside it the ``CONTAINS``
  scan of the user's partition that the index replaced (the same matches, read by filtering
  every item). Budget: the indexed search at the largest size costs at most twice what it costs
  at 100 messages, in request units.

Bytes, requests and request units (the local server's estimate) are counted at the SDK's
transport, as for a turn.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Cosmos, seed_session
from bench.transport import CountingTransport, Tally

PAGE_SIZE = 50
SESSION_MESSAGES = 2000
SESSION_SIZE_FOR_SEARCH = 50  # messages per session of the search user
NEEDLE = "pelican-kumquat"  # in exactly one message of each search user
SEED_CONCURRENCY = 16  # sessions of a search user written at once
SEARCH_GROWTH_BUDGET = 2.0  # request units at the largest size / at the smallest, at most
# What search did before the full-text index: the caller's partition filtered by CONTAINS (a
# scan), then the page of sessions and their hits as the indexed search reads them.
CONTAINS_MESSAGES_QUERY = (
    "SELECT c.sessionId FROM c WHERE c.type = 'message' AND CONTAINS(c.content, @q, true)"
)
CONTAINS_TITLES_QUERY = (
    "SELECT c.id FROM c WHERE c.type = 'session' AND NOT IS_DEFINED(c.state)"
    " AND CONTAINS(c.title, @q, true)"
)


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


async def _contains_search(store: Any, email: str) -> None:
    """The two scans the indexed search replaced; the page and hits that follow them are the
    same for both, so only the part that differs is counted."""
    q: list[dict[str, object]] = [{"name": "@q", "value": NEEDLE}]
    for query in (CONTAINS_MESSAGES_QUERY, CONTAINS_TITLES_QUERY):
        found = await store.conn.query("active", query, q, email=email, enable_scan_in_query=True)
        if query is CONTAINS_MESSAGES_QUERY and len(found) != 1:
            raise RuntimeError(f"CONTAINS found {len(found)} messages, expected 1")


async def _search(cosmos: Cosmos, database: str, sizes: list[int]) -> dict[str, Any]:
    from shared.search import HITS_PER_SESSION
    from shared.storage.cosmos.store import SEARCH_MESSAGES_QUERY, SEARCH_TITLES_QUERY, _all_words

    transport = CountingTransport()
    store = cosmos.store(database, transport=transport)
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            email = f"search-{size}@bench.local"
            sessions = max(1, size // SESSION_SIZE_FOR_SEARCH)
            # The phrase is in one message of the middle session. Sessions are written
            # SEED_CONCURRENCY at a time, each in one batch: 100,000 messages in minutes.
            for first in range(0, sessions, SEED_CONCURRENCY):
                await asyncio.gather(
                    *(
                        _seed_session(
                            store,
                            email,
                            min(size, SESSION_SIZE_FOR_SEARCH),
                            7 if index == sessions // 2 else None,
                        )
                        for index in range(first, min(first + SEED_CONCURRENCY, sessions))
                    )
                )
            print(f"bench: search: {size:,} messages seeded", file=sys.stderr, flush=True)
            if size == sizes[0]:
                # The SDK reads the container's metadata before its first query: not a search's.
                await store.search_matches(email, "warm", where="active", hits_per_session=1)
            start = len(transport.log)
            # A search's first page as the service reads it: the lookup, then the page by id.
            matches = await store.search_matches(
                email, NEEDLE, where="active", hits_per_session=HITS_PER_SESSION
            )
            results = await store.search_page(email, where="active", matches=matches[:20])
            if len(results) != 1:
                raise RuntimeError(f"search found {len(results)} sessions, expected 1")
            indexed = _row(Tally.of(transport.log[start:]))
            # The like-for-like part: the two lookups through the index, beside the two scans.
            start = len(transport.log)
            for query, path in ((SEARCH_MESSAGES_QUERY, "content"), (SEARCH_TITLES_QUERY, "title")):
                match = _all_words(path, f"{path}Folded", NEEDLE)
                await store.conn.query("active", query.format(match=match), [], email=email)
            lookups = _row(Tally.of(transport.log[start:]))
            start = len(transport.log)
            await _contains_search(store, email)
            scans = _row(Tally.of(transport.log[start:]))
            rows.append({"messages": size, **indexed, "lookups": lookups, "contains": scans})
    finally:
        await store.close()
    first, last = rows[0], rows[-1]
    growth = last["request_units"] / first["request_units"]
    return {
        "rows": rows,
        "growth_budget": SEARCH_GROWTH_BUDGET,
        "ratio_ru_last_over_first": round(growth, 3),
        "budget_met": growth <= SEARCH_GROWTH_BUDGET,
    }


def run_search(cosmos: Cosmos, search_sizes: list[int]) -> dict[str, Any]:
    """The search measurement alone (``python -m bench --step search``)."""
    return asyncio.run(_search(cosmos, f"bench-search-{uuid.uuid4().hex[:8]}", search_sizes))


def run(cosmos: Cosmos, search_sizes: list[int]) -> dict[str, Any]:
    database = f"bench-reads-{uuid.uuid4().hex[:8]}"
    return {
        "pages": asyncio.run(_pages(cosmos, database)),
        "search": asyncio.run(_search(cosmos, database, search_sizes)),
    }
