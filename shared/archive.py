"""Archival: moving sessions between the active and archive containers, and the timer's pass.

One move, both directions (the pass archives, a new message restores):

1. read the source session item (its ETag) and its messages;
2. copy them to the target: messages first, session item last, so a half-done copy has no
   session item and no reader sees it;
3. verify that every source item is in the target, equal;
4. re-read the source: a session deleted meanwhile must not be resurrected by our copy;
5. delete the source session item, if-match the ETag of step 1 (for the pass: the ETag its scan
   saw). This is the commit point: a turn that stored a message since then fails it, and the
   move is abandoned with the source untouched;
6. delete the source messages.

The source's session item goes before its messages (not after, as in a user's delete) because
of what readers see: a crash between 5 and 6 leaves message items without a session item in the
source, which no read shows (the service reads the session item, then that container's
messages); the complete copy with its session item is in the target. Deleting messages first
would leave, after a crash or a racing turn, a visible session with missing messages. The
leftover messages are ordinary orphans: the next pass's housekeeping removes them.

A crash at any step leaves every item whole in at least one container, and the next pass
finishes the job: a session whose move was interrupted before step 5 is still stale in the
active container and is moved again (the copy is an upsert: no duplicates).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import Clock, SystemClock
from shared.config import ConfigError, Settings, load_settings
from shared.errors import ConcurrencyConflict, StorageUnavailable
from shared.models import MessageRecord, SessionRecord
from shared.storage.base import ConversationStore, OrphanRef, SessionRef, Where

log = logging.getLogger("parley.archive")

RUN_LOG_PREFIX = "archive_run "  # infra/monitoring.py's alerts query this exact prefix
SCAN_PAGE = 100  # sessions per scan page: memory is bounded by a page, not by the backlog
ORPHAN_PAGE = 100
# After this many failed sessions in a row the store is probably down: stop, report more.
MAX_CONSECUTIVE_FAILURES = 10


class CopyNotVerified(StorageUnavailable):
    """The target does not hold an equal copy of every source item; nothing was deleted."""


# ---- the move ---------------------------------------------------------------------------------


class MoveOutcome(enum.Enum):
    MOVED = "moved"
    CHANGED = "changed"  # the session changed since it was read (a new turn): source untouched
    GONE = "gone"  # the source session item is not there (deleted, or moved by someone else)


@dataclass(frozen=True)
class MoveResult:
    outcome: MoveOutcome
    session: SessionRecord | None = None  # the target's session after a move


def _message_key(message: MessageRecord) -> str:
    return message.model_dump_json()


def _session_key(session: SessionRecord) -> str:
    # The ETag is the container's own, and ``archived`` says where it was read from.
    return session.model_dump_json(exclude={"etag", "archived"})


def _other(where: Where) -> Where:
    return "archive" if where == "active" else "active"


async def _copy(
    store: ConversationStore, session: SessionRecord, messages: list[MessageRecord], target: Where
) -> SessionRecord:
    """Upsert the items into ``target`` and verify them; returns the target's session."""
    await store.put_items(target, session, messages)
    copied = await store.get_session(session.email, session.id, target)
    stored = {
        m.seq: _message_key(m) for m in await store.list_messages(session.email, session.id, target)
    }
    # Every source item must be there and equal; extra newer items in the target are fine
    # (a turn may already have continued a restored session).
    if copied is None or _session_key(copied) != _session_key(session):
        raise CopyNotVerified("The copy of the session item could not be verified.")
    if any(stored.get(m.seq) != _message_key(m) for m in messages):
        raise CopyNotVerified("The copy of the messages could not be verified.")
    return copied


async def move_session(
    store: ConversationStore,
    email: str,
    session_id: str,
    source: Where,
    target: Where,
    *,
    expected_etag: str | None = None,
) -> MoveResult:
    """Move one session from ``source`` to ``target`` (see the module's steps). Safe to repeat
    after a crash at any step. ``expected_etag`` (the scan's) makes any later change a
    CHANGED outcome. Raises on storage errors, leaving every item whole somewhere."""
    session = await store.get_session(email, session_id, source)
    if session is None:
        return MoveResult(MoveOutcome.GONE)
    if expected_etag is not None and session.etag != expected_etag:
        return MoveResult(MoveOutcome.CHANGED)
    messages = await store.list_messages(email, session_id, source)
    copied = await _copy(store, session, messages, target)

    again = await store.get_session(email, session_id, source)
    if again is None:
        # Deleted (or moved by a concurrent pass) while we copied. Our copy may be the only one
        # left, so it stays; a user's delete removes both containers after the active one.
        return MoveResult(MoveOutcome.GONE, copied if target == "active" else None)
    try:
        await store.delete_session_item(source, email, session_id, expected_etag=session.etag)
    except ConcurrencyConflict:
        await _discard_copy(store, email, session_id, target)
        return MoveResult(MoveOutcome.CHANGED)
    await store.delete_messages(source, email, session_id, [m.seq for m in messages])
    return MoveResult(MoveOutcome.MOVED, copied)


