"""Measurement 4: archival passes over stale sessions: sessions per second, peak memory, and
what a pass costs with the stubs of earlier passes present.

Two passes over the same number of freshly seeded sessions: the first is timed as it runs in
production; the second runs under tracemalloc for its peak memory (tracemalloc makes Python
code several times slower, so its rate is reported beside, never as, the throughput).

Stubs (Cosmos only): every archived session leaves a stub in the active container, so a daily
pass meets more of them every day. The same pass (the same stale sessions to archive, with
housekeeping and retention) is counted in request units (the local server's estimate, which
charges a query by what the index serves: tools/cosmos/index-cost.mjs) once on a database
without stubs and once on one where earlier passes left ``stubs`` of them; the budget is that
they cost the same. The stale scan the pass used before (a negative predicate) is run against
both too, to show what it would have read."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Cosmos, NotAvailable, seed_session
from bench.transport import CountingTransport, Request, Tally
from shared.ids import SESSION_ID_HEX_CHARS, SESSION_ID_PREFIX

MESSAGES_PER_SESSION = 10
STALE_DAYS = 60
SEED_CONCURRENCY = 16
# The first version's pass on the local Cosmos server; the budget is five times that.
FIRST_VERSION_SESSIONS_PER_S = 19.5
BUDGET_SESSIONS_PER_S = 5 * FIRST_VERSION_SESSIONS_PER_S


async def _seed(
    store: Any, sessions: int, first: int, messages: int = MESSAGES_PER_SESSION
) -> None:
    old = datetime.now(UTC) - timedelta(days=STALE_DAYS)
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            await seed_session(
                store,
                f"arch{index % 50}@bench.local",  # 50 users: several sessions per partition
                messages=messages,
                start=old,
                session_id=f"{SESSION_ID_PREFIX}{index:0{SESSION_ID_HEX_CHARS}x}",
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


# ---- request units with the stubs of earlier passes present ----------------------------------

STUB_PASS_SESSIONS = 20  # stale sessions the measured pass archives, in both databases
STUB_MESSAGES = 2  # messages of each session earlier passes archived (only their stubs count)
RETENTION_DAYS = 365  # retention on, so its scan is counted too (nothing is that old here)
# A pass with stubs present may cost at most this much more than one without (deterministic
# charges: the same sessions are moved in both, so any difference is what the scans read).
BUDGET_STUB_RATIO = 1.02
# The stale scan the pass used before its scans were made positive (docs/design.md,
# "Indexing"): "no state" cannot be served by the index, so it reads every session item.
LEGACY_STALE_QUERY = (
    "SELECT c.EmailID, c.id, c.updatedAt, c._etag FROM c"
    " WHERE c.type = 'session' AND NOT IS_DEFINED(c.state) AND c.updatedAt < @cutoff"
)


def _ru(requests: list[Request]) -> float:
    return Tally.of(requests).ru() or 0.0


async def _legacy_scan(store: Any, cutoff: datetime) -> None:
    from shared.clock import stored_time

    params: list[dict[str, object]] = [{"name": "@cutoff", "value": stored_time(cutoff)}]
    token: str | None = None
    while True:
        _, token = await store.conn.page(
            "active", LEGACY_STALE_QUERY, params, limit=100, continuation=token
        )
        if not token:
            return


async def _stub_pass(cosmos: Cosmos, database: str, stubs: int) -> dict[str, Any]:
    """Archive ``stubs`` sessions (earlier passes, not counted), then count one pass."""
    policy_cls, run_archive = _pass_function()
    if stubs:
        earlier = cosmos.store(database)
        try:
            await _seed(earlier, stubs, 0, messages=STUB_MESSAGES)
            policy = policy_cls(after_days=30, time_budget_s=3600)
            summary = await run_archive(earlier, policy)
        finally:
            await earlier.close()
        if summary.archived != stubs or summary.failed:
            raise RuntimeError(f"the earlier passes did not archive everything: {summary!r}")
    transport = CountingTransport()
    store = cosmos.store(database, transport=transport)
    try:
        # Ids after the stubs', of the same length: the same items to move in both databases.
        await _seed(store, STUB_PASS_SESSIONS, 1_000_000 + stubs, messages=STUB_MESSAGES)
        start = len(transport.log)
        await _legacy_scan(store, datetime.now(UTC) - timedelta(days=30))
        legacy = transport.log[start:]
        start = len(transport.log)
        policy = policy_cls(after_days=30, time_budget_s=3600, retention_days=RETENTION_DAYS)
        summary = await run_archive(store, policy)
        counted = transport.log[start:]
    finally:
        await store.close()
    if summary.archived != STUB_PASS_SESSIONS or summary.failed or summary.more:
        raise RuntimeError(f"the measured pass did not archive everything: {summary!r}")
    return {
        "pass_request_units": round(_ru(counted), 2),
        "pass_requests": len(counted),
        "scan_request_units": round(_ru([r for r in counted if r.kind == "query"]), 2),
        "legacy_stale_scan_request_units": round(_ru(legacy), 2),
    }


async def _measure_stubs(cosmos: Cosmos, stubs: int) -> dict[str, Any]:
    stamp = int(time.time())
    without = await _stub_pass(cosmos, f"bench-stubs-0-{stamp}", 0)
    present = await _stub_pass(cosmos, f"bench-stubs-{stubs}-{stamp}", stubs)
    ratio = present["pass_request_units"] / without["pass_request_units"]
    return {
        "stubs": stubs,
        "sessions_archived": STUB_PASS_SESSIONS,
        "without_stubs": without,
        "with_stubs": present,
        "ratio": round(ratio, 3),
        "budget_ratio": BUDGET_STUB_RATIO,
        "budget_met": ratio <= BUDGET_STUB_RATIO,
    }


def run_stubs(cosmos: Cosmos, stubs: int) -> dict[str, Any]:
    """A pass's request units with ``stubs`` stubs of earlier passes present, against none."""
    return asyncio.run(_measure_stubs(cosmos, stubs))
