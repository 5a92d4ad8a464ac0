"""The archival pass on every store: selection, dry run, crashes and reruns, races, budget,
housekeeping, and what the service shows for archived sessions."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from shared.archive import ArchivePolicy, ArchiveSummary, restore_session, run_archive
from shared.clock import FixedClock
from shared.errors import StorageUnavailable
from shared.models import ChatRequest
from shared.storage.base import ConversationStore
from tests.archive.conftest import (
    NOW,
    Crash,
    FaultyStore,
    StoreFactory,
    assert_exactly_once,
    everything,
    items,
    seed,
    service,
)

ALICE, BOB = "alice@example.com", "bob@example.com"
DAYS = 30
CUTOFF = NOW - timedelta(days=DAYS)


def policy(**overrides: Any) -> ArchivePolicy:
    values: dict[str, Any] = {"after_days": DAYS, "time_budget_s": 240.0, **overrides}
    return ArchivePolicy(**values)


async def messages_of(store: ConversationStore, email: str, session_id: str) -> list[str]:
    state = await items(store, email, session_id)
    return state["active"][1] or state["archive"][1]


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
            orphaned = await seed(store, BOB, CUTOFF - timedelta(days=2), messages=3)
            await store.delete_session_item("active", BOB, orphaned, expected_etag=None)
            before = await everything(store, [ALICE, BOB])

            summary = await run_archive(
                store, policy(dry_run=True, retention_days=365), clock=clock
            )

            assert summary.model_dump(by_alias=True, exclude={"duration_ms"}) == {
                "archived": 3,
                "skipped": 0,
                "failed": 0,
                "orphansRemoved": 3,
                "retentionDeleted": 1,
                "more": False,
                "dryRun": True,
            }
            assert await everything(store, [ALICE, BOB]) == before
            assert len((await items(store, BOB, orphaned))["active"][1]) == 3

    asyncio.run(scenario())


# Where the injected failure strikes while archiving: (method, what the hook does).
CRASH_POINTS = ["after_copy", "at_commit_point", "after_partial_delete"]


def _crash_hook(point: str) -> tuple[str, Any]:
    async def after_copy(real: Any, where: str, *args: Any) -> None:
        await real(where, *args)
        if where == "archive":
            raise Crash()

    async def at_commit_point(real: Any, where: str, *args: Any, **kwargs: Any) -> None:
        if where == "active":
            raise Crash()
        await real(where, *args, **kwargs)

    async def after_partial_delete(
        real: Any, where: str, email: str, session_id: str, seqs: list[int]
    ) -> None:
        await real(where, email, session_id, seqs[: len(seqs) // 2])
        raise Crash()

    hooks = {
        "after_copy": ("put_items", after_copy),
        "at_commit_point": ("delete_session_item", at_commit_point),
        "after_partial_delete": ("delete_messages", after_partial_delete),
    }
    return hooks[point]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_then_a_rerun_leaves_every_item_exactly_once(
    stores: StoreFactory, clock: FixedClock, point: str
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            sessions = [await seed(store, ALICE, CUTOFF - timedelta(days=d), 4) for d in (1, 2)]
            fresh = await seed(store, ALICE, NOW)
            expected = {s: await messages_of(store, ALICE, s) for s in [*sessions, fresh]}
            faulty = FaultyStore(store)
            method, hook = _crash_hook(point)
            faulty.hooks[method] = hook

            crashed = await run_archive(faulty, policy(), clock=clock)  # type: ignore[arg-type]

            # A failing delete_messages also fails the same pass's orphan cleanup of the two.
            partial = point == "after_partial_delete"
            assert (crashed.archived, crashed.failed) == (0, 4 if partial else 2)
            svc = service(store, clock)
            for session_id in sessions:
                # Nothing lost, and the service shows one whole conversation meanwhile.
                detail = await svc.get_session(ALICE, session_id)
                assert detail.archived is (point == "after_partial_delete")
                assert len(detail.messages) == 4
                listed = await svc.list_sessions(
                    ALICE, limit=20, continuation=None, archived=detail.archived
                )
                assert session_id in {s.session_id for s in listed.sessions}

            clock.advance(minutes=1)
            rerun = await run_archive(store, policy(), clock=clock)

            assert (rerun.archived, rerun.failed) == (
                (0, 0) if point == "after_partial_delete" else (2, 0)
            )
            # Per session: the move deleted 2 of 4, the crashing orphan cleanup 1 of the other 2.
            assert rerun.orphans_removed == (2 if partial else 0)
            for session_id in sessions:
                await assert_exactly_once(store, ALICE, session_id, expected[session_id], "archive")
            await assert_exactly_once(store, ALICE, fresh, expected[fresh], "active")

    asyncio.run(scenario())


def test_a_crash_during_restore_then_a_rerun(stores: StoreFactory, clock: FixedClock) -> None:
    async def scenario() -> None:
        async with stores() as store:
            session_id = await seed(store, ALICE, CUTOFF - timedelta(days=3), 4)
            await run_archive(store, policy(), clock=clock)
            faulty = FaultyStore(store)

            async def partial_delete(
                real: Any, where: str, email: str, sid: str, seqs: list[int]
            ) -> None:
                await real(where, email, sid, seqs[:1])
                raise Crash()

            faulty.hooks["delete_messages"] = partial_delete
            svc = service(faulty, clock)  # type: ignore[arg-type]
            with pytest.raises(Crash):
                await svc.chat(ALICE, ChatRequest(message="back again", sessionId=session_id))

            # The restored copy is whole and active; the archive keeps only invisible leftovers.
            state = await items(store, ALICE, session_id)
            assert state["active"][0] is True and len(state["active"][1]) == 4
            assert state["archive"] == (False, state["active"][1][1:])
            svc = service(store, clock)
            result = await svc.chat(ALICE, ChatRequest(message="back again", sessionId=session_id))
            assert result.assistant.content == "echo[4]: back again"
            archived = await svc.list_sessions(ALICE, limit=20, continuation=None, archived=True)
            assert archived.sessions == []

            clock.advance(minutes=1)
            rerun = await run_archive(store, policy(), clock=clock)
            assert (rerun.archived, rerun.orphans_removed, rerun.failed) == (0, 3, 0)
            expected = (await items(store, ALICE, session_id))["active"][1]
            assert len(expected) == 6
            await assert_exactly_once(store, ALICE, session_id, expected, "active")

    asyncio.run(scenario())


def test_a_restore_that_fails_before_its_commit_point_keeps_the_archive(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            session_id = await seed(store, ALICE, CUTOFF - timedelta(days=3), 4)
            await run_archive(store, policy(), clock=clock)
            expected = (await items(store, ALICE, session_id))["archive"][1]
            faulty = FaultyStore(store)

            async def copy_fails(real: Any, where: str, *args: Any) -> None:
                raise StorageUnavailable()

            faulty.hooks["put_items"] = copy_fails
            with pytest.raises(StorageUnavailable):
                await restore_session(faulty, ALICE, session_id)  # type: ignore[arg-type]
            await assert_exactly_once(store, ALICE, session_id, expected, "archive")

            restored = await restore_session(store, ALICE, session_id)
            assert restored is not None and restored.archived is False
            await assert_exactly_once(store, ALICE, session_id, expected, "active")
            assert await restore_session(store, ALICE, "s_" + "0" * 32) is None

    asyncio.run(scenario())


@pytest.mark.parametrize("moment", ["after_scan", "after_copy"])
def test_a_message_between_scan_and_move_skips_the_session(
    stores: StoreFactory, clock: FixedClock, moment: str
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            busy = await seed(store, ALICE, CUTOFF - timedelta(days=5), 2)
            quiet = await seed(store, BOB, CUTOFF - timedelta(days=5), 2)
            svc = service(store, clock)
            faulty = FaultyStore(store)

            async def user_writes() -> None:
                await svc.chat(ALICE, ChatRequest(message="still here", sessionId=busy))

            wrote: list[bool] = []

            async def after_scan(real: Any, *args: Any, **kwargs: Any) -> Any:
                page = await real(*args, **kwargs)
                if args[0] == "active" and not wrote:
                    wrote.append(True)
                    await user_writes()
                return page

            async def after_copy(real: Any, where: str, session: Any, messages: Any) -> None:
                await real(where, session, messages)
                if where == "archive" and session.id == busy:
                    await user_writes()

            if moment == "after_scan":
                faulty.hooks["scan_sessions"] = after_scan
            else:
                faulty.hooks["put_items"] = after_copy

            summary = await run_archive(faulty, policy(), clock=clock)  # type: ignore[arg-type]

            assert (summary.archived, summary.skipped, summary.failed) == (1, 1, 0)
            state = await items(store, ALICE, busy)
            assert state["archive"] == (False, [])
            assert state["active"][0] is True and len(state["active"][1]) == 4
            detail = await svc.get_session(ALICE, busy)
            assert detail.archived is False
            assert [m.content for m in detail.messages][2:] == ["still here", "echo[2]: still here"]
            listed = await svc.list_sessions(ALICE, limit=20, continuation=None, archived=True)
            assert listed.sessions == []
            assert (await items(store, BOB, quiet))["archive"][0] is True

    asyncio.run(scenario())


def test_the_time_budget_stops_the_pass_and_the_next_run_continues(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            sessions = [await seed(store, ALICE, CUTOFF - timedelta(days=d)) for d in range(1, 6)]
            faulty = FaultyStore(store)

            async def slow_copy(real: Any, *args: Any) -> None:
                clock.advance(seconds=3)  # each move takes 3 s of the (fixed) clock
                await real(*args)

            faulty.hooks["put_items"] = slow_copy
            budget = policy(time_budget_s=10.0)

            first = await run_archive(faulty, budget, clock=clock)  # type: ignore[arg-type]
            # 0 s, 3 s and 6 s leave room for a 3 s move; at 9 s the next might not end in time.
            assert (first.archived, first.more, first.duration_ms) == (3, True, 9000)
            second = await run_archive(faulty, budget, clock=clock)  # type: ignore[arg-type]
            assert (second.archived, second.more, second.failed) == (2, False, 0)
            for session_id in sessions:
                assert (await items(store, ALICE, session_id))["active"] == (False, [])

    asyncio.run(scenario())


def test_orphans_and_retention(stores: StoreFactory, clock: FixedClock) -> None:
    async def scenario() -> None:
        async with stores() as store:
            old_orphan = await seed(store, ALICE, CUTOFF - timedelta(days=1), 3)
            new_orphan = await seed(store, ALICE, NOW - timedelta(days=1), 3)
            for session_id in (old_orphan, new_orphan):
                await store.delete_session_item("active", ALICE, session_id, expected_etag=None)
            expired = await seed(store, BOB, NOW - timedelta(days=400), where="archive")
            kept = await seed(store, BOB, NOW - timedelta(days=100), where="archive")

            summary = await run_archive(store, policy(retention_days=365), clock=clock)

            assert (summary.orphans_removed, summary.retention_deleted) == (3, 1)
            assert (await items(store, ALICE, old_orphan))["active"] == (False, [])
            assert len((await items(store, ALICE, new_orphan))["active"][1]) == 3
            assert (await items(store, BOB, expired))["archive"] == (False, [])
            assert (await items(store, BOB, kept))["archive"][0] is True

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
        'archive_run {"archived":1,"skipped":0,"failed":0,"orphansRemoved":0,'
        '"retentionDeleted":0,"durationMs":0,"more":false,"dryRun":false}'
    ]
    assert summary.archived == 1
    assert ALICE not in caplog.text  # no raw emails in the logs
