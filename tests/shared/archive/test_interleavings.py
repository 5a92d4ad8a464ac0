"""Every interleaving of a move or delete with everything else that can happen to a session.

One operation is paused at one of its steps (an injected pause: the Cosmos store's checkpoints,
or a wrapper around the store for a turn), another runs to completion meanwhile, then the first
resumes; a later archival pass's housekeeping then gets its turn (the clock moved past every
lease). Whatever was acknowledged must hold at the end:

- every message of an acknowledged turn, and every message seeded, is stored exactly once,
  unless an acknowledged delete (or expiry) removed the session;
- the session is readable in exactly one container and listed in exactly one view, and its
  items are in that container only (the active container keeps just a stub for an archived
  session) -- or, deleted, nothing of it is left in any container;
- an acknowledged rename or rating is what the session shows;
- an acknowledged regenerate's answer is the last seeded answer's text now, and every answer it
  replaced is kept as an earlier version, in the container the session is in.

The moves' steps exist on Cosmos only (on SQLite each move and delete is one transaction, with
nothing in between to pause at); the turn's steps (between its read and its write, and between
its two writes) exist on both stores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.archive.sweep import UNFINISHED_GRACE
from shared.clock import FixedClock
from shared.errors import ApiError
from shared.models import ChatRequest, FeedbackRequest, RegenerateRequest
from shared.storage.base import SessionRef, Store
from shared.storage.cosmos.moves import MOVE_LEASE
from tests.shared.archive.support import NOW, SkewedClock, StoreFactory, make_store_factory, service
from tests.support.conversations import Conversations
from tests.support.faulty import FaultyStore
from tests.support.scenarios import seed
from tests.support.store_state import raw_items

ALICE = "alice@example.com"
SEEDED = 6  # messages: a few, so a move of them is one batch and feedback has a target
STALE = NOW - timedelta(days=60)

Op = Callable[["World"], Awaitable[Any]]


@dataclass
class World:
    """The session under test and what has been acknowledged to its user."""

    store: Store
    svc: Conversations
    clock: FixedClock
    session_id: str
    acknowledged_turns: list[tuple[str, str]] = field(default_factory=list)  # (user, answer)
    deleted: bool = False
    title: str | None = None
    rated: bool = False
    regenerated: list[str] = field(default_factory=list)  # acknowledged new answers, in order

    async def ref(self, where: str) -> SessionRef | None:
        session = await self.store.get_session(ALICE, self.session_id, where=where)  # type: ignore[arg-type]
        if session is None or session.etag is None:
            return None
        return SessionRef(ALICE, session.id, session.updated_at, session.etag)


# ---- the operations -------------------------------------------------------------------------


async def archive(world: World) -> None:
    ref = await world.ref("active")
    if ref is not None:
        await world.store.archive(ref)


async def restore(world: World) -> None:
    await world.store.restore(ALICE, world.session_id)


_TURNS = iter(range(1, 1_000_000))


async def turn(world: World) -> None:
    text = f"turn {next(_TURNS)}"  # every turn's text its own, however they interleave
    result = await world.svc.chat(ALICE, ChatRequest(message=text, sessionId=world.session_id))
    world.acknowledged_turns.append((text, result.assistant.content))


async def rename(world: World) -> None:
    await world.svc.rename(ALICE, world.session_id, "Renamed")
    world.title = "Renamed"


async def rate(world: World) -> None:
    message_id = f"{world.session_id}:{2:08d}"
    await world.svc.set_feedback(
        ALICE, world.session_id, message_id, FeedbackRequest(rating="up", comment=None)
    )
    world.rated = True


async def regenerate(world: World) -> None:
    result = await world.svc.regenerate(ALICE, world.session_id, RegenerateRequest())
    world.regenerated.append(result.assistant.content)


async def delete(world: World) -> None:
    await world.svc.delete_session(ALICE, world.session_id)
    world.deleted = True


async def expire(world: World) -> None:
    ref = await world.ref("archive")
    if ref is not None and await world.store.expire(ref):
        world.deleted = True


async def housekeeping(world: World) -> None:
    """What a pass's housekeeping does, ignoring the grace (it may meet a move under way)."""
    after: str | None = None
    while True:
        page, after = await world.store.scan_unfinished(
            older_than=world.clock.now() + timedelta(days=1), limit=50, after=after
        )
        for item in page:
            await world.store.finish(item)
        if after is None:
            return


