"""The operators' report (``python -m shared.report``) on a store of many users: seconds and
peak memory of computing its figures, at a fifth of the users and at all of them. Memory is
bounded by a store page plus one row per day and per model and two fixed latency histograms, so
the two peaks should match.

Each user has ``sessions`` sessions of one answered turn (a question and an answer with its
model, tokens and, for every third, a rating) and usage totals on the days of those turns,
spread over the last 30 days; stored through the store's own writes (SQLite).
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MODELS = ("gpt-4o-mini", "gpt-4o")


async def _seed(store: Any, users: range, sessions: int, now: datetime) -> None:
    from shared.ids import new_session_id
    from shared.models import Feedback, MessageRecord, SessionRecord
    from shared.storage.base import Spent
    from shared.usage import period_keys

    for u in users:
        email = f"user{u}@example.com"
        for s in range(sessions):
            when = now - timedelta(days=(u + s) % 30, minutes=s)
            session_id = new_session_id()
            model = MODELS[(u + s) % 2]
            rating = ("up", "down", None)[(u * sessions + s) % 3]
            records = [
                MessageRecord(
                    session_id=session_id, seq=1, role="user", content="a question", timestamp=when
                ),
                MessageRecord(
                    session_id=session_id,
                    seq=2,
                    role="assistant",
                    content="an answer",
                    timestamp=when,
                    model=model,
                    prompt_tokens=100,
                    completion_tokens=20,
                    # Timings spread over two orders of magnitude: the histogram's buckets fill.
                    first_token_ms=80 + (u * sessions + s) % 900,
                    total_ms=400 + ((u * sessions + s) * 37) % 9000,
                    feedback=Feedback(rating=rating, updated_at=when) if rating else None,
                ),
            ]
            session = SessionRecord(
                id=session_id,
                email=email,
                title="bench",
                preview="a question",
                created_at=when,
                updated_at=when,
                message_count=2,
                last_seq=2,
            )
            await store.append(session, records, expected_etag=None)
            await store.add_usage(email, period_keys(when), Spent(100, 20, 64, 1))
    # One archival pass's record per user seeded, as if a pass ran often: its scan pages too.
    from shared.storage.base import ArchiveRun

    for u in users:
        await store.record_archive_run(
            ArchiveRun(f"bench{u}", now - timedelta(days=u % 30, minutes=u), u % 7, u % 2)
        )


async def _measure(store: Any, now: datetime) -> dict[str, Any]:
    from shared.report import compute

    tracemalloc.start()
    started = time.perf_counter()
    report = await compute(store, days=30, now=now)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    data = report.to_json()
    return {
        "seconds": round(seconds, 2),
        "peak_memory_mib": round(peak / 2**20, 2),
        "turns": data["totals"]["turns"],
        "answers": sum(m["answers"] for m in data["perModel"]),
        "latency_answers": data["latency"]["answers"],
        "archive_runs": data["archival"]["runs"],
    }


async def _run(db: Path, users: int, sessions: int) -> dict[str, Any]:
    from shared.storage.sqlite import SqliteStore

    now = datetime.now(UTC)
    store = SqliteStore(db)
    try:
        fifth = max(1, users // 5)
        await _seed(store, range(fifth), sessions, now)
        small = await _measure(store, now)
        await _seed(store, range(fifth, users), sessions, now)
        full = await _measure(store, now)
    finally:
        await store.close()
    return {
        "users": users,
        "sessions_per_user": sessions,
        "at_a_fifth": {"users": fifth, **small},
        "at_all": {"users": users, **full},
    }


def run(db: Path, users: int, sessions: int) -> dict[str, Any]:
    return asyncio.run(_run(db, users, sessions))
