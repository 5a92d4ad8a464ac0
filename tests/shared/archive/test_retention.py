"""Retention (``RETENTION_DAYS``) in the archival pass, on every store: conversations whose last
activity is older are deleted, active or archived, pinned ones never; and each delete racing a
turn or a restore (paused between the scan and the delete, with the other done meanwhile)
keeps whatever was acknowledged."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from shared.archive.sweep import ArchivePolicy, run_archive
from shared.clock import FixedClock
from shared.config import ConfigError, load_settings
from shared.errors import NotFound
from shared.models import ChatRequest
from shared.storage.base import SessionRef, Where
from tests.shared.archive.support import NOW, StoreFactory, service
from tests.support.faulty import FaultyStore
from tests.support.scenarios import seed
from tests.support.store_state import items

ALICE = "alice@example.com"
ARCHIVE_AFTER = 30
RETAIN = 90


def policy(**overrides: Any) -> ArchivePolicy:
    values: dict[str, Any] = {
        "after_days": ARCHIVE_AFTER,
        "time_budget_s": 240.0,
        "retention_days": RETAIN,
        **overrides,
    }
    return ArchivePolicy(**values)


GONE = {"active": (False, []), "archive": (False, [])}


def test_retention_deletes_active_and_archived_and_never_pinned(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            svc = service(store, clock)
            old = NOW - timedelta(days=RETAIN + 1)
            archived_old = await seed(store, ALICE, old, where="archive")
            # Active and older than retention: archival has not got to it (or retention is
            # shorter than archival): retention deletes it where it is.
            active_old = await seed(store, ALICE, NOW - timedelta(days=RETAIN + 5))
            pinned_old = await seed(store, ALICE, NOW - timedelta(days=400))
            await svc.update_session(ALICE, pinned_old, pinned=True)
            archived_young = await seed(
                store, ALICE, NOW - timedelta(days=RETAIN - 1), where="archive"
            )
            active_young = await seed(store, ALICE, NOW - timedelta(days=1))

            summary = await run_archive(store, policy(after_days=RETAIN + 10), clock=clock)
            assert (summary.retention_deleted, summary.archived, summary.failed) == (2, 0, 0)
            assert await items(store, ALICE, archived_old) == GONE
            assert await items(store, ALICE, active_old) == GONE
            # Pinned: neither archived nor deleted, however old.
            pinned = await items(store, ALICE, pinned_old)
            assert pinned["active"][0] is True and len(pinned["active"][1]) == 2
            assert (await items(store, ALICE, archived_young))["archive"][0] is True
            assert (await items(store, ALICE, active_young))["active"][0] is True

            # Off (0, the default): nothing is deleted, however old.
            again = await seed(store, ALICE, NOW - timedelta(days=4000), where="archive")
            summary = await run_archive(store, policy(retention_days=None), clock=clock)
            assert summary.retention_deleted == 0
            assert (await items(store, ALICE, again))["archive"][0] is True

    asyncio.run(scenario())


def test_the_old_setting_name_is_refused_not_ignored() -> None:
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        load_settings({"AUTH_MODE": "dev", "ARCHIVE_RETENTION_DAYS": "365"})
    assert load_settings({"AUTH_MODE": "dev"}).retention_days == 0
    assert load_settings({"AUTH_MODE": "dev", "RETENTION_DAYS": "365"}).retention_days == 365
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        load_settings({"AUTH_MODE": "dev", "RETENTION_DAYS": "-1"})


@pytest.mark.parametrize("where", ["active", "archive"])
def test_a_turn_between_the_scan_and_the_delete_keeps_the_conversation(
    stores: StoreFactory, clock: FixedClock, where: Where
) -> None:
    """The pass found the conversation expired; before its delete, the user writes to it (an
    archived one is restored first). The delete must not take the acknowledged turn with it."""

    async def scenario() -> None:
        async with stores() as store:
            faulty = FaultyStore(store)
            session_id = await seed(store, ALICE, NOW - timedelta(days=RETAIN + 1), where=where)
            reached, release = asyncio.Event(), asyncio.Event()

            async def paused(real: Any, ref: SessionRef) -> bool:
                reached.set()
                await release.wait()
                result: bool = await real(ref)
                return result

            faulty.hooks["expire"] = paused
            # Archival never gets to it first: the delete meets the conversation where it is.
            run = asyncio.create_task(
                run_archive(faulty, policy(after_days=RETAIN + 10), clock=clock)  # type: ignore[arg-type]
            )
            await asyncio.wait_for(reached.wait(), 30)
            svc = service(store, clock)
            turn = await svc.chat(
                ALICE,
                ChatRequest.model_validate({"message": "still here", "sessionId": session_id}),
            )
            release.set()
            summary = await run
            assert summary.retention_deleted == 0
            detail = await svc.get_session(ALICE, session_id)
            assert (detail.archived, detail.message_count) == (False, 4)
            assert [m.content for m in detail.messages][-2:] == [
                "still here",
                turn.assistant.content,
            ]

    asyncio.run(scenario())


@pytest.mark.parametrize("where", ["active", "archive"])
def test_a_turn_after_the_delete_is_not_acknowledged(
    stores: StoreFactory, clock: FixedClock, where: Where
) -> None:
    """The other order: retention deleted it first; the turn then finds nothing (404) and
    acknowledges nothing, and nothing of the conversation is left."""

    async def scenario() -> None:
        async with stores() as store:
            session_id = await seed(store, ALICE, NOW - timedelta(days=RETAIN + 1), where=where)
            summary = await run_archive(store, policy(after_days=RETAIN + 10), clock=clock)
            assert summary.retention_deleted == 1
            svc = service(store, clock)
            with pytest.raises(NotFound):
                await svc.chat(
                    ALICE,
                    ChatRequest.model_validate({"message": "late", "sessionId": session_id}),
                )
            assert await items(store, ALICE, session_id) == GONE

    asyncio.run(scenario())


def test_a_pin_between_the_scan_and_the_delete_keeps_the_conversation(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            faulty = FaultyStore(store)
            session_id = await seed(store, ALICE, NOW - timedelta(days=RETAIN + 1))
            reached, release = asyncio.Event(), asyncio.Event()

            async def paused(real: Any, ref: SessionRef) -> bool:
                reached.set()
                await release.wait()
                result: bool = await real(ref)
                return result

            faulty.hooks["expire"] = paused
            run = asyncio.create_task(
                run_archive(faulty, policy(after_days=RETAIN + 10), clock=clock)  # type: ignore[arg-type]
            )
            await asyncio.wait_for(reached.wait(), 30)
            await service(store, clock).update_session(ALICE, session_id, pinned=True)
            release.set()
            assert (await run).retention_deleted == 0
            assert (await items(store, ALICE, session_id))["active"][0] is True

    asyncio.run(scenario())