async def _discard_copy(
    store: ConversationStore, email: str, session_id: str, target: Where
) -> None:
    """Remove the copy of an abandoned move, so the session is not listed twice.

    Only an archive copy: the source still has the session (its item was there with a newer
    ETag), and users never write to the archive, so the copy holds nothing new. An active copy
    (a restore) may already have a user's new message in it: it is never discarded."""
    if target == "archive":
        await store.delete_session(email, session_id, "archive")


async def restore_session(
    store: ConversationStore, email: str, session_id: str
) -> SessionRecord | None:
    """Bring an archived session back to the active container (None if it is not archived)."""
    active = await store.get_session(email, session_id, "active")
    if active is not None:  # a concurrent request restored it first
        return active
    result = await move_session(store, email, session_id, "archive", "active")
    if result.outcome is MoveOutcome.CHANGED:
        # The archive copy changed under us (a concurrent move): the caller may retry.
        raise StorageUnavailable("The conversation is being moved; try again.", retry_after_s=1)
    if result.session is not None:
        log.info("session_restored", extra={"session_id": session_id})
    return result.session


# ---- the pass ---------------------------------------------------------------------------------


class ArchiveSummary(BaseModel):
    """The run's one-line report (API.md's fields first; ``retentionDeleted`` and ``dryRun``
    are additions)."""

    model_config = ConfigDict(populate_by_name=True)

    archived: int = 0
    skipped: int = 0
    failed: int = 0
    orphans_removed: int = Field(0, alias="orphansRemoved")
    retention_deleted: int = Field(0, alias="retentionDeleted")
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

    @classmethod
    def from_settings(
        cls, settings: Settings, *, older_than_days: int | None = None, dry_run: bool = False
    ) -> ArchivePolicy:
        return cls(
            after_days=older_than_days or settings.archive_after_days,
            time_budget_s=settings.archive_time_budget_s,
            retention_days=settings.archive_retention_days,
            dry_run=dry_run,
        )


class _OutOfTime(Exception):
    """Stop the pass: the next step might not end within the time budget, or so many steps
    failed in a row that the store looks down."""


