"""The archival pass the timer runs (and ``python -m shared.archive``): stale sessions to the
archive, interrupted moves and deletes finished, conversations past retention
(``RETENTION_DAYS``, active or archived, never pinned) deleted.

Each session is moved by the store in one step that is safe against everything else that can
happen to it (a turn, a restore, a rename, a delete, another pass: ``docs/design.md``, "Moving a
session"); this module decides what to move and when to stop:

- scans page through candidates, so memory is bounded by a page, not by the backlog;
- moves run ``ARCHIVE_CONCURRENCY`` at a time at most; throttling (a 503 after the SDK's own
  retries) halves that and retries the session after the store's Retry-After; a session still
  throttled (or with no time left to wait) is left for the next pass (``more: true``), so
  throttling slows the pass, never fails it;
- the pass runs housekeeping (interrupted moves and deletes), then archival, then retention,
  each until its own deadline within ``ARCHIVE_TIME_BUDGET_S``: housekeeping gets at most its
  share (``HOUSEKEEPING_SHARE``), retention always keeps its share (``RETENTION_SHARE``), and
  archival the rest, so a stale backlog never starves the other two, nor they archival; a job
  that reaches its deadline leaves the rest for the next pass (``more: true``), and the next
  job starts; after ``MAX_CONSECUTIVE_FAILURES`` failures in a row the pass stops;
- a scan page throttled is asked for again the same way; one that still fails fails the pass
  (``failed``, which alerts: the store is down or unreachable).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import Clock, SystemClock
from shared.config import Settings
from shared.errors import StorageUnavailable
from shared.events import emit
from shared.storage.base import (
    ArchiveRun,
    ArchiveStore,
    MoveOutcome,
    SessionRef,
    Unfinished,
    Where,
)

log = logging.getLogger("parley.archive")

RUN_LOG_PREFIX = "archive_run "  # infra/monitoring.py's alerts query this exact prefix
SCAN_PAGE = 100  # sessions per scan page: memory is bounded by a page, not by the backlog
# After this many failed sessions in a row the store is probably down: stop, report more.
MAX_CONSECUTIVE_FAILURES = 10
# A move or delete left half-done is finished by housekeeping once it is this old: younger
# ones may still be under way (finishing them early is safe, only wasted work).
UNFINISHED_GRACE = timedelta(minutes=10)
# A throttled session is tried again this many times in one pass before it counts as failed.
MAX_THROTTLED_ATTEMPTS = 5
# Shares of the time budget: housekeeping runs first and stops at its share (the rest goes on
# to archival); retention runs last and always has its share left (plus what archival did not
# use). Each is rarely more than a few steps; a backlog of them is finished over a few passes.
HOUSEKEEPING_SHARE = 0.1
RETENTION_SHARE = 0.1


class ArchiveSummary(BaseModel):
    """The run's one-line report (``docs/operations.md``, "Archival")."""

    model_config = ConfigDict(populate_by_name=True)

    archived: int = 0
    skipped: int = 0
    failed: int = 0
    resumed: int = 0  # interrupted moves and deletes finished by housekeeping
    retention_deleted: int = Field(0, alias="retentionDeleted")
    throttled: int = 0  # times throttling slowed the pass down
    duration_ms: int = Field(0, alias="durationMs")
    more: bool = False
    dry_run: bool = Field(False, alias="dryRun")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), separators=(",", ":"))


@dataclass(frozen=True)
class ArchivePolicy:
    after_days: int
    time_budget_s: float
    retention_days: int | None = None
    dry_run: bool = False
    concurrency: int = 8

    @classmethod
    def from_settings(
        cls, settings: Settings, *, older_than_days: int | None = None, dry_run: bool = False
    ) -> ArchivePolicy:
        return cls(
            after_days=older_than_days or settings.archive_after_days,
            time_budget_s=settings.archive_time_budget_s,
            retention_days=settings.retention_days or None,
            dry_run=dry_run,
            concurrency=settings.archive_concurrency,
        )