OPS: dict[str, Op] = {
    "archive": archive,
    "restore": restore,
    "turn": turn,
    "rename": rename,
    "rate": rate,
    "delete": delete,
    "regenerate": regenerate,
    "expire": expire,
    "housekeeping": housekeeping,
}

# (operation paused, its step, whether the session starts archived, what runs meanwhile)
MOVE_CASES = [
    *[
        ("archive", step, False, other)
        for step in ("archive:read", "archive:copied", "archive:committed", "archive:activated")
        for other in ("turn", "rename", "rate", "delete", "archive", "housekeeping", "regenerate")
    ],
    *[
        ("restore", step, True, other)
        for step in ("restore:read", "restore:copied", "restore:committed", "restore:activated")
        for other in (
            "turn",
            "rename",
            "rate",
            "delete",
            "expire",
            "restore",
            "housekeeping",
            "regenerate",
        )
    ],
    *[
        ("delete", step, archived, other)
        for step in ("delete:marked", "delete:archive-done")
        for archived in (False, True)
        for other in ("turn", "restore", "archive", "rename", "housekeeping", "regenerate")
    ],
    *[("expire", "delete:marked", True, other) for other in ("turn", "restore", "rename")],
]


# ---- running one interleaving -----------------------------------------------------------------


class Pause:
    """Stops whoever reaches ``step`` until released; later arrivals pass straight through."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.reached = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self, at: str, session_id: str) -> None:
        if at == self.step and not self.reached.is_set():
            self.reached.set()
            await self.go.wait()


async def attempt(op: Op, world: World) -> None:
    """Run an operation; a refusal (404, 503, 409...) is a legitimate outcome of a race, as
    long as it acknowledged nothing."""
    with contextlib.suppress(ApiError):
        await op(world)


@contextlib.contextmanager
def on_host(world: World, store: Store | None) -> Iterator[None]:
    """Run what happens inside on another host's store (None: the world's own)."""
    if store is None:
        yield
        return
    own = world.store, world.svc
    world.store, world.svc = store, service(store, world.clock)
    try:
        yield
    finally:
        world.store, world.svc = own


async def interleave(
    world: World,
    first: Op,
    pause: Pause,
    install: Callable[[Pause], None],
    second: Op,
    *,
    second_on: Store | None = None,
) -> None:
    install(pause)
    paused = asyncio.create_task(attempt(first, world))
    reached = asyncio.create_task(pause.reached.wait())
    await asyncio.wait({paused, reached}, return_when=asyncio.FIRST_COMPLETED)
    if not pause.reached.is_set():
        reached.cancel()
        await paused
        pytest.fail(f"the first operation never reached {pause.step}")
    with on_host(world, second_on):
        await attempt(second, world)
    pause.go.set()
    await paused


async def settle(world: World) -> None:
    """The next archival pass's housekeeping, once every lease and grace has passed."""
    world.clock.advance(seconds=(MOVE_LEASE + UNFINISHED_GRACE).total_seconds() + 60)
    await housekeeping(world)


