"""1,000 stale sessions archived with memory flat (SQLite: the cost is the pass's, not the
store's; the Cosmos store pages the same way but is too slow locally for this many)."""

from __future__ import annotations

import asyncio
import tracemalloc
from datetime import timedelta
from pathlib import Path

from shared.archive import ArchivePolicy, ArchiveSummary, run_archive
from shared.clock import FixedClock
from shared.storage.sqlite import SqliteStore
from tests.shared.archive.support import NOW
from tests.support.scenarios import seed

CUTOFF = NOW - timedelta(days=30)


def archive_many(path: Path, count: int) -> tuple[int, ArchiveSummary]:
    """Seed ``count`` stale sessions, then archive them; returns the pass's peak working
    memory (traced by tracemalloc, all threads)."""

    async def scenario() -> tuple[int, ArchiveSummary]:
        store = SqliteStore(path)
        for i in range(count):
            await seed(store, f"user{i % 37}@example.com", CUTOFF - timedelta(minutes=i + 1), 2)
        tracemalloc.start()
        try:
            summary = await run_archive(
                store, ArchivePolicy(after_days=30, time_budget_s=600), clock=FixedClock(NOW)
            )
            retained, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        remaining, _ = await store.scan_stale(
            where="active", updated_before=NOW, limit=10, after=None
        )
        assert remaining == []
        # What the pass held at once, less what stays afterwards: pydantic-core's JSON string
        # cache keeps (a bounded number of) parsed strings, which is not the pass's working set.
        return peak - retained, summary

    return asyncio.run(scenario())


def test_memory_stays_flat_however_many_sessions_are_stale(tmp_path: Path) -> None:
    small_peak, small = archive_many(tmp_path / "small.db", 200)
    large_peak, large = archive_many(tmp_path / "large.db", 2000)

    assert (small.archived, large.archived, large.failed, large.more) == (200, 2000, 0, False)
    # Ten times the sessions: if the pass collected them, the peak would grow about tenfold.
    # Concurrent moves make the peak vary by a few tens of percent from run to run; twice the
    # small pass's peak is far from that noise and far below growth with the backlog.
    assert large_peak < small_peak * 2, (small_peak, large_peak)
