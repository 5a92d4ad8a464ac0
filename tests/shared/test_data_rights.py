"""Export and erasure through the service, on every store (``openapi.yaml``: GET /api/export,
DELETE /api/sessions; ``shared/export/``, ``shared/erase/``).

What the database really holds is read raw (``tests/shared/archive/conftest.py: raw_items``): an
erasure is done when nothing of the user is left in any container, and nobody else's items
changed at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.clock import FixedClock, iso
from shared.errors import NotFound, StorageUnavailable
from shared.export import MESSAGES_PAGE, SESSIONS_PAGE
from shared.models import FeedbackRequest
from shared.storage.base import Store
from shared.storage.sqlite import SqliteStore
from tests.support.conversations import Conversations
from tests.support.faulty import Crash, FaultyStore
from tests.support.scenarios import (
    START,
    chat_request,
    make_service,
    messages_of,
    nothing_of,
    pause_at,
    seed_session,
    without_volatile,
)
from tests.support.store_state import raw_items
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
EXPORTED_AT = START + timedelta(days=1)


async def export_text(svc: Conversations, email: str) -> str:
    return "".join([piece async for piece in svc.export_json(email, now=EXPORTED_AT)])


async def all_messages(store: Store, email: str, sid: str, where: Any) -> list[dict[str, Any]]:
    page, more = await store.page_messages(email, sid, where=where, limit=100_000)
    assert not more
    # As an export holds them: the API's message and everything else stored with it.
    return [m.to_export().model_dump(by_alias=True) for m in page]


# ---- export --------------------------------------------------------------------------------------


@pytest.mark.volume
def test_export_holds_every_session_once_with_its_messages_in_order(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(START)
        svc = make_service(store, clock=clock)
        rated = await svc.chat(alice, chat_request("rate this answer"))
        await svc.set_feedback(
            alice,
            rated.session_id,
            rated.assistant.id,
            FeedbackRequest.model_validate({"rating": "up", "comment": "great"}),
        )
        at = START + timedelta(minutes=1)
        long_active = await seed_session(store, alice, MESSAGES_PAGE * 2 + 50, at=at)
        long_archived = await seed_session(
            store, alice, MESSAGES_PAGE + 3, at=at + timedelta(minutes=1), archived=True
        )
        small_archived = await seed_session(
            store, alice, 2, at=at + timedelta(minutes=2), archived=True
        )
        await svc.set_feedback(
            alice,
            small_archived.id,
            f"{small_archived.id}:00000002",
            FeedbackRequest.model_validate({"rating": "down"}),
        )
        # More sessions than one page of the export's session reads.
        many = [
            (await seed_session(store, alice, 2, at=at + timedelta(hours=1, seconds=i))).id
            for i in range(SESSIONS_PAGE + 5)
        ]
        deleted = await seed_session(store, alice, 2, at=at + timedelta(hours=2))
        await svc.delete_session(alice, deleted.id)
        bobs = await seed_session(store, bob, 2)

        text = await export_text(svc, alice)
        assert text.endswith('"complete":true}')
        document = json.loads(text)
        assert (document["email"], document["exportedAt"], document["complete"]) == (
            alice,
            iso(EXPORTED_AT),
            True,
        )
        sessions = document["sessions"]
        exported = [s["sessionId"] for s in sessions]
        assert len(exported) == len(set(exported))  # each once
        archived_ids = {long_archived.id, small_archived.id}
        assert set(exported) == {rated.session_id, long_active.id, *archived_ids, *many}
        assert deleted.id not in exported and bobs.id not in exported
        # In the order a session keeps while it moves: oldest updatedAt first.
        assert [(s["updatedAt"], s["sessionId"]) for s in sessions] == sorted(
            (s["updatedAt"], s["sessionId"]) for s in sessions
        )
        for session in sessions:
            sid = session["sessionId"]
            where = "archive" if sid in archived_ids else "active"
            assert session["archived"] is (sid in archived_ids)
            record = await store.get_session(alice, sid, where=where)  # type: ignore[arg-type]
            assert record is not None
            assert {k: v for k, v in session.items() if k != "messages"} == {
                **record.to_summary().model_dump(by_alias=True),
                "titleSource": record.title_source,
            }
            assert session["messages"] == await all_messages(store, alice, sid, where)
            assert len(session["messages"]) == session["messageCount"]
        by_id = {s["sessionId"]: s for s in sessions}
        assert len(by_id[long_active.id]["messages"]) == MESSAGES_PAGE * 2 + 50
        assert by_id[rated.session_id]["messages"][1]["feedback"]["comment"] == "great"
        # Everything stored goes out: the answer's model and token counts too.
        assert by_id[rated.session_id]["messages"][1]["model"] == "echo"
        assert "completionTokens" in by_id[rated.session_id]["messages"][1]
        assert by_id[small_archived.id]["messages"][1]["feedback"]["rating"] == "down"

        bob_document = json.loads(await export_text(svc, bob))
        assert [s["sessionId"] for s in bob_document["sessions"]] == [bobs.id]
        stranger = json.loads(await export_text(svc, "nobody@example.com"))
        assert (stranger["sessions"], stranger["complete"]) == ([], True)

    run(scenario)


@pytest.mark.parametrize(
    ("method", "call"),
    [("all_sessions", 1), ("all_sessions", 2), ("page_messages", 1), ("page_messages", 4)],
)
def test_an_export_cut_off_by_storage_never_looks_complete(
    run: Runner[None],
    emails: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    method: str,
    call: int,
) -> None:
    alice, _ = emails
    sent: list[str] = []

    async def scenario(store: Store) -> None:
        for i in range(SESSIONS_PAGE + 3):
            await seed_session(store, alice, 3, at=START + timedelta(seconds=i))
        faulty = FaultyStore(store)
        calls = 0

        async def fail(real: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls >= call:
                raise StorageUnavailable()
            return await real(*args, **kwargs)

        faulty.hooks[method] = fail
        with pytest.raises(StorageUnavailable):
            async for piece in make_service(faulty).export_json(alice, now=EXPORTED_AT):
                sent.append(piece)

    with caplog.at_level(logging.INFO, logger="parley.audit"):
        run(scenario)
    text = "".join(sent)
    assert text.startswith('{"exportedAt"')
    assert '"complete":' not in text  # the document's marker (a key), not a status
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    [audit] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("export ")]
    fields = json.loads(audit.removeprefix("export "))
    assert fields["complete"] is False and fields["by"] == "api"
    assert alice not in audit


def test_an_erasure_step_cut_off_by_storage_still_writes_its_audit_line(
    run: Runner[None], emails: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        for i in range(3):
            await seed_session(store, alice, 2, at=START + timedelta(seconds=i))
        faulty = FaultyStore(store)
        calls = 0

        async def fail_second(real: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls >= 2:
                raise StorageUnavailable()
            return await real(*args, **kwargs)

        faulty.hooks["delete_session"] = fail_second
        with pytest.raises(StorageUnavailable):
            await make_service(faulty).erase_everything(alice, budget_s=600)
        assert (await store.usage(alice))[0] == 2  # one session went before the failure

    with caplog.at_level(logging.INFO, logger="parley.audit"):
        run(scenario)
    [audit] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("erase ")]
    fields = json.loads(audit.removeprefix("erase "))
    assert (fields["complete"], fields["by"]) == (False, "api")
    assert alice not in audit


def test_export_memory_does_not_grow_with_the_data(tmp_path: Path) -> None:
    """SQLite only: ten times the sessions must not mean ten times the export's peak memory.
    The Cosmos store pages the same way (TOP n keyset queries, as here) but seeding 5,000
    sessions through the local Cosmos server takes minutes, so it is not measured there."""

    def peak(count: int) -> tuple[int, int]:
        async def scenario() -> tuple[int, int]:
            store = SqliteStore(tmp_path / f"export-{count}.db")
            email = "memory@example.com"
            for start in range(0, count, 100):
                await asyncio.gather(
                    *(
                        seed_session(store, email, 4, at=START + timedelta(seconds=i))
                        for i in range(start, min(start + 100, count))
                    )
                )
            svc = make_service(store)
            tracemalloc.start()
            size = 0
            try:
                async for piece in svc.export_json(email, now=EXPORTED_AT):
                    size += len(piece)
                retained, most = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            await store.close()
            # What the export held at once, less what stays afterwards (pydantic's string
            # cache and the like, bounded and not the export's working set).
            return most - retained, size

        return asyncio.run(scenario())

    small_peak, small_size = peak(500)
    large_peak, large_size = peak(5000)
    assert large_size > small_size * 9  # ten times the data went out
    # Collecting the document would grow the peak about tenfold; twice the small run's peak is
    # far above run-to-run noise and far below that.
    assert large_peak < small_peak * 2, (small_peak, large_peak)


# ---- erasure -----------------------------------------------------------------------------------


class Interrupter:
    """Counts the store's delete work and crashes it at chosen points: on SQLite (whose deletes
    are single transactions) around ``delete_session``; on Cosmos at any batch of the multi-step
    delete, wherever it is. Each delete advances the FixedClock a second."""

    def __init__(self, store: Store, clock: FixedClock, rng: random.Random) -> None:
        self.faulty = FaultyStore(store)
        self.clock = clock
        self.rng = rng
        self.crashes = 0
        self.faulty.hooks["delete_session"] = self._delete
        self._conn = getattr(store, "conn", None)
        self._countdown = self._next()
        if self._conn is not None:
            self._batch = self._conn.batch
            self._conn.batch = self._cosmos_batch

    def _next(self) -> int:
        # A Cosmos delete is several batches (mark, purge each container): spread further.
        return self.rng.randint(4, 40) if self._conn is not None else self.rng.randint(2, 8)

    def _tick(self) -> bool:
        self._countdown -= 1
        if self._countdown > 0:
            return False
        self._countdown = self._next()
        self.crashes += 1
        return True

    async def _delete(self, real: Any, *args: Any, **kwargs: Any) -> Any:
        self.clock.advance(seconds=1)
        crash = self._conn is None and self._tick()
        if crash and self.rng.random() < 0.5:
            raise Crash("before the delete")
        result = await real(*args, **kwargs)
        if crash:
            raise Crash("after the delete, before it was answered")
        return result

    async def _cosmos_batch(self, *args: Any, **kwargs: Any) -> Any:
        if self._tick():
            raise Crash("in the middle of a delete")
        return await self._batch(*args, **kwargs)

    def restore(self) -> None:
        if self._conn is not None:
            self._conn.batch = self._batch


@pytest.mark.volume
@pytest.mark.parametrize("seed", [1, 2])
def test_an_erasure_in_many_interrupted_rounds_leaves_nothing(
    run: Runner[None], emails: tuple[str, str], seed: int
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        for i in range(24):
            await seed_session(
                store, alice, 100, at=START + timedelta(minutes=i), archived=i % 2 == 1
            )
        for i in range(3):
            await seed_session(store, bob, 6, at=START + timedelta(minutes=i), archived=i == 0)
        held = await raw_items(store, alice)
        assert held["active"] and held["archive"]
        assert messages_of(held["active"]) == messages_of(held["archive"]) == 1200
        bob_before = without_volatile(await raw_items(store, bob))

        clock = FixedClock(START)
        interrupter = Interrupter(store, clock, random.Random(seed))
        svc = make_service(interrupter.faulty, clock=clock)
        rounds = unfinished = 0
        try:
            while True:
                rounds += 1
                assert rounds < 500, "the erasure does not progress"
                try:
                    if await svc.erase_everything(alice, budget_s=3.5):
                        break
                    unfinished += 1
                except Crash:
                    continue
        finally:
            interrupter.restore()
        assert unfinished >= 3 and interrupter.crashes >= 3, (unfinished, interrupter.crashes)
        assert await nothing_of(store, alice)
        assert await store.usage(alice) == (0, 0)
        assert await store.session_ids(alice, limit=10) == []
        assert without_volatile(await raw_items(store, bob)) == bob_before
        # Asked again, it is done at once.
        assert await make_service(store).erase_everything(alice, budget_s=3.5)

    run(scenario)


def test_each_erasure_request_makes_progress_however_slow_the_store(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    """Listing what is left may take the whole budget: the request still erases something
    before it answers 'not yet', so repeating it always ends."""
    alice, _ = emails

    async def scenario(store: Store) -> None:
        for i in range(3):
            await seed_session(store, alice, 4, at=START + timedelta(minutes=i))
        clock = FixedClock(START)
        faulty = FaultyStore(store)

        async def slow_listing(real: Any, *args: Any, **kwargs: Any) -> Any:
            clock.advance(seconds=10)
            return await real(*args, **kwargs)

        faulty.hooks["session_ids"] = slow_listing
        svc = make_service(faulty, clock=clock)
        answers = []
        for _ in range(10):
            answers.append(await svc.erase_everything(alice, budget_s=5))
            if answers[-1]:
                break
        assert answers[-1] is True, answers
        assert await nothing_of(store, alice)

    run(scenario)


@pytest.mark.parametrize(
    ("new_session", "pause_call"),
    [(False, 1), (False, 2), (True, 2)],
    ids=["continue-before-user-write", "continue-before-answer", "new-before-answer"],
)
def test_a_turn_racing_an_erasure_is_refused_and_leaves_nothing(
    run: Runner[None], emails: tuple[str, str], new_session: bool, pause_call: int
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        faulty = FaultyStore(store)
        svc = make_service(faulty)
        sid = None
        if not new_session:
            sid = (await svc.chat(alice, chat_request("before the erasure"))).session_id
        await seed_session(store, alice, 6, archived=True)
        await seed_session(store, bob, 2)
        bob_before = without_volatile(await raw_items(store, bob))
        # The turn read what it needed; its write (the user message, or the answer) waits.
        gate = pause_at(faulty, "append", call=pause_call)
        turn = asyncio.create_task(svc.chat(alice, chat_request("racing", sid)))
        await gate.reached_by(turn)
        assert await make_service(store).erase_everything(alice, budget_s=600)
        gate.release.set()
        with pytest.raises(NotFound):
            await turn
        assert await nothing_of(store, alice)
        assert without_volatile(await raw_items(store, bob)) == bob_before

    run(scenario)


def test_a_turn_between_erasure_rounds_is_erased_by_the_next(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(START)
        faulty = FaultyStore(store)

        async def timed_delete(real: Any, *args: Any, **kwargs: Any) -> Any:
            clock.advance(seconds=1)
            return await real(*args, **kwargs)

        faulty.hooks["delete_session"] = timed_delete
        svc = make_service(faulty, clock=clock)
        sids = [(await svc.chat(alice, chat_request(f"chat {i}"))).session_id for i in range(6)]
        assert not await svc.erase_everything(alice, budget_s=2.5)
        left = [sid for sid in sids if await svc._locate(alice, sid) is not None]
        assert left and len(left) < len(sids)
        # A turn that completes between two rounds: whole, and erased by the next round.
        done = await svc.chat(alice, chat_request("in between", left[0]))
        assert done.assistant.content.startswith("echo[")
        fresh = await svc.chat(alice, chat_request("a new one in between"))
        assert fresh.session_id not in sids
        while not await svc.erase_everything(alice, budget_s=2.5):
            pass
        assert await nothing_of(store, alice)

    run(scenario)


def test_a_new_conversation_whose_first_write_lands_after_the_erasure_is_whole(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    """Paused before its first write, a new conversation's turn has stored nothing when the
    erasure ends: what it writes afterwards is a conversation begun after the erasure, and it
    is whole (both messages) or, were it refused, absent; never half a session."""
    alice, _ = emails

    async def scenario(store: Store) -> None:
        faulty = FaultyStore(store)
        svc = make_service(faulty)
        await seed_session(store, alice, 4)
        gate = pause_at(faulty, "append", call=1)
        turn = asyncio.create_task(svc.chat(alice, chat_request("racing")))
        await gate.reached_by(turn)
        assert await make_service(store).erase_everything(alice, budget_s=600)
        assert await nothing_of(store, alice)
        gate.release.set()
        try:
            result = await turn
        except NotFound:
            assert await nothing_of(store, alice)
            return
        session = await store.get_session(alice, result.session_id, where="active")
        assert session is not None and (session.message_count, session.last_seq) == (2, 2)
        page, more = await store.page_messages(alice, result.session_id, where="active", limit=9)
        assert [m.content for m in page] == ["racing", "echo[0]:\nracing"] and not more
        assert await store.session_ids(alice, limit=9) == [result.session_id]

    run(scenario)