async def check(world: World, seeded: list[str]) -> None:
    """The invariants of the module docstring."""
    store, sid = world.store, world.session_id
    raw = await raw_items(store, ALICE)
    mine = {where: [i for i in raw[where] if sid in str(i)] for where in ("active", "archive")}
    if world.deleted:
        assert mine == {"active": [], "archive": []}, mine
        for where in ("active", "archive"):
            assert await store.get_session(ALICE, sid, where=where) is None
        return
    places = [w for w in ("active", "archive") if await store.get_session(ALICE, sid, where=w)]
    assert len(places) == 1, f"readable in {places}"
    where = places[0]
    listed = {
        w: sid
        in {s.id for s in (await store.list_sessions(ALICE, where=w, limit=50, after=None))[0]}
        for w in ("active", "archive")
    }
    assert listed == {"active": where == "active", "archive": where == "archive"}
    page, more = await store.page_messages(ALICE, sid, where=where, limit=1000)
    assert not more
    contents = [m.content for m in page]
    # The last seeded answer, or the regenerated answer that took its place.
    now_seeded = [*seeded[:-1], world.regenerated[-1]] if world.regenerated else seeded
    expected = [*now_seeded, *(text for pair in world.acknowledged_turns for text in pair)]
    # Acknowledged messages exactly once, in order (a refused turn may have stored its user
    # message without an answer: that is allowed, and only that).
    stored_turns = [c for c in contents[len(seeded) :] if not c.startswith("echo[")]
    assert contents[: len(seeded)] == now_seeded
    for text in expected:
        assert contents.count(text) == 1, (text, contents)
    assert len(stored_turns) == len(set(stored_turns))
    assert [m.seq for m in page] == list(range(1, len(page) + 1))
    # Nothing of it in the other container but, for an archived session, the active stub.
    other = "active" if where == "archive" else "archive"
    leftovers = [i for i in mine[other] if i.get("state") != "archived" or i.get("id") != sid]
    assert leftovers == [], leftovers
    assert not [i for i in mine[where] if i.get("state")], "unfinished state left"
    session = await store.get_session(ALICE, sid, where=where)
    assert session is not None
    if world.title is not None:
        assert session.title == world.title
    if world.rated:
        rated = await store.get_message(ALICE, sid, 2, where=where)
        assert rated is not None and rated.feedback is not None
    answer = page[len(seeded) - 1]
    assert answer.versions == (len(world.regenerated) + 1 if world.regenerated else None)
    earlier = await store.message_versions(
        ALICE, sid, answer.seq, where=where, count=len(world.regenerated) + 1
    )
    replaced = [seeded[-1], *world.regenerated[:-1]] if world.regenerated else []
    assert [m.content for m in earlier] == replaced


async def prepare(store: Store, clock: FixedClock, *, archived: bool) -> tuple[World, list[str]]:
    session_id = await seed(store, ALICE, STALE, SEEDED, where="archive" if archived else "active")
    page, _ = await store.page_messages(
        ALICE, session_id, where="archive" if archived else "active", limit=100
    )
    return World(store, service(store, clock), clock, session_id), [m.content for m in page]


# The same cases with the other move on the same host: there it backs off at once (a host moves
# a session one call at a time), and a claim the paused call left is never taken for abandoned.
SAME_HOST_CASES = [case for case in MOVE_CASES if case[3] in ("archive", "restore", "housekeeping")]
HOSTED_CASES = [(*case, "other") for case in MOVE_CASES] + [
    (*case, "same") for case in SAME_HOST_CASES
]


@pytest.mark.parametrize(
    ("first", "step", "archived", "second", "host"),
    HOSTED_CASES,
    ids=[
        f"{f}@{s.split(':')[1]}{'-archived' if a else ''}+{o}{'-same-host' if h == 'same' else ''}"
        for f, s, a, o, h in HOSTED_CASES
    ],
)
def test_a_move_or_delete_paused_at_a_step_while_another_operation_runs(
    cosmos_stores: StoreFactory,
    clock: FixedClock,
    first: str,
    step: str,
    archived: bool,
    second: str,
    host: str,
) -> None:
    """The other operation runs on another host (another store instance on the same account),
    as it would in production; or, for moves, on the paused one's own host."""

    async def scenario() -> None:
        async with cosmos_stores() as store, cosmos_stores() as other_host:
            world, seeded = await prepare(store, clock, archived=archived)

            def install(pause: Pause) -> None:
                store.moves.checkpoint = pause  # type: ignore[attr-defined]

            await interleave(
                world,
                OPS[first],
                Pause(step),
                install,
                OPS[second],
                second_on=other_host if host == "other" else None,
            )
            store.moves.checkpoint = None  # type: ignore[attr-defined]
            await settle(world)
            await check(world, seeded)
            # And the session still works afterwards, wherever it is (unless deleted).
            if not world.deleted:
                await turn(world)
                await check(world, seeded)

    asyncio.run(scenario())


