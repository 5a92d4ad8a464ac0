"""The archival pass on every store: selection, dry run, crashes and reruns, a message between
the scan and the move, the time budget, bounded concurrency and throttling, housekeeping,
retention, and what the service shows for archived sessions.

Interleavings of a move with everything else that can happen to a session have their own
suite (test_interleavings.py); live traffic against back-to-back passes is test_stress.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from shared.archive import ArchivePolicy, ArchiveSummary, run_archive
from shared.archive.sweep import UNFINISHED_GRACE, AdaptiveLimit
from shared.clock import FixedClock
from shared.errors import StorageUnavailable
from shared.events import parse_line
from shared.models import ChatRequest
from shared.storage.base import Store, Unfinished
from tests.shared.archive.support import NOW, StoreFactory, service
from tests.support.faulty import Crash, FaultyStore
from tests.support.scenarios import seed
from tests.support.store_state import assert_exactly_once, everything, items, raw_items

ALICE, BOB = "alice@example.com", "bob@example.com"
DAYS = 30
CUTOFF = NOW - timedelta(days=DAYS)


class Waits(list[float]):
    """The pass's sleep: each wait it asks for, recorded instead of slept."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def policy(**overrides: Any) -> ArchivePolicy:
    values: dict[str, Any] = {"after_days": DAYS, "time_budget_s": 240.0, **overrides}
    return ArchivePolicy(**values)


async def no_pause(_: float) -> None:
    return None


async def messages_of(store: Store, email: str, session_id: str) -> list[str]:
    state = await items(store, email, session_id)
    return state["active"][1] or state["archive"][1]


def is_cosmos(store: Store) -> bool:
    return hasattr(store, "moves")


def test_the_boundary_is_exact(stores: StoreFactory, clock: FixedClock) -> None:
    async def scenario() -> None:
        async with stores() as store:
            at_cutoff = await seed(store, ALICE, CUTOFF)
            just_older = await seed(store, ALICE, CUTOFF - timedelta(milliseconds=1))
            other_user = await seed(store, BOB, CUTOFF - timedelta(days=400))
            fresh = await seed(store, BOB, NOW - timedelta(hours=1))
            before = {
                s: await messages_of(store, e, s)
                for e, s in [
                    (ALICE, at_cutoff),
                    (ALICE, just_older),
                    (BOB, other_user),
                    (BOB, fresh),
                ]
            }

            summary = await run_archive(store, policy(), clock=clock)

            assert (summary.archived, summary.skipped, summary.failed) == (2, 0, 0)
            assert summary.more is False
            await assert_exactly_once(store, ALICE, just_older, before[just_older], "archive")
            await assert_exactly_once(store, BOB, other_user, before[other_user], "archive")
            await assert_exactly_once(store, ALICE, at_cutoff, before[at_cutoff], "active")
            await assert_exactly_once(store, BOB, fresh, before[fresh], "active")
            # The service: hidden from the default list, listed with archived=true, readable.
            svc = service(store, clock)
            listed = await svc.list_sessions(ALICE, limit=20, continuation=None, archived=False)
            assert [s.session_id for s in listed.sessions] == [at_cutoff]
            archived = await svc.list_sessions(ALICE, limit=20, continuation=None, archived=True)
            assert [(s.session_id, s.archived) for s in archived.sessions] == [(just_older, True)]
            detail = await svc.get_session(ALICE, just_older)
            assert detail.archived is True and len(detail.messages) == 2

    asyncio.run(scenario())


def test_a_dry_run_changes_nothing(stores: StoreFactory, clock: FixedClock) -> None:
    async def scenario() -> None:
        async with stores() as store:
            for _ in range(3):
                await seed(store, ALICE, CUTOFF - timedelta(days=1))
            await seed(store, BOB, NOW)
            await seed(store, BOB, NOW - timedelta(days=500), where="archive")
            before = await everything(store, [ALICE, BOB])

            summary = await run_archive(
                store, policy(dry_run=True, retention_days=365), clock=clock
            )

            assert summary.model_dump(by_alias=True, exclude={"duration_ms"}) == {
                "archived": 3,
                "skipped": 0,
                "failed": 0,
                "resumed": 0,
                "retentionDeleted": 1,
                "throttled": 0,
                "more": False,
                "dryRun": True,
            }
            assert await everything(store, [ALICE, BOB]) == before

    asyncio.run(scenario())


