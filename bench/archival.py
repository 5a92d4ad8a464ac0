"""Measurement 4: archival passes over stale sessions: sessions per second, peak memory.

Two passes over the same number of freshly seeded sessions: the first is timed as it runs in
production; the second runs under tracemalloc for its peak memory (tracemalloc makes Python
code several times slower, so its rate is reported beside, never as, the throughput)."""

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
# The first version's pass on the local Cosmos server; the budget is five times that.
FIRST_VERSION_SESSIONS_PER_S = 19.5
BUDGET_SESSIONS_PER_S = 5 * FIRST_VERSION_SESSIONS_PER_S


async def _seed(store: Any, sessions: int, first: int) -> None:
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

    await asyncio.gather(*(one(i) for i in range(first, first + sessions)))


def _pass_function() -> tuple[Any, Any]:
    try:
        from shared.archive import ArchivePolicy, run_archive
    except ImportError as exc:
        raise NotAvailable(f"shared.archive has no archival pass yet: {exc}") from exc
    return ArchivePolicy, run_archive


async def _one_pass(
    store: Any, sessions: int, first: int, concurrency: int, *, traced: bool
) -> tuple[float, int]:
    """Seed ``sessions`` stale sessions (ids from ``first``), archive them in one pass; the
    pass's seconds and (``traced``) its peak Python allocations."""
    policy_cls, run_archive = _pass_function()
    try:
        await _seed(store, sessions, first)
        policy = policy_cls(after_days=30, time_budget_s=3600, concurrency=concurrency)
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        summary = await run_archive(store, policy)
        elapsed = time.perf_counter() - started
        peak = 0
        if traced:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        left, _ = await store.scan_stale(
            where="active", updated_before=datetime.now(UTC), limit=10, after=None
        )
    finally:
        await store.close()
    if summary.archived != sessions or summary.failed or left:
        raise RuntimeError(f"the archival pass did not archive everything: {summary!r}")
    return elapsed, peak


async def _measure(make_store: Any, sessions: int, concurrency: int) -> dict[str, Any]:
    elapsed, _ = await _one_pass(make_store(), sessions, 0, concurrency, traced=False)
    traced_elapsed, peak = await _one_pass(
        make_store(), sessions, sessions, concurrency, traced=True
    )
    return {
        "sessions": sessions,
        "messages_per_session": MESSAGES_PER_SESSION,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "sessions_per_s": round(sessions / elapsed, 1),
        "budget_sessions_per_s": BUDGET_SESSIONS_PER_S,
        "budget_met": sessions / elapsed >= BUDGET_SESSIONS_PER_S,
        "peak_memory_mib": round(peak / 2**20, 2),
        "traced_sessions_per_s": round(sessions / traced_elapsed, 1),
    }


def run(make_store: Any, sessions: int, concurrency: int = 8) -> dict[str, Any]:
    return asyncio.run(_measure(make_store, sessions, concurrency))