# ---- a turn paused between its steps, on every store ------------------------------------------

TURN_STEPS = ["before-user-message", "before-answer"]
TURN_CASES = [
    (step, archived, other)
    for step in TURN_STEPS
    for archived, others in (
        (False, ("archive", "rename", "rate", "delete", "turn", "housekeeping", "regenerate")),
        (True, ("restore", "rename", "delete", "expire", "turn", "regenerate")),
    )
    for other in others
]


@pytest.mark.parametrize(
    ("step", "archived", "other"),
    TURN_CASES,
    ids=[f"{s}{'-archived' if a else ''}+{o}" for s, a, o in TURN_CASES],
)
def test_a_turn_paused_between_its_steps_while_another_operation_runs(
    stores: StoreFactory, clock: FixedClock, step: str, archived: bool, other: str
) -> None:
    async def scenario() -> None:
        async with stores() as real:
            world, seeded = await prepare(real, clock, archived=archived)
            faulty = FaultyStore(real)
            pause = Pause(step)
            appends = 0

            async def paused_append(append: Any, *args: Any, **kwargs: Any) -> Any:
                nonlocal appends
                appends += 1
                await pause(
                    "before-user-message" if appends == 1 else "before-answer", world.session_id
                )
                return await append(*args, **kwargs)

            faulty.hooks["append"] = paused_append
            paused_world = World(
                faulty,  # type: ignore[arg-type]
                service(faulty, clock),  # type: ignore[arg-type]
                clock,
                world.session_id,
            )
            paused_world.acknowledged_turns = world.acknowledged_turns

            async def first(_: World) -> None:
                await turn(paused_world)

            await interleave(world, first, pause, lambda _: None, OPS[other])
            await settle(world)
            await check(world, seeded)

    asyncio.run(scenario())


# ---- a regenerate paused between its read and its write, on every store -------------------------

REGENERATE_CASES = [
    (archived, other)
    for archived, others in (
        (False, ("archive", "rename", "rate", "delete", "turn", "housekeeping", "regenerate")),
        (True, ("restore", "rename", "delete", "expire", "turn", "regenerate")),
    )
    for other in others
]


@pytest.mark.parametrize(
    ("archived", "other"),
    REGENERATE_CASES,
    ids=[f"before-answer{'-archived' if a else ''}+{o}" for a, o in REGENERATE_CASES],
)
def test_a_regenerate_paused_before_its_write_while_another_operation_runs(
    stores: StoreFactory, clock: FixedClock, archived: bool, other: str
) -> None:
    async def scenario() -> None:
        async with stores() as real:
            world, seeded = await prepare(real, clock, archived=archived)
            faulty = FaultyStore(real)
            pause = Pause("before-answer")

            async def paused_replace(replace: Any, *args: Any, **kwargs: Any) -> Any:
                await pause("before-answer", world.session_id)
                return await replace(*args, **kwargs)

            faulty.hooks["replace_answer"] = paused_replace
            paused_world = World(
                faulty,  # type: ignore[arg-type]
                service(faulty, clock),  # type: ignore[arg-type]
                clock,
                world.session_id,
            )
            # What either acknowledges, in the order they acknowledge it.
            paused_world.acknowledged_turns = world.acknowledged_turns
            paused_world.regenerated = world.regenerated

            async def first(_: World) -> None:
                await regenerate(paused_world)

            await interleave(world, first, pause, lambda _: None, OPS[other])
            await settle(world)
            await check(world, seeded)
            if not world.deleted and not world.acknowledged_turns:
                # It can be regenerated again afterwards, wherever it was.
                await regenerate(world)
                await check(world, seeded)

    asyncio.run(scenario())


# ---- a paused move against a host whose clock runs ahead --------------------------------------
#
# Safety never depends on a lease or a clock: a host whose clock is past every lease sees the
# paused move's claim as abandoned, and undoes, discards or takes over its copy at once. The
# paused mover then resumes. Whatever that host did, the mover's commit must fail if its copy was
# undone, and nothing acknowledged may be lost (the report: a restore stalled after its copy,
# undone by housekeeping on a host 180 s ahead, then committed, deleting the archive copy).