class _Stop(Exception):
    """Stop the current job: out of its time, or (``failures_in_a_row``) the store looks
    down, which stops the pass."""


class AdaptiveLimit:
    """How many moves may run at once: halved on throttling, grown back by one after a run of
    successes, never above the configured maximum nor below one."""

    GROW_AFTER = 20  # successes in a row before one more slot

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self._active = 0
        self._streak = 0
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._active < self.limit)
            self._active += 1

    async def release(self, *, throttled: bool) -> None:
        async with self._changed:
            self._active -= 1
            if throttled:
                self.limit = max(1, self.limit // 2)
                self._streak = 0
            else:
                self._streak += 1
                if self._streak >= self.GROW_AFTER and self.limit < self.maximum:
                    self.limit += 1
                    self._streak = 0
            self._changed.notify_all()


Step = Callable[[], Awaitable[None]]
T = TypeVar("T", SessionRef, Unfinished)
# One page of a scan, from a position (None: the start), and the next position.
Scan = Callable[[str | None], Awaitable[tuple[list[T], str | None]]]


def _session_of(item: SessionRef | Unfinished) -> str:
    return item.session_id


class _Pass:
    """One run's state: counters, the clock, the budget and the concurrency limit."""

    def __init__(
        self,
        store: ArchiveStore,
        policy: ArchivePolicy,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.started = clock.now()
        self.cutoff = self.started - timedelta(days=policy.after_days)
        self.summary = ArchiveSummary(dry_run=policy.dry_run)
        self.slowest_s = 0.0  # the longest step so far predicts the next one
        self.failures_in_a_row = 0
        self.limit = AdaptiveLimit(policy.concurrency)
        # The current job's deadline, in seconds from the start (``run`` sets it per job).
        self.deadline_s = policy.time_budget_s

    def elapsed_s(self) -> float:
        return (self.clock.now() - self.started).total_seconds()

    def store_looks_down(self) -> bool:
        return self.failures_in_a_row >= MAX_CONSECUTIVE_FAILURES

    def check_time(self) -> None:
        """Before each step: stop the job if the step might not end before the job's deadline,
        or if so many steps failed in a row that the store looks down."""
        if self.elapsed_s() + self.slowest_s >= self.deadline_s:
            raise _Stop()
        if self.store_looks_down():
            raise _Stop()

    def wait_before_retry(self, exc: StorageUnavailable, attempt: int) -> float | None:
        """A throttled step or scan (counted): how long to wait before trying again (the
        store's Retry-After), or None when its tries are used up or the wait would not leave
        time within the budget for the step itself."""
        self.summary.throttled += 1
        wait = float(exc.retry_after_s or 1)
        if attempt == MAX_THROTTLED_ATTEMPTS:
            return None
        if self.elapsed_s() + wait + self.slowest_s >= self.deadline_s:
            return None
        return wait

    def leave_for_next_pass(self, what: str, session_id: str) -> None:
        """A step still throttled (or out of time to wait for the store) is not a failure:
        nothing happened to the session, and the next pass tries it again. It still counts
        towards stopping the pass: a store that refuses step after step may be down."""
        self.summary.more = True
        self.failures_in_a_row += 1
        log.info("archive_%s_left_for_next_pass", what, extra={"session_id": session_id})

    def failed(self, what: str, session_id: str | None, exc: BaseException) -> None:
        self.summary.failed += 1
        self.failures_in_a_row += 1
        # Type only: storage errors may quote item contents.
        log.warning(
            "archive_%s_failed", what, extra={"session_id": session_id, "error": type(exc).__name__}
        )

    # ---- running steps, a bounded number at a time ----

    async def run_all(self, what: str, steps: list[tuple[str, Step]]) -> None:
        """Run one page's steps with bounded, adaptive concurrency. Steps already started
        finish even when the budget runs out (a move is never cut off half-way on purpose)."""
        stop: _Stop | None = None
        async with asyncio.TaskGroup() as group:
            for session_id, step in steps:
                # The time is checked once a slot is free, when the step would really start.
                await self.limit.acquire()
                try:
                    self.check_time()
                except _Stop as exc:
                    await self.limit.release(throttled=False)
                    stop = exc
                    break
                group.create_task(self._run_one(what, session_id, step))
        if stop is not None:
            raise stop

    async def _run_one(self, what: str, session_id: str, step: Step) -> None:
        """One step, holding one slot of the limit. A throttled step (503 after the SDK's own
        retries) gives its slot back, waits the store's Retry-After and tries again."""
        for attempt in range(1, MAX_THROTTLED_ATTEMPTS + 1):
            started = self.clock.now()
            try:
                await step()
            except StorageUnavailable as exc:
                await self._step_ended(started, throttled=True)
                log.info("archive_throttled", extra={"session_id": session_id, "attempt": attempt})
                wait = self.wait_before_retry(exc, attempt)
                if wait is None:
                    self.leave_for_next_pass(what, session_id)
                    return
                await self.sleep(wait)
                await self.limit.acquire()
                continue
            except Exception as exc:  # one session's failure must not stop the others
                await self._step_ended(started, throttled=False)
                self.failed(what, session_id, exc)
                return
            await self._step_ended(started, throttled=False)
            self.failures_in_a_row = 0
            return

    async def _step_ended(self, started: datetime, *, throttled: bool) -> None:
        self.slowest_s = max(self.slowest_s, (self.clock.now() - started).total_seconds())
        await self.limit.release(throttled=throttled)

    # ---- scanning, a page at a time ----

    async def each_page(self, what: str, scan: Scan[T], step_for: Callable[[T], Step]) -> None:
        """Page through ``scan``, running each page's steps (bounded, adaptive concurrency)."""
        after: str | None = None
        while True:
            self.check_time()
            page, after = await self._scan_page(scan, after)
            await self.run_all(what, [(_session_of(item), step_for(item)) for item in page])
            if after is None:
                return

    async def _scan_page(self, scan: Scan[T], after: str | None) -> tuple[list[T], str | None]:
        """One page of a scan; throttled, it waits the store's Retry-After and asks again (up
        to five times, within the budget). A scan that still cannot be read fails the pass."""
        attempt = 1
        while True:
            try:
                return await scan(after)
            except StorageUnavailable as exc:
                wait = self.wait_before_retry(exc, attempt)
                if wait is None:
                    raise
                log.info("archive_scan_throttled", extra={"attempt": attempt})
                await self.sleep(wait)
                attempt += 1

    # ---- archiving stale sessions ----

    async def archive_stale(self) -> None:
        async def scan(after: str | None) -> tuple[list[SessionRef], str | None]:
            return await self.store.scan_stale(
                where="active", updated_before=self.cutoff, limit=SCAN_PAGE, after=after
            )

        await self.each_page("session", scan, self._archiver)

    def _archiver(self, ref: SessionRef) -> Step:
        async def archive() -> None:
            if self.policy.dry_run:
                self.summary.archived += 1
                return
            outcome = await self.store.archive(ref)
            if outcome is MoveOutcome.MOVED:
                self.summary.archived += 1
            else:
                self.summary.skipped += 1
                log.info(
                    "archive_skipped",
                    extra={"session_id": ref.session_id, "reason": outcome.value},
                )

        return archive

    # ---- housekeeping: interrupted moves and deletes ----

    async def finish_unfinished(self) -> None:
        older_than = self.started - UNFINISHED_GRACE

        async def scan(after: str | None) -> tuple[list[Unfinished], str | None]:
            return await self.store.scan_unfinished(
                older_than=older_than, limit=SCAN_PAGE, after=after
            )

        await self.each_page("resume", scan, self._finisher)

    def _finisher(self, item: Unfinished) -> Step:
        async def finish() -> None:
            if self.policy.dry_run:
                self.summary.resumed += 1
                return
            if await self.store.finish(item):
                self.summary.resumed += 1
                log.info(
                    "archive_resumed",
                    extra={"session_id": item.session_id, "state": item.state},
                )

        return finish

    # ---- retention ----

    async def apply_retention(self, days: int) -> None:
        """Delete conversations whose last activity is ``days`` old, archived then active
        (pinned ones are offered by neither scan). Each delete is conditional on the ETag the
        scan saw: a turn, restore, rename or pin meanwhile keeps the conversation."""
        before = self.started - timedelta(days=days)
        for where in ("archive", "active"):

            async def scan(
                after: str | None, where: Where = where
            ) -> tuple[list[SessionRef], str | None]:
                return await self.store.scan_stale(
                    where=where, updated_before=before, limit=SCAN_PAGE, after=after
                )

            await self.each_page("retention", scan, self._expirer)

    def _expirer(self, ref: SessionRef) -> Step:
        async def expire() -> None:
            if self.policy.dry_run or await self.store.expire(ref):
                self.summary.retention_deleted += 1

        return expire

    # ---- the whole run ----

    def jobs(self) -> list[tuple[Callable[[], Awaitable[None]], float]]:
        """The pass's jobs in order, each with its deadline (seconds from the start)."""
        budget = self.policy.time_budget_s
        days = self.policy.retention_days
        jobs: list[tuple[Callable[[], Awaitable[None]], float]] = [
            (self.finish_unfinished, HOUSEKEEPING_SHARE * budget),
            (self.archive_stale, budget - (RETENTION_SHARE * budget if days is not None else 0)),
        ]
        if days is not None:
            jobs.append((lambda: self.apply_retention(days), budget))
        return jobs

    async def run(self) -> ArchiveSummary:
        for job, deadline_s in self.jobs():
            self.deadline_s = deadline_s
            if not await self._run_job(job):
                break
        self.summary.duration_ms = int(self.elapsed_s() * 1000)
        return self.summary

    async def _run_job(self, job: Callable[[], Awaitable[None]]) -> bool:
        """One job until it is done or its deadline; False when the pass must stop."""
        scan_failed = False
        try:
            await job()
        except* _Stop:
            self.summary.more = True  # the job carries on in the next pass
        except* Exception as group:  # a scan failed: report it in the run's line, then stop
            self.summary.more = True
            self.failed("scan", None, group.exceptions[0])
            scan_failed = True
        return not (scan_failed or self.store_looks_down())


async def _record(store: ArchiveStore, summary: ArchiveSummary, started: datetime) -> None:
    """Keep the pass's counts where ``python -m shared.report`` reads them. A dry run changed
    nothing and is not kept. Never fails the pass: its work is done and its line logged."""
    if summary.dry_run:
        return
    run = ArchiveRun(uuid.uuid4().hex, started, summary.archived, summary.failed)
    try:
        await store.record_archive_run(run)
    except Exception as exc:  # the store is down or refused: the log line still has it all
        log.warning("archive_run_not_recorded %s", type(exc).__name__)


async def run_archive(
    store: ArchiveStore,
    policy: ArchivePolicy,
    *,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ArchiveSummary:
    """One archival pass within the time budget; logs its summary as one line, and keeps its
    counts in the store for the operators' report."""
    clock = clock or SystemClock()
    started = clock.now()
    summary = await _Pass(store, policy, clock, sleep).run()
    log.info("%s%s", RUN_LOG_PREFIX, summary.to_json())
    await _record(store, summary, started)
    emit(
        "archive_run",
        moved=summary.archived,
        failed=summary.failed,
        skipped=summary.skipped,
        resumed=summary.resumed,
        retentionDeleted=summary.retention_deleted,
        durationMs=max(0, summary.duration_ms),
        more=summary.more,
        dryRun=summary.dry_run,
    )
    return summary
