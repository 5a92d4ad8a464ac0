"""Moving a user's data to their new address (shared.identity.move, ``python -m shared.identity
move``), on every store: every session, active and archived, with its messages, request items
and feedback, and the binding; nothing duplicated or lost, safe to run again; and, with the move
paused between each of its steps while the user's turns, renames, ratings and deletes run on
another host (under either address), every acknowledged message is stored exactly once after.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import pytest

from shared.archive.sweep import UNFINISHED_GRACE
from shared.auth.claims import Account
from shared.clock import FixedClock
from shared.errors import ApiError
from shared.identity.move import AddressTaken, move_user
from shared.models import ChatRequest, FeedbackRequest, MessageRecord, SessionRecord
from shared.storage.base import Binding, Store, Where
from shared.storage.cosmos.moves import MOVE_LEASE
from tests.shared.archive.support import NOW, StoreFactory, make_store_factory, service
from tests.support.faulty import FaultyStore
from tests.support.scenarios import seed
from tests.support.store_state import raw_items

OLD, NEW = "kate.old@example.com", "kate.new@example.com"
KATE = Account(tenant_id="t-1", object_id="o-kate")
MALLORY = Account(tenant_id="t-1", object_id="o-mallory")
SEEDED = 6
STALE = NOW - timedelta(days=60)


async def no_pause(_: float) -> None:
    return None


async def move(store: Store, clock: FixedClock) -> Any:
    return await move_user(store, OLD, NEW, clock=clock, sleep=no_pause)


async def where_is(store: Store, email: str, session_id: str) -> list[Where]:
    return [w for w in ("active", "archive") if await store.get_session(email, session_id, where=w)]


async def contents(store: Store, email: str, session_id: str) -> list[str]:
    [where] = await where_is(store, email, session_id)
    page, more = await store.page_messages(email, session_id, where=where, limit=1000)
    assert not more
    return [m.model_dump_json() for m in page]


async def nothing_left_of(store: Store, email: str) -> None:
    raw = await raw_items(store, email)
    assert raw == {"active": [], "archive": []}, raw
    assert await store.session_ids(email, limit=10) == []
    assert await store.rehome_pending(email) == []


def test_a_move_takes_every_session_and_the_binding(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            svc = service(store, clock)
            await store.bind(Binding(OLD, KATE, NOW))
            turn = await svc.chat(
                OLD, ChatRequest(message="remember the plan", clientMessageId="c-1")
            )
            live = turn.session_id
            answer = f"{live}:{2:08d}"
            await svc.set_feedback(OLD, live, answer, FeedbackRequest(rating="up", comment="ok"))
            archived = await seed(store, OLD, STALE, SEEDED, where="archive")
            before = {sid: await contents(store, OLD, sid) for sid in (live, archived)}

            report = await move(store, clock)

            assert report.complete and report.sessions == 2 and report.taken == []
            assert report.binding == "moved"
            await nothing_left_of(store, OLD)
            for sid, messages in before.items():
                assert await contents(store, NEW, sid) == messages  # feedback included
                assert len(await where_is(store, NEW, sid)) == 1
            moved = await store.get_session(NEW, live, where="active")
            assert moved is not None and moved.email == NEW
            request = await store.get_request(NEW, live, "c-1", where="active")
            assert request is not None and request.assistant_seq == 2
            found = await store.search_matches(NEW, "the plan", where="active", hits_per_session=3)
            assert [m.session_id for m in found] == [live]
            held = await store.read_binding(NEW)
            assert held is not None and held.account == KATE
            assert await store.read_binding(OLD) is None
            # The session goes on under the new address, where a retry still finds its answer.
            again = await svc.chat(
                NEW, ChatRequest(message="remember the plan", clientMessageId="c-1", sessionId=live)
            )
            assert again.assistant.id == answer
            # Run again: nothing to do, nothing changes.
            snapshot = await raw_items(store, NEW)
            rerun = await move(store, clock)
            assert rerun.complete and rerun.sessions == 0
            assert await raw_items(store, NEW) == snapshot

    asyncio.run(scenario())


def test_a_new_address_bound_to_another_account_is_refused(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            await store.bind(Binding(OLD, KATE, NOW))
            await store.bind(Binding(NEW, MALLORY, NOW))
            sid = await seed(store, OLD, STALE, SEEDED)
            before = await raw_items(store, OLD), await raw_items(store, NEW)
            with pytest.raises(AddressTaken):
                await move(store, clock)
            assert (await raw_items(store, OLD), await raw_items(store, NEW)) == before
            assert await where_is(store, OLD, sid) == ["active"]

    asyncio.run(scenario())


def test_a_session_id_the_new_address_has_is_left_where_it_is(
    stores: StoreFactory, clock: FixedClock
) -> None:
    async def scenario() -> None:
        async with stores() as store:
            sid = await seed(store, OLD, STALE, SEEDED)
            other = await seed(store, OLD, STALE, 2)
            # The same id under the new address (ids are random: an operator's mistake, say).
            record = SessionRecord(
                id=sid, email=NEW, title="theirs", preview="x", created_at=NOW, updated_at=NOW
            )
            message = MessageRecord(session_id=sid, seq=1, role="user", content="x", timestamp=NOW)
            await store.append(
                record.model_copy(update={"message_count": 1, "last_seq": 1}),
                [message],
                expected_etag=None,
            )
            kept = await contents(store, OLD, sid)
            report = await move(store, clock)
            assert not report.complete and report.taken == [sid] and report.sessions == 1
            assert await contents(store, OLD, sid) == kept
            assert len(await contents(store, NEW, sid)) == 1
            assert await where_is(store, NEW, other) == ["active"]

    asyncio.run(scenario())


# ---- interleavings ----------------------------------------------------------------------------


class Pause:
    """Stops whoever reaches ``step`` first until released; later arrivals pass through."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.reached = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self, at: str, session_id: str) -> None:
        if at == self.step and not self.reached.is_set():
            self.reached.set()
            await self.go.wait()


