"""A session in the middle of a move is not missing.

Locating a session (get, messages, rename, feedback) used to read the active container and then
the archive in two separate reads, and a move landing between them hid the session: 404 for a
session that exists. And what was read where the session was located (its messages, the message
to rate) could be gone from there a moment later. Here an archive or a restore lands at exactly
those moments (an injected move, run to completion from inside the read it races), on every
store; the operation must succeed and show everything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from shared.clock import FixedClock
from shared.errors import StorageUnavailable
from shared.models import FeedbackRequest
from shared.storage.base import SessionRef, Store, Where
from tests.shared.archive.support import NOW, StoreFactory, service
from tests.support.conversations import Conversations
from tests.support.faulty import FaultyStore
from tests.support.scenarios import seed

ALICE = "alice@example.com"
SEEDED = 6

Move = Callable[[], Awaitable[Any]]


def mover(store: Store, session_id: str, archived: bool, *, must: bool = True) -> Move:
    """The move that takes the session to the other container (to completion); unless
    ``must``, nothing when the session is not where this host reads it right now."""

    async def move() -> None:
        if archived:
            await store.restore(ALICE, session_id)
            return
        session = await store.get_session(ALICE, session_id, where="active")
        if not must and (session is None or session.etag is None):
            return
        assert session is not None and session.etag is not None
        await store.archive(SessionRef(ALICE, session_id, session.updated_at, session.etag))

    return move


async def run_op(svc: Conversations, op: str, session_id: str) -> None:
    """The operation, and what it must show: everything the session holds."""
    if op == "get":
        detail = await svc.get_session(ALICE, session_id)
        assert [m.id for m in detail.messages] == [
            f"{session_id}:{seq:08d}" for seq in range(1, SEEDED + 1)
        ]
    elif op == "messages":
        before = f"{session_id}:{SEEDED:08d}"
        page = await svc.page_messages(ALICE, session_id, before=before, limit=3)
        assert [m.id for m in page.messages] == [
            f"{session_id}:{seq:08d}" for seq in range(SEEDED - 3, SEEDED)
        ]
    elif op == "rename":
        summary = await svc.rename(ALICE, session_id, "Renamed")
        assert summary.title == "Renamed"
    else:
        message = await svc.set_feedback(
            ALICE, session_id, f"{session_id}:{2:08d}", FeedbackRequest(rating="up", comment=None)
        )
        assert message is not None and message.feedback is not None


# The moments a move lands: between locating's reads (right after the first read of the
# session item), or after the session was located, before what is read or written there.
AFTER_LOCATE = {"get": "page_messages", "messages": "page_messages", "feedback": "get_message"}
CASES = [
    (op, archived, moment)
    for op in ("get", "messages", "rename", "feedback")
    for archived in (False, True)
    for moment in ("while-locating", "after-locating")
    if moment == "while-locating" or op in AFTER_LOCATE
]


@pytest.mark.parametrize(
    ("op", "archived", "moment"),
    CASES,
    ids=[f"{op}{'-archived' if a else ''}-{m}" for op, a, m in CASES],
)
def test_a_move_landing_while_a_session_is_located_never_hides_it(
    stores: StoreFactory, clock: FixedClock, op: str, archived: bool, moment: str
) -> None:
    async def scenario() -> None:
        async with stores() as real:
            where: Where = "archive" if archived else "active"
            session_id = await seed(real, ALICE, NOW - timedelta(days=60), SEEDED, where=where)
            move = mover(real, session_id, archived)
            moved = asyncio.Event()
            faulty = FaultyStore(real)

            async def then_move(method: Any, *args: Any, **kwargs: Any) -> Any:
                result = await method(*args, **kwargs)
                if not moved.is_set():
                    moved.set()
                    await move()
                return result

            async def move_first(method: Any, *args: Any, **kwargs: Any) -> Any:
                if not moved.is_set():
                    moved.set()
                    await move()
                return await method(*args, **kwargs)

            if moment == "after-locating":
                faulty.hooks[AFTER_LOCATE[op]] = move_first
            elif hasattr(real, "conn"):
                # Cosmos: right after the first point read of the session item, wherever the
                # store reads it from.
                conn = real.conn
                read = conn.read

                async def read_then_move(where: Where, item_id: str, email: str) -> Any:
                    result = await read(where, item_id, email)
                    if item_id == session_id and not moved.is_set():
                        moved.set()
                        await move()
                    return result

                conn.read = read_then_move
            else:
                # SQLite: right after the first read of one container.
                faulty.hooks["get_session"] = then_move
            await run_op(service(faulty, clock), op, session_id)  # type: ignore[arg-type]
            # The session is whole wherever it ended up.
            places = [
                w
                for w in ("active", "archive")
                if await real.get_session(ALICE, session_id, where=w)
            ]  # type: ignore[arg-type]
            assert len(places) == 1, places

    asyncio.run(scenario())


CYCLES = 15


@pytest.mark.volume  # live traffic: not at 400 RU/s
def test_reads_and_writes_racing_back_to_back_moves_never_miss_the_session(
    stores: StoreFactory, clock: FixedClock
) -> None:
    """The report's race, free-running: while one host archives and restores a session back to
    back (archival passes and the turns that bring it back), another gets it, pages its
    messages, renames it and rates a message, over and over. None of it may be told that the
    session does not exist, nor miss a message of it."""

    async def scenario() -> None:
        async with stores() as real, stores() as other:
            session_id = await seed(real, ALICE, NOW - timedelta(days=60), SEEDED)
            done = asyncio.Event()

            async def moves() -> None:
                try:
                    for _ in range(CYCLES):
                        await mover(other, session_id, archived=False, must=False)()
                        await asyncio.sleep(0)
                        await mover(other, session_id, archived=True, must=False)()
                        await asyncio.sleep(0)
                finally:
                    done.set()

            async def reader(op: str) -> int:
                count = 0
                while not done.is_set():
                    # 503 (a move not followed in a few reads) is allowed; 404 never is.
                    with contextlib.suppress(StorageUnavailable):
                        await run_op(service(real, clock), op, session_id)
                    count += 1
                return count

            results = await asyncio.gather(
                moves(), *(reader(op) for op in ("get", "messages", "rename", "feedback"))
            )
            assert all(n > 0 for n in results[1:])

    asyncio.run(scenario())
