"""Measurement 4: one archival pass over stale sessions: sessions per second, peak memory."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import NotAvailable, seed_session

MESSAGES_PER_SESSION = 10
STALE_DAYS = 60
SEED_CONCURRENCY = 16


async def _seed(store: Any, sessions: int) -> None:
    old = datetime.now(UTC) - timedelta(days=STALE_DAYS)
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            await seed_session(
                store,
                f"arch{index % 50}@bench.local",  # 50 users: several sessions per partition
                messages=MESSAGES_PER_SESSION,
                start=old,
                session_id=f"s_{index:032x}",
            )

    await asyncio.gather(*(one(i) for i in range(sessions)))


def _pass_function() -> tuple[Any, Any]:
    try:
        from shared.archive import ArchivePolicy, run_archive
    except ImportError as exc:
        raise NotAvailable(f"shared.archive has no archival pass yet: {exc}") from exc
    return ArchivePolicy, run_archive


async def _measure(store: Any, sessions: int, concurrency: int) -> dict[str, Any]:
    policy_cls, run_archive = _pass_function()
    await _seed(store, sessions)
    policy = policy_cls(after_days=30, time_budget_s=3600, concurrency=concurrency)
    tracemalloc.start()
    started = time.perf_counter()
    summary = await run_archive(store, policy)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    left, _ = await store.scan_stale(
        "active", updated_before=datetime.now(UTC), limit=10, after=None
    )
    await store.close()
    if summary.archived != sessions or summary.failed or left:
        raise RuntimeError(f"the archival pass did not archive everything: {summary!r}")
    return {
        "sessions": sessions,
        "messages_per_session": MESSAGES_PER_SESSION,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "sessions_per_s": round(sessions / elapsed, 1),
        "peak_memory_mib": round(peak / 2**20, 2),
        "note": "tracemalloc slows Python code; the rate is a lower bound",
    }


def run(make_store: Any, sessions: int, concurrency: int = 8) -> dict[str, Any]:
    return asyncio.run(_measure(make_store(), sessions, concurrency))