SKEWS = {"180s": timedelta(seconds=180), "40d": timedelta(days=40)}
SKEWED_OTHERS = ("housekeeping", "archive", "restore", "delete", "expire")
SKEW_CASES = [
    (first, step, archived, other, skew)
    for first, steps, archived_options in (
        ("archive", ("read", "copied", "committed", "activated"), (False,)),
        ("restore", ("read", "copied", "committed", "activated"), (True,)),
        ("delete", ("marked", "archive-done"), (False, True)),
        ("expire", ("marked",), (True,)),
    )
    for step in steps
    for archived in archived_options
    for other in SKEWED_OTHERS
    for skew in SKEWS
]


@pytest.fixture(params=["cosmos", "cosmos-lagging"])
def both_cosmos_modes(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock
) -> StoreFactory:
    """The Cosmos store on the local server as it is, and with lagging replicas."""
    return make_store_factory(request, request.param, tmp_path, clock)


@pytest.mark.parametrize(
    ("first", "step", "archived", "second", "skew"),
    SKEW_CASES,
    ids=[f"{f}@{s}{'-archived' if a else ''}+{o}-ahead-{k}" for f, s, a, o, k in SKEW_CASES],
)
def test_a_paused_move_meets_a_host_whose_clock_is_ahead(
    both_cosmos_modes: StoreFactory,
    clock: FixedClock,
    first: str,
    step: str,
    archived: bool,
    second: str,
    skew: str,
) -> None:
    prefix = "delete" if first == "expire" else first

    async def scenario() -> None:
        ahead = SkewedClock(clock, SKEWS[skew])
        async with both_cosmos_modes() as store, both_cosmos_modes(ahead) as other_host:
            world, seeded = await prepare(store, clock, archived=archived)
            store.moves.checkpoint = Pause(f"{prefix}:{step}")  # type: ignore[attr-defined]
            pause = store.moves.checkpoint  # type: ignore[attr-defined]
            paused = asyncio.create_task(attempt(OPS[first], world))
            reached = asyncio.create_task(pause.reached.wait())
            await asyncio.wait({paused, reached}, return_when=asyncio.FIRST_COMPLETED)
            if not pause.reached.is_set():
                reached.cancel()
                await paused
                pytest.fail(f"the first operation never reached {pause.step}")
            # The other host: its own store and service, and its own clock, ahead.
            own = world.store, world.svc, world.clock
            world.store, world.svc = other_host, service(other_host, ahead)  # type: ignore[arg-type]
            try:
                await attempt(OPS[second], world)
            finally:
                world.store, world.svc, world.clock = own
            pause.go.set()
            await paused
            store.moves.checkpoint = None  # type: ignore[attr-defined]
            await settle(world)
            await check(world, seeded)
            if not world.deleted:
                await turn(world)
                await check(world, seeded)

    asyncio.run(scenario())


def test_a_restore_that_reads_no_archive_copy_from_a_lagging_replica_deletes_nothing(
    cosmos_stores: StoreFactory, clock: FixedClock
) -> None:
    """A host that has not written a user's partition may read it from a replica some writes
    behind: right after another host archived a session, its stub is visible and its archive
    copy not yet. A restore that took that for "the archive copy is gone" used to delete the
    session; only the latest state (asked by a write) may say a copy is gone."""

    async def scenario() -> None:
        async with cosmos_stores() as store:
            world, seeded = await prepare(store, clock, archived=True)
            moves = store.moves  # type: ignore[attr-defined]
            source = moves._source
            lagged = False

            async def lagging_source(where: str, email: str, session_id: str) -> Any:
                nonlocal lagged
                read = await source(where, email, session_id)
                if where == "archive" and not lagged:
                    lagged = True
                    return type(read)(None, [], True)  # the replica has not seen the copy yet
                return read

            moves._source = lagging_source
            await turn(world)  # restores the session first, then stores the turn
            assert lagged
            await settle(world)
            await check(world, seeded)

    asyncio.run(scenario())