class Outcome:
    """What was acknowledged to the user while the move ran. A delete through an address where
    the session was not visible (the old one once the move committed, the new one before it
    was activated there) may leave it whole, or remove it: never half of it."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.deleted = False
        self.unseen_delete = False
        self.title: str | None = None
        self.rated = False


_TEXTS = iter(range(1, 1_000_000))


def user_op(name: str, svc: Any, sid: str, outcome: Outcome) -> Any:
    """The user's operation ``name`` (``turn-old`` runs under the old address, ...)."""
    op, _, address = name.partition("-")
    email = OLD if address == "old" else NEW

    async def run() -> None:
        with contextlib.suppress(ApiError):  # refused (404, 503): acknowledged nothing
            if op == "turn":
                text = f"turn {next(_TEXTS)}"
                result = await svc.chat(email, ChatRequest(message=text, sessionId=sid))
                outcome.said += [text, result.assistant.content]
            elif op == "rename":
                await svc.rename(email, sid, "Renamed")
                outcome.title = "Renamed"
            elif op == "rate":
                await svc.set_feedback(
                    email, sid, f"{sid}:{2:08d}", FeedbackRequest(rating="down", comment=None)
                )
                outcome.rated = True
            elif op == "delete":
                visible = [
                    w
                    for w in ("active", "archive")
                    if await svc.store.get_session(email, sid, where=w)
                ]
                await svc.delete_session(email, sid)
                if visible:
                    outcome.deleted = True
                else:
                    outcome.unseen_delete = True
            elif op == "housekeeping":
                await housekeeping(svc.store, svc.clock)

    return run


async def housekeeping(store: Store, clock: FixedClock) -> None:
    after: str | None = None
    while True:
        page, after = await store.scan_unfinished(
            older_than=clock.now() + timedelta(days=1), limit=50, after=after
        )
        for item in page:
            await store.finish(item)
        if after is None:
            return