# The steps of a move at which a crash is injected (the Cosmos store's checkpoints; on SQLite a
# move is one transaction, so a crash there means the move did not happen).
MOVE_STEPS = ["archive:read", "archive:copied", "archive:committed", "archive:activated"]


@pytest.mark.parametrize("step", MOVE_STEPS)
def test_a_crash_at_any_step_then_a_rerun_leaves_every_item_exactly_once(
    stores: StoreFactory, clock: FixedClock, step: str
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            sessions = [await seed(store, ALICE, CUTOFF - timedelta(days=d), 4) for d in (1, 2)]
            fresh = await seed(store, ALICE, NOW)
            expected = {s: await messages_of(store, ALICE, s) for s in [*sessions, fresh]}
            crashed_at: list[str] = []

            async def crash(at: str, session_id: str) -> None:
                if at == step:
                    crashed_at.append(session_id)
                    raise Crash()

            if is_cosmos(store):
                store.moves.checkpoint = crash  # type: ignore[attr-defined]
                crashed = await run_archive(store, policy(), clock=clock)
            else:
                faulty = FaultyStore(store)

                async def archive_crashes(real: Any, ref: Any) -> Any:
                    crashed_at.append(ref.session_id)
                    raise Crash()

                faulty.hooks["archive"] = archive_crashes
                crashed = await run_archive(faulty, policy(), clock=clock)  # type: ignore[arg-type]

            assert (crashed.archived, crashed.failed) == (0, 2)
            assert sorted(crashed_at) == sorted(sessions)
            if is_cosmos(store):
                store.moves.checkpoint = None  # type: ignore[attr-defined]
            svc = service(store, clock)
            for session_id in sessions:
                # Nothing lost, and the service shows one whole conversation meanwhile.
                detail = await svc.get_session(ALICE, session_id)
                assert [m.content for m in detail.messages] == [
                    m.split('"content":"')[1].split('"')[0] for m in expected[session_id]
                ]

            # The next pass, after the grace housekeeping gives a move that may be under way.
            clock.advance(seconds=UNFINISHED_GRACE.total_seconds() + 60)
            rerun = await run_archive(store, policy(), clock=clock)

            assert rerun.failed == 0
            for session_id in sessions:
                await assert_exactly_once(store, ALICE, session_id, expected[session_id], "archive")
                listed = await svc.list_sessions(ALICE, limit=20, continuation=None, archived=True)
                assert session_id in {s.session_id for s in listed.sessions}
            await assert_exactly_once(store, ALICE, fresh, expected[fresh], "active")
            # Nothing is left over anywhere: one session item per container that holds one
            # (the archive's, and the active stub on Cosmos), no stray message or state.
            raw = await raw_items(store, ALICE)
            assert not [
                i
                for i in raw["active"] + raw["archive"]
                if i.get("state") not in (None, "archived")
            ]
            assert not [i for i in raw["active"] if i.get("cleanup")]

    asyncio.run(scenario())


@pytest.mark.parametrize("moment", ["after_scan", "between_copy_and_commit"])
def test_a_message_between_scan_and_move_skips_the_session(
    stores: StoreFactory, clock: FixedClock, moment: str
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            busy = await seed(store, ALICE, CUTOFF - timedelta(days=5), 2)
            quiet = await seed(store, BOB, CUTOFF - timedelta(days=5), 2)
            svc = service(store, clock)
            target: Any = store

            async def user_writes() -> None:
                await svc.chat(ALICE, ChatRequest(message="still here", sessionId=busy))

            if moment == "after_scan":
                faulty = FaultyStore(store)
                wrote: list[bool] = []

                async def after_scan(real: Any, *args: Any, **kwargs: Any) -> Any:
                    page = await real(*args, **kwargs)
                    if kwargs["where"] == "active" and not wrote:
                        wrote.append(True)
                        await user_writes()
                    return page

                faulty.hooks["scan_stale"] = after_scan
                target = faulty
            elif is_cosmos(store):

                async def write_then(at: str, session_id: str) -> None:
                    if at == "archive:copied" and session_id == busy:
                        await user_writes()

                store.moves.checkpoint = write_then  # type: ignore[attr-defined]
            else:
                faulty = FaultyStore(store)

                async def write_first(real: Any, ref: Any) -> Any:
                    if ref.session_id == busy:
                        await user_writes()
                    return await real(ref)

                faulty.hooks["archive"] = write_first
                target = faulty

            summary = await run_archive(target, policy(), clock=clock)

            assert (summary.archived, summary.skipped, summary.failed) == (1, 1, 0)
            state = await items(store, ALICE, busy)
            assert state["archive"] == (False, [])
            assert state["active"][0] is True and len(state["active"][1]) == 4
            detail = await svc.get_session(ALICE, busy)
            assert detail.archived is False
            assert [m.content for m in detail.messages][2:] == [
                "still here",
                "echo[2]:\nstill here",
            ]
            listed = await svc.list_sessions(ALICE, limit=20, continuation=None, archived=True)
            assert listed.sessions == []
            assert (await items(store, BOB, quiet))["archive"][0] is True
            # The abandoned copy left nothing in the archive.
            assert (await raw_items(store, ALICE))["archive"] == []

    asyncio.run(scenario())


def test_the_time_budget_stops_the_pass_and_the_next_run_continues(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            sessions = [await seed(store, ALICE, CUTOFF - timedelta(days=d)) for d in range(1, 6)]
            faulty = FaultyStore(store)

            async def slow_move(real: Any, ref: Any) -> Any:
                clock.advance(seconds=3)  # each move takes 3 s of the (fixed) clock
                return await real(ref)

            faulty.hooks["archive"] = slow_move
            # One at a time, so the clock's 3 s steps add up predictably.
            budget = policy(time_budget_s=10.0, concurrency=1)

            first = await run_archive(faulty, budget, clock=clock)  # type: ignore[arg-type]
            # 0 s, 3 s and 6 s leave room for a 3 s move; at 9 s the next might not end in time.
            assert (first.archived, first.more, first.duration_ms) == (3, True, 9000)
            second = await run_archive(faulty, budget, clock=clock)  # type: ignore[arg-type]
            assert (second.archived, second.more, second.failed) == (2, False, 0)
            for session_id in sessions:
                assert (await items(store, ALICE, session_id))["active"] == (False, [])

    asyncio.run(scenario())


def test_a_backlog_past_the_budget_leaves_housekeeping_and_retention_their_share(
    stores: StoreFactory, clock: FixedClock
) -> None:
    """Housekeeping and retention each have their share of the budget (sweep.HOUSEKEEPING_SHARE,
    RETENTION_SHARE): a stale backlog that would take the whole budget is archived as far as
    its own share goes, and an interrupted move and an expired session are still seen to in
    the same pass; the rest of the backlog is the next pass's."""

    async def scenario() -> None:
        async with stores() as store:
            backlog = [await seed(store, ALICE, CUTOFF - timedelta(days=d)) for d in range(1, 11)]
            expired = await seed(store, BOB, NOW - timedelta(days=400), where="archive")
            faulty = FaultyStore(store)
            # An interrupted move for housekeeping (the SQLite store never leaves one: its
            # moves are single transactions), offered once by a scan of its own.
            interrupted = Unfinished("active", BOB, "s_interrupted", "restoring")
            offered: list[Unfinished] = []
            finished: list[Unfinished] = []

            async def scan_unfinished(real: Any, **kwargs: Any) -> Any:
                page, after = await real(**kwargs)
                if offered:
                    return page, after
                offered.append(interrupted)
                return [*page, interrupted], after

            async def finish(real: Any, item: Unfinished) -> bool:
                clock.advance(seconds=3)
                if item is interrupted:
                    finished.append(item)
                    return True
                return bool(await real(item))

            async def slow(real: Any, ref: Any) -> Any:
                clock.advance(seconds=3)  # each step takes 3 s of the (fixed) clock
                return await real(ref)

            faulty.hooks.update(
                scan_unfinished=scan_unfinished, finish=finish, archive=slow, expire=slow
            )
            # 10 moves of 3 s are 30 s: more than the whole budget of 20 s.
            budget = policy(time_budget_s=20.0, concurrency=1, retention_days=365)

            summary = await run_archive(faulty, budget, clock=clock)  # type: ignore[arg-type]

            assert finished == [interrupted]
            assert summary.resumed == 1 and summary.retention_deleted == 1
            # Housekeeping took 3 s; archival stops when a 3 s move might pass its deadline
            # (the budget less retention's 2 s share): moves at 3, 6, 9 and 12 s.
            assert (summary.archived, summary.more, summary.failed) == (4, True, 0)
            assert summary.duration_ms == 18_000
            assert (await items(store, BOB, expired))["archive"] == (False, [])
            left = [s for s in backlog if (await items(store, ALICE, s))["active"][0]]
            assert len(left) == 6

    asyncio.run(scenario())


def test_moves_run_concurrently_but_never_more_than_the_limit(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            sessions = [
                await seed(store, f"user{i}@example.com", CUTOFF - timedelta(days=1))
                for i in range(12)
            ]
            faulty = FaultyStore(store)
            running = 0
            most = 0
            released = asyncio.Event()

            async def counted(real: Any, ref: Any) -> Any:
                nonlocal running, most
                running += 1
                most = max(most, running)
                if running == 4:
                    released.set()  # the limit is reached: let everyone go on
                await released.wait()
                try:
                    return await real(ref)
                finally:
                    running -= 1

            faulty.hooks["archive"] = counted
            summary = await run_archive(faulty, policy(concurrency=4), clock=clock)  # type: ignore[arg-type]
            assert (summary.archived, summary.failed, most) == (12, 0, 4)
            for i, session_id in enumerate(sessions):
                assert (await items(store, f"user{i}@example.com", session_id))["archive"][0]

    asyncio.run(scenario())


def test_throttling_slows_the_pass_down_and_never_fails_it(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            for i in range(6):
                await seed(store, f"user{i}@example.com", CUTOFF - timedelta(days=1))
            faulty = FaultyStore(store)
            refusals = 0
            waits = Waits()

            async def throttled(real: Any, ref: Any) -> Any:
                nonlocal refusals
                if refusals < 4:  # the store answers 429 (after the SDK's own retries) 4 times
                    refusals += 1
                    raise StorageUnavailable(retry_after_s=2)
                return await real(ref)

            faulty.hooks["archive"] = throttled
            summary = await run_archive(
                faulty,  # type: ignore[arg-type]
                policy(concurrency=4),
                clock=clock,
                sleep=waits,
            )
            assert (summary.archived, summary.failed, summary.throttled) == (6, 0, 4)
            assert waits == [2.0, 2.0, 2.0, 2.0]  # each waited for what the store asked

    asyncio.run(scenario())


def test_a_session_still_throttled_is_left_for_the_next_pass_not_failed(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            unlucky = await seed(store, ALICE, CUTOFF - timedelta(days=1))
            others = [await seed(store, BOB, CUTOFF - timedelta(days=d)) for d in (1, 2)]
            faulty = FaultyStore(store)
            waits = Waits()

            async def throttled(real: Any, ref: Any) -> Any:
                if ref.session_id == unlucky:  # its partition stays hot all pass long
                    raise StorageUnavailable(retry_after_s=1)
                return await real(ref)

            faulty.hooks["archive"] = throttled
            summary = await run_archive(faulty, policy(), clock=clock, sleep=waits)  # type: ignore[arg-type]
            assert (summary.archived, summary.failed, summary.throttled) == (2, 0, 5)
            assert summary.more and waits == [1.0] * 4
            assert (await items(store, ALICE, unlucky))["active"][0]  # untouched, readable
            for session_id in others:
                assert (await items(store, BOB, session_id))["archive"][0]

            calm = await run_archive(store, policy(), clock=clock, sleep=waits)
            assert (calm.archived, calm.failed, calm.more) == (1, 0, False)

    asyncio.run(scenario())


def test_a_throttled_session_never_waits_past_the_time_budget(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            session_id = await seed(store, ALICE, CUTOFF - timedelta(days=1))
            faulty = FaultyStore(store)
            waits = Waits()

            async def throttled(real: Any, ref: Any) -> Any:
                raise StorageUnavailable(retry_after_s=30)  # longer than the budget left

            faulty.hooks["archive"] = throttled
            summary = await run_archive(
                faulty,  # type: ignore[arg-type]
                policy(time_budget_s=20.0),
                clock=clock,
                sleep=waits,
            )
            assert (summary.archived, summary.failed, summary.throttled) == (0, 0, 1)
            assert summary.more and waits == []
            assert (await items(store, ALICE, session_id))["active"][0]

    asyncio.run(scenario())


@pytest.mark.parametrize(("refusals", "archived", "failed"), [(2, 2, 0), (5, 0, 1)])
def test_a_throttled_scan_is_asked_again_and_fails_the_pass_only_when_it_never_answers(
    stores: StoreFactory, clock: FixedClock, refusals: int, archived: int, failed: int
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            for d in (1, 2):
                await seed(store, ALICE, CUTOFF - timedelta(days=d))
            faulty = FaultyStore(store)
            refused = 0
            waits = Waits()

            async def throttled_scan(real: Any, *args: Any, **kwargs: Any) -> Any:
                nonlocal refused
                if refused < refusals:
                    refused += 1
                    raise StorageUnavailable(retry_after_s=3)
                return await real(*args, **kwargs)

            faulty.hooks["scan_stale"] = throttled_scan
            summary = await run_archive(faulty, policy(), clock=clock, sleep=waits)  # type: ignore[arg-type]
            assert (summary.archived, summary.failed, summary.throttled) == (
                archived,
                failed,
                refusals,
            )
            assert summary.more is bool(failed)
            assert waits == [3.0] * min(refusals, 4)  # the last of five is not waited for

    asyncio.run(scenario())


def test_the_limit_halves_on_throttling_and_grows_back() -> None:
    async def scenario() -> None:
        limit = AdaptiveLimit(8)
        await limit.acquire()
        await limit.release(throttled=True)
        await limit.acquire()
        await limit.release(throttled=True)
        assert limit.limit == 2
        for _ in range(AdaptiveLimit.GROW_AFTER):
            await limit.acquire()
            await limit.release(throttled=False)
        assert limit.limit == 3
        for _ in range(10):
            await limit.acquire()
            await limit.release(throttled=True)
        assert limit.limit == 1  # never below one

    asyncio.run(scenario())


def test_retention_deletes_expired_archived_sessions_only(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            expired = await seed(store, BOB, NOW - timedelta(days=400), where="archive")
            kept = await seed(store, BOB, NOW - timedelta(days=100), where="archive")
            active_old = await seed(store, ALICE, NOW - timedelta(days=400))

            summary = await run_archive(store, policy(retention_days=365), clock=clock)

            # Retention counts from the last activity: the old active session is archived, then
            # expired by the same pass.
            assert (summary.archived, summary.retention_deleted) == (1, 2)
            assert (await items(store, BOB, expired)) == {
                "active": (False, []),
                "archive": (False, []),
            }
            assert (await items(store, BOB, kept))["archive"][0] is True
            assert (await items(store, ALICE, active_old)) == {
                "active": (False, []),
                "archive": (False, []),
            }
            raw = await raw_items(store, BOB)
            ids = {i.get("id") or i.get("session_id") for i in raw["active"] + raw["archive"]}
            assert expired not in ids  # not even a stub is left of it

    asyncio.run(scenario())


def test_the_summary_is_one_log_line(
    stores: StoreFactory, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> ArchiveSummary:
        async with stores() as store:
            await seed(store, ALICE, CUTOFF - timedelta(days=1))
            return await run_archive(store, policy(), clock=clock)

    with caplog.at_level("INFO", logger="parley.archive"):
        summary = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("archive_run ")]
    assert lines == [
        'archive_run {"archived":1,"skipped":0,"failed":0,"resumed":0,"retentionDeleted":0,'
        '"throttled":0,"durationMs":0,"more":false,"dryRun":false}'
    ]
    assert summary.archived == 1
    assert ALICE not in caplog.text  # no raw emails in the logs


def test_the_pass_emits_one_analytics_event_with_its_counts(
    stores: StoreFactory, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The workbook's archival chart (infra/workbook/archival.kql) reads this event."""

    async def scenario() -> ArchiveSummary:
        async with stores() as store:
            await seed(store, ALICE, CUTOFF - timedelta(days=1))
            await seed(store, ALICE, CUTOFF + timedelta(days=1))
            return await run_archive(store, policy(), clock=clock)

    with caplog.at_level("INFO", logger="parley.events"):
        asyncio.run(scenario())
    events = [parse_line(r.getMessage()) for r in caplog.records if r.name == "parley.events"]
    assert events == [
        (
            "archive_run",
            {
                "moved": 1,
                "failed": 0,
                "skipped": 0,
                "resumed": 0,
                "retentionDeleted": 0,
                "durationMs": 0,
                "more": False,
                "dryRun": False,
            },
        )
    ]


@pytest.mark.parametrize("step", MOVE_STEPS[:3])
def test_a_move_throttled_half_way_is_finished_by_the_retry(
    cosmos_stores: StoreFactory, clock: FixedClock, step: str
) -> None:
    """Throttling can strike between any two steps of a move: the pass tries the session
    again, and the retry carries on with that very move (it is archived, listed and counted):
    it takes over the copy its own host left (never waiting out the lease as for another
    host's claim), and finishes a move that already committed instead of calling the session
    gone."""

    async def scenario() -> None:
        async with cosmos_stores() as store:
            session_id = await seed(store, ALICE, CUTOFF - timedelta(days=1), 4)
            expected = await messages_of(store, ALICE, session_id)
            refusals: list[str] = []

            async def throttled_once(at: str, _: str) -> None:
                if at == step and not refusals:
                    refusals.append(at)
                    raise StorageUnavailable(retry_after_s=1)

            store.moves.checkpoint = throttled_once  # type: ignore[attr-defined]
            summary = await run_archive(store, policy(), clock=clock, sleep=no_pause)

            assert (summary.archived, summary.skipped, summary.throttled) == (1, 0, 1)
            await assert_exactly_once(store, ALICE, session_id, expected, "archive")
            listed, _ = await store.list_sessions(ALICE, where="archive", limit=5, after=None)
            assert [s.id for s in listed] == [session_id]

    asyncio.run(scenario())


@pytest.mark.parametrize("step", ["restore:read", "restore:copied", "restore:committed"])
def test_a_restore_throttled_half_way_is_finished_by_the_users_retry(
    cosmos_stores: StoreFactory, clock: FixedClock, step: str
) -> None:
    """A message to an archived session restores it first; throttled half-way, the turn is a
    503 and stores nothing, and the user's retry on the same host carries that restore on at
    once (its own claim is not another host's move under way: no 503s for the lease's two
    minutes)."""

    async def scenario() -> None:
        async with cosmos_stores() as store:
            session_id = await seed(store, ALICE, CUTOFF - timedelta(days=1), 4, where="archive")
            svc = service(store, clock)
            before = [m.content for m in (await svc.get_session(ALICE, session_id)).messages]
            refusals: list[str] = []

            async def throttled_once(at: str, _: str) -> None:
                if at == step and not refusals:
                    refusals.append(at)
                    raise StorageUnavailable(retry_after_s=1)

            store.moves.checkpoint = throttled_once  # type: ignore[attr-defined]
            request = ChatRequest(message="back again", sessionId=session_id)
            with pytest.raises(StorageUnavailable):
                await svc.chat(ALICE, request)
            answer = await svc.chat(ALICE, request)

            assert refusals == [step]
            detail = await svc.get_session(ALICE, session_id)
            assert [m.content for m in detail.messages] == [
                *before,
                "back again",
                answer.assistant.content,
            ]
            state = await items(store, ALICE, session_id)
            assert (state["active"][0], state["archive"]) == (True, (False, []))

    asyncio.run(scenario())