class _Pass:
    """One run's state: counters, the clock and the budget."""

    def __init__(self, store: ConversationStore, policy: ArchivePolicy, clock: Clock) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.started = clock.now()
        self.cutoff = self.started - timedelta(days=policy.after_days)
        self.summary = ArchiveSummary(dry_run=policy.dry_run)
        self.slowest_s = 0.0  # the longest step so far predicts the next one
        self.failures_in_a_row = 0

    def elapsed_s(self) -> float:
        return (self.clock.now() - self.started).total_seconds()

    def check_time(self) -> None:
        """Called between steps: stop before a step that might not end within the budget."""
        if self.elapsed_s() + self.slowest_s >= self.policy.time_budget_s:
            raise _OutOfTime()
        if self.failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
            raise _OutOfTime()

    def measured(self, step_started: datetime) -> None:
        self.slowest_s = max(self.slowest_s, (self.clock.now() - step_started).total_seconds())

    def failed(self, what: str, session_id: str | None, exc: Exception) -> None:
        self.summary.failed += 1
        self.failures_in_a_row += 1
        # Type only: storage errors may quote item contents.
        log.warning(
            "archive_%s_failed", what, extra={"session_id": session_id, "error": type(exc).__name__}
        )

    # ---- archiving stale sessions ----

    async def archive_stale(self) -> None:
        continuation: str | None = None
        while True:
            self.check_time()
            page, continuation = await self.store.scan_sessions(
                "active", updated_before=self.cutoff, limit=SCAN_PAGE, continuation=continuation
            )
            for ref in page:
                self.check_time()
                await self.archive_one(ref)
            if continuation is None:
                return

    async def archive_one(self, ref: SessionRef) -> None:
        if self.policy.dry_run:
            self.summary.archived += 1
            return
        step_started = self.clock.now()
        try:
            result = await move_session(
                self.store, ref.email, ref.session_id, "active", "archive", expected_etag=ref.etag
            )
        except Exception as exc:  # one session's failure must not stop the others
            self.failed("session", ref.session_id, exc)
            return
        finally:
            self.measured(step_started)
        self.failures_in_a_row = 0
        if result.outcome is MoveOutcome.MOVED:
            self.summary.archived += 1
        else:
            self.summary.skipped += 1
            log.info(
                "archive_skipped",
                extra={"session_id": ref.session_id, "reason": result.outcome.value},
            )

    # ---- housekeeping: orphan messages ----

    async def remove_orphans(self, where: Where) -> None:
        # scan_orphans has no continuation: the orphans we leave (see below) come back, so
        # stop at a page with nothing new. Orphans are rare (interrupted deletes and moves).
        seen: set[tuple[str, str]] = set()
        while True:
            self.check_time()
            page = await self.store.scan_orphans(where, older_than=self.cutoff, limit=ORPHAN_PAGE)
            fresh = [o for o in page if (o.email, o.session_id) not in seen]
            if not fresh:
                return
            for orphan in fresh:
                seen.add((orphan.email, orphan.session_id))
                self.check_time()
                step_started = self.clock.now()
                try:
                    self.summary.orphans_removed += await self.remove_orphan(where, orphan)
                    self.failures_in_a_row = 0
                except Exception as exc:
                    self.failed("orphan", orphan.session_id, exc)
                finally:
                    self.measured(step_started)

    async def remove_orphan(self, where: Where, orphan: OrphanRef) -> int:
        """Delete the old message items of a session whose session item is gone from
        ``where``; returns how many (or would, in a dry run)."""
        email, session_id = orphan.email, orphan.session_id
        old = [
            m
            for m in await self.store.list_messages(email, session_id, where)
            if m.timestamp < self.cutoff
        ]
        if await self.store.get_session(email, session_id, where) is not None:
            return 0  # a session item came back (a restore): these are not orphans any more
        if await self.store.get_session(email, session_id, _other(where)) is not None:
            # Leftovers of an interrupted move, or a move under way: remove only what the other
            # container holds an equal copy of, so nothing is ever lost.
            kept = {
                m.seq: _message_key(m)
                for m in await self.store.list_messages(email, session_id, _other(where))
            }
            old = [m for m in old if kept.get(m.seq) == _message_key(m)]
        if old and not self.policy.dry_run:
            await self.store.delete_messages(where, email, session_id, [m.seq for m in old])
            log.info("orphans_removed", extra={"session_id": session_id, "count": len(old)})
        return len(old)

    # ---- retention ----

    async def apply_retention(self, days: int) -> None:
        before = self.started - timedelta(days=days)
        continuation: str | None = None
        while True:
            self.check_time()
            page, continuation = await self.store.scan_sessions(
                "archive", updated_before=before, limit=SCAN_PAGE, continuation=continuation
            )
            for ref in page:
                self.check_time()
                await self.expire_one(ref)
            if continuation is None:
                return

    async def expire_one(self, ref: SessionRef) -> None:
        if self.policy.dry_run:
            self.summary.retention_deleted += 1
            return
        step_started = self.clock.now()
        try:
            if await self.store.delete_session(ref.email, ref.session_id, "archive"):
                self.summary.retention_deleted += 1
            self.failures_in_a_row = 0
        except Exception as exc:
            self.failed("retention", ref.session_id, exc)
        finally:
            self.measured(step_started)

    # ---- the whole run ----

    async def run(self) -> ArchiveSummary:
        try:
            await self.archive_stale()
            await self.remove_orphans("active")
            await self.remove_orphans("archive")
            if self.policy.retention_days is not None:
                await self.apply_retention(self.policy.retention_days)
        except _OutOfTime:
            self.summary.more = True
        except Exception as exc:  # a scan failed: report it in the run's line, then stop
            self.summary.more = True
            self.failed("scan", None, exc)
        self.summary.duration_ms = int(self.elapsed_s() * 1000)
        return self.summary


async def run_archive(
    store: ConversationStore, policy: ArchivePolicy, *, clock: Clock | None = None
) -> ArchiveSummary:
    """One archival pass: stale sessions to the archive, orphan messages removed, archived
    sessions past retention deleted, within the time budget. Logs its summary as one line."""
    summary = await _Pass(store, policy, clock or SystemClock()).run()
    log.info("%s%s", RUN_LOG_PREFIX, summary.to_json())
    return summary


# ---- python -m shared.archive ------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.archive",
        description="Run one archival pass with the configured storage; print a JSON summary.",
    )
    parser.add_argument(
        "--older-than-days",
        type=int,
        metavar="N",
        help="archive sessions not updated for N days (default: ARCHIVE_AFTER_DAYS)",
    )
    parser.add_argument("--dry-run", action="store_true", help="change nothing, count only")
    args = parser.parse_args(argv)
    if args.older_than_days is not None and args.older_than_days < 1:
        parser.error("--older-than-days must be at least 1")
    return args


async def _main(args: argparse.Namespace, settings: Settings) -> ArchiveSummary:
    from shared.storage import make_store

    store = make_store(settings)
    try:
        policy = ArchivePolicy.from_settings(
            settings, older_than_days=args.older_than_days, dry_run=args.dry_run
        )
        return await run_archive(store, policy)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 after a clean run, 1 if anything failed, 2 for bad arguments or settings."""
    args = parse_args(argv)
    # Warnings (failed sessions) go to stderr; stdout carries only the JSON line.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    summary = asyncio.run(_main(args, settings))
    print(summary.to_json(), flush=True)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