async def check(store: Store, sid: str, seeded: list[str], outcome: Outcome) -> None:
    """After the move finished: nothing of the session under the old address; under the new
    one, every seeded and acknowledged message exactly once (or nothing, if a delete was
    acknowledged)."""
    for where in ("active", "archive"):
        assert [i for i in (await raw_items(store, OLD))[where] if sid in str(i)] == []
    left = [
        i for w in ("active", "archive") for i in (await raw_items(store, NEW))[w] if sid in str(i)
    ]
    if outcome.deleted or (outcome.unseen_delete and not left):
        assert left == []
        outcome.deleted = True
        return
    places = await where_is(store, NEW, sid)
    assert len(places) == 1, places
    page, _ = await store.page_messages(NEW, sid, where=places[0], limit=1000)
    texts = [m.content for m in page]
    assert texts[:SEEDED] == seeded
    for text in outcome.said:
        assert texts.count(text) == 1, (text, texts)
    assert [m.seq for m in page] == list(range(1, len(page) + 1))
    assert not [
        i for i in (await raw_items(store, NEW))[places[0]] if sid in str(i) and i.get("state")
    ]
    session = await store.get_session(NEW, sid, where=places[0])
    assert session is not None
    if outcome.title:
        assert session.title == outcome.title
    if outcome.rated:
        rated = await store.get_message(NEW, sid, 2, where=places[0])
        assert rated is not None and rated.feedback is not None


async def prepare(store: Store, archived: bool) -> tuple[str, list[str]]:
    await store.bind(Binding(OLD, KATE, NOW))
    sid = await seed(store, OLD, STALE, SEEDED, where="archive" if archived else "active")
    page, _ = await store.page_messages(
        OLD, sid, where="archive" if archived else "active", limit=100
    )
    return sid, [m.content for m in page]


MOVE_STEPS = ("rehome:read", "rehome:copied", "rehome:committed", "rehome:activated")
OTHERS = (
    "turn-old",
    "rename-old",
    "rate-old",
    "delete-old",
    "turn-new",
    "rename-new",
    "delete-new",
    "housekeeping",
)
MOVE_CASES = [
    (step, archived, other) for step in MOVE_STEPS for archived in (False, True) for other in OTHERS
]


@pytest.fixture(params=["cosmos", "cosmos-lagging"])
def mover_stores(request: pytest.FixtureRequest, tmp_path: Any, clock: FixedClock) -> StoreFactory:
    """The local Cosmos server as it is, and with replicas that lag: the user's host is another
    client, whose writes the mover's reads may not see yet (its commit is what decides)."""
    return make_store_factory(request, request.param, tmp_path, clock)


@pytest.mark.parametrize(
    ("step", "archived", "other"),
    MOVE_CASES,
    ids=[f"{s.split(':')[1]}{'-archived' if a else ''}+{o}" for s, a, o in MOVE_CASES],
)
def test_a_move_paused_at_a_step_while_the_user_acts_on_another_host(
    mover_stores: StoreFactory, clock: FixedClock, step: str, archived: bool, other: str
) -> None:
    cosmos_stores = mover_stores

    async def scenario() -> None:
        async with cosmos_stores() as store, cosmos_stores() as other_host:
            sid, seeded = await prepare(store, archived)
            outcome = Outcome()
            pause = Pause(step)
            store.moves.checkpoint = pause  # type: ignore[attr-defined]
            mover = asyncio.create_task(move(store, clock))
            reached = asyncio.create_task(pause.reached.wait())
            await asyncio.wait({mover, reached}, return_when=asyncio.FIRST_COMPLETED)
            assert pause.reached.is_set(), f"the move never reached {step}"
            await user_op(other, service(other_host, clock), sid, outcome)()
            pause.go.set()
            with contextlib.suppress(ApiError):
                await mover
            store.moves.checkpoint = None  # type: ignore[attr-defined]
            # The next run (and, past every lease, housekeeping) finishes whatever is left.
            clock.advance(seconds=(MOVE_LEASE + UNFINISHED_GRACE).total_seconds() + 60)
            await housekeeping(store, clock)
            report = await move(store, clock)
            assert report.complete, report
            await check(store, sid, seeded, outcome)
            # And the conversation goes on under the new address (unless deleted), on the
            # mover's host: another client on a lagging replica may not read its writes yet,
            # which is the consistency tokens' business, not the move's.
            if not outcome.deleted:
                await user_op("turn-new", service(store, clock), sid, outcome)()
                assert outcome.said, "a turn under the new address must work after the move"
                await check(store, sid, seeded, outcome)

    asyncio.run(scenario())


TURN_CASES = [
    (step, archived)
    for step in ("before-user-message", "before-answer")
    for archived in (False, True)
]


