"""Pinning through the service, on every store (``openapi.yaml``: PATCH /api/sessions/{id} with
``pinned``; GET /api/sessions lists pinned sessions first): the order, paging across the
boundary, ETag-conditional writes racing turns, and the archival scans never offering a pinned
session."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shared.errors import InvalidRequest, NotFound
from shared.storage.base import Store
from shared.storage.cosmos import CosmosStore
from shared.storage.cosmos.items import user_fields
from tests.support.conversations import Conversations
from tests.support.faulty import FaultyStore
from tests.support.scenarios import (
    START,
    chat_request,
    make_service,
    pause_at,
    seed_session,
)
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


async def listed(svc: Conversations, email: str, *, limit: int) -> list[tuple[str, bool]]:
    """Every (session id, pinned) of the active list, page by page."""
    found: list[tuple[str, bool]] = []
    token: str | None = None
    while True:
        page = await svc.list_sessions(email, limit=limit, continuation=token, archived=False)
        found += [(s.session_id, s.pinned) for s in page.sessions]
        token = page.continuation_token
        if token is None:
            return found
        assert page.sessions, "a continuation token must never lead to an empty page"


def test_pinned_sessions_come_first_and_paging_crosses_the_boundary_once(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        # Seven sessions a minute apart (index 0 the oldest); pin the oldest, one in the middle
        # and the newest: the pinned run and the unpinned run each newest first.
        ids = [
            (await seed_session(store, alice, 2, at=START + timedelta(minutes=i))).id
            for i in range(7)
        ]
        for index in (0, 3, 6):
            summary = await svc.update_session(alice, ids[index], pinned=True)
            assert summary.pinned is True and summary.title == "seeded"
        expected = [(ids[i], True) for i in (6, 3, 0)] + [(ids[i], False) for i in (5, 4, 2, 1)]
        # Every page size, so the boundary falls on a page's edge, inside one, and not at all.
        for limit in (1, 2, 3, 4, 7, 20):
            assert await listed(svc, alice, limit=limit) == expected, limit
        # Unpinning puts it back among the rest, by its time.
        await svc.update_session(alice, ids[3], pinned=False)
        assert [sid for sid, _ in await listed(svc, alice, limit=2)] == [
            ids[i] for i in (6, 0, 5, 4, 3, 2, 1)
        ]

    run(scenario)


def test_pin_with_or_without_a_title_and_a_patch_with_neither_is_refused(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        session = await seed_session(store, alice, 2, title="first words")
        both = await svc.update_session(alice, session.id, title=" Keep this ", pinned=True)
        assert (both.title, both.pinned) == ("Keep this", True)
        # A title alone leaves the pin as it is; pinned alone leaves the title.
        renamed = await svc.update_session(alice, session.id, title="Renamed")
        assert (renamed.title, renamed.pinned) == ("Renamed", True)
        unpinned = await svc.update_session(alice, session.id, pinned=False)
        assert (unpinned.title, unpinned.pinned) == ("Renamed", False)
        with pytest.raises(InvalidRequest):
            await svc.update_session(alice, session.id)
        with pytest.raises(NotFound):
            await svc.update_session(bob, session.id, pinned=True)
        detail = await svc.get_session(alice, session.id)
        assert (detail.title, detail.pinned) == ("Renamed", False)

    run(scenario)


def test_pinning_an_archived_session_brings_it_back_to_the_top(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        newer = await seed_session(store, alice, 2, at=START + timedelta(hours=1))
        old = await seed_session(store, alice, 4, archived=True)
        summary = await svc.update_session(alice, old.id, pinned=True)
        assert (summary.pinned, summary.archived, summary.message_count) == (True, False, 4)
        assert await listed(svc, alice, limit=1) == [(old.id, True), (newer.id, False)]
        archived = await svc.list_sessions(alice, limit=10, continuation=None, archived=True)
        assert archived.sessions == []

    run(scenario)


def test_a_pin_racing_a_turn_keeps_both(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        faulty = FaultyStore(store)
        svc = make_service(faulty)
        sid = (await svc.chat(alice, chat_request("first"))).session_id
        # The turn read the session (unpinned) and its ETag; pin it before the turn writes.
        gate = pause_at(faulty, "append", call=1)
        turn = asyncio.create_task(svc.chat(alice, chat_request("second", sid)))
        await gate.reached_by(turn)
        assert (await make_service(store).update_session(alice, sid, pinned=True)).pinned
        gate.release.set()
        await turn
        detail = await svc.get_session(alice, sid)
        assert detail.pinned is True
        assert detail.message_count == 4

    run(scenario)


def test_the_archival_scans_never_offer_a_pinned_session(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        pinned = await seed_session(store, alice, 2)
        stale = await seed_session(store, alice, 2)
        await svc.update_session(alice, pinned.id, pinned=True)
        seen: list[str] = []
        after: str | None = None
        while True:
            refs, after = await store.scan_stale(
                where="active", updated_before=START + timedelta(days=3650), limit=50, after=after
            )
            seen += [ref.session_id for ref in refs if ref.email == alice]
            if after is None:
                break
        assert seen == [stale.id]

    run(scenario)


def test_session_items_written_before_pinning_are_listed_after_the_rest(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    """Cosmos: an item without ``pinned`` (written before pinning existed) sorts after every
    item that has it; paging crosses into and through that run exactly once."""
    alice, _ = emails

    async def scenario(store: Store) -> None:
        if not isinstance(store, CosmosStore):
            pytest.skip("SQLite's migration gave every row a pinned column")
        svc = make_service(store)
        ids = [
            (await seed_session(store, alice, 2, at=START + timedelta(minutes=i))).id
            for i in range(6)
        ]
        await svc.update_session(alice, ids[0], pinned=True)
        for legacy in (ids[5], ids[2], ids[1]):
            item = await store.conn.read("active", legacy, alice)
            assert item is not None
            old = {k: v for k, v in user_fields(item).items() if k != "pinned"}
            await store.conn.batch("active", alice, [("upsert", (old,))])
        expected = [(ids[0], True), (ids[4], False), (ids[3], False)] + [
            (ids[i], False) for i in (5, 2, 1)
        ]
        for limit in (1, 2, 3, 4, 10):
            assert await listed(svc, alice, limit=limit) == expected, limit

    run(scenario)