@pytest.mark.parametrize(
    ("step", "archived"), TURN_CASES, ids=[f"{s}{'-archived' if a else ''}" for s, a in TURN_CASES]
)
def test_a_turn_paused_between_its_steps_while_the_whole_move_runs(
    stores: StoreFactory, clock: FixedClock, step: str, archived: bool
) -> None:
    """On every store (on SQLite a move is one transaction: the turn is what pauses)."""

    async def scenario() -> None:
        async with stores() as store:
            sid, seeded = await prepare(store, archived)
            outcome = Outcome()
            pause = Pause(step)
            faulty = FaultyStore(store)
            appends = 0

            async def paused_append(append: Any, *args: Any, **kwargs: Any) -> Any:
                nonlocal appends
                appends += 1
                await pause("before-user-message" if appends == 1 else "before-answer", sid)
                return await append(*args, **kwargs)

            faulty.hooks["append"] = paused_append
            turn = asyncio.create_task(user_op("turn-old", service(faulty, clock), sid, outcome)())  # type: ignore[arg-type]
            reached = asyncio.create_task(pause.reached.wait())
            await asyncio.wait({turn, reached}, return_when=asyncio.FIRST_COMPLETED)
            if not pause.reached.is_set():
                await turn  # an archived session: the turn restored it before appending
                pytest.fail(f"the turn never reached {step}")
            report = await move(store, clock)
            pause.go.set()
            await turn
            clock.advance(seconds=(MOVE_LEASE + UNFINISHED_GRACE).total_seconds() + 60)
            await housekeeping(store, clock)
            if not report.complete or (await store.session_ids(OLD, limit=5)):
                report = await move(store, clock)
            assert report.complete, report
            await check(store, sid, seeded, outcome)

    asyncio.run(scenario())


class Crashed(RuntimeError):
    """Stands in for the command's process dying at a step."""


CRASH_CASES = [(step, archived) for step in MOVE_STEPS for archived in (False, True)]


@pytest.mark.parametrize(
    ("step", "archived"),
    CRASH_CASES,
    ids=[f"{s.split(':')[1]}{'-archived' if a else ''}" for s, a in CRASH_CASES],
)
def test_a_move_that_dies_at_a_step_is_finished_by_the_next_run(
    cosmos_stores: StoreFactory, clock: FixedClock, step: str, archived: bool
) -> None:
    """The command dies at a step; long after, housekeeping runs (it finishes the old session's
    delete, if one was committed); then the command runs again, as a new process."""

    async def scenario() -> None:
        async with cosmos_stores() as store:
            sid, seeded = await prepare(store, archived)

            async def crash(at: str, _: str) -> None:
                if at == step:
                    raise Crashed(at)

            store.moves.checkpoint = crash  # type: ignore[attr-defined]
            with pytest.raises(Crashed):
                await move(store, clock)
        clock.advance(seconds=(MOVE_LEASE + UNFINISHED_GRACE).total_seconds() + 60)
        async with cosmos_stores() as store:
            await housekeeping(store, clock)
            report = await move(store, clock)
            assert report.complete, report
            await check(store, sid, seeded, Outcome())
            held = await store.read_binding(NEW)
            assert held is not None and held.account == KATE

    asyncio.run(scenario())


def test_a_session_deleted_between_rounds_leaves_no_copy_behind(
    cosmos_stores: StoreFactory, clock: FixedClock
) -> None:
    """A turn fails the first commit (the session is copied again next round); before that
    round the user deletes the session: the old address no longer lists it, and the copies the
    first round left under the new address must go all the same."""

    async def scenario() -> None:
        async with cosmos_stores() as store, cosmos_stores() as other_host:
            sid, _ = await prepare(store, archived=False)
            outcome = Outcome()
            user = service(other_host, clock)
            turned = False

            async def turn_once(at: str, _: str) -> None:
                nonlocal turned
                if at == "rehome:copied" and not turned:
                    turned = True
                    await user_op("turn-old", user, sid, outcome)()

            async def delete_between_rounds(_: float) -> None:
                await user_op("delete-old", user, sid, outcome)()

            store.moves.checkpoint = turn_once  # type: ignore[attr-defined]
            report = await move_user(store, OLD, NEW, clock=clock, sleep=delete_between_rounds)
            assert turned and outcome.said and outcome.deleted
            assert report.complete and report.sessions == 0
            await check(store, sid, [], outcome)

    asyncio.run(scenario())
