"""Live conversations against back-to-back archival passes, on every store.

The scenario of the data-loss report, bounded to run in the test suite: several sessions with
history, one client per session sending turns as fast as it can (each turn on an archived
session restores it first), while archival passes that see every session as stale run back
to back -- in two lanes at once, as the timer and an operator's CLI run might. At the end, and
after the next pass's housekeeping: every acknowledged message is stored exactly once, every
session is readable and listed in exactly one view, and nothing is left in the other container.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.archive import ArchivePolicy, run_archive
from shared.clock import SystemClock
from shared.consistency import catch_up
from shared.errors import ApiError
from shared.models import ChatRequest
from shared.storage.base import Store
from tests.shared.archive.support import StoreFactory, service
from tests.support.conversations import Conversations
from tests.support.scenarios import seed
from tests.support.store_state import raw_items

SESSIONS = 4
SEEDED = 10
PASSES_PER_LANE = 20
LANES = 2
MIN_TURNS_PER_CLIENT = 6


class AheadClock:
    """The real time, ``offset`` on: forty days for the passes (every session is stale to
    them), and the second host's own clock (its moves and housekeeping take every claim of the
    first host for abandoned)."""

    def __init__(self, offset: timedelta = timedelta(days=40)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


# How far the second host's clock runs ahead: past the move lease, and past everything.
SKEWS = {"180s": timedelta(seconds=180), "40d": timedelta(days=40)}


async def client(
    svc: Conversations, email: str, session_id: str, done: asyncio.Event, seed: int
) -> list[tuple[str, str]]:
    """Sends turns until the passes are done (and at least a few); returns what was
    acknowledged. A refused turn (503 while a move holds the session) acknowledged nothing.
    Between turns a user types for a moment (a few milliseconds here, like the report's one
    turn every ~50 ms): the traffic's pattern, not a wait for anything to happen."""
    acknowledged: list[tuple[str, str]] = []
    typing = random.Random(seed)
    for n in itertools.count(1):
        if done.is_set() and n > MIN_TURNS_PER_CLIENT:
            return acknowledged
        await asyncio.sleep(typing.uniform(0.002, 0.02))
        text = f"{session_id} turn {n}"
        try:
            result = await svc.chat(email, ChatRequest(message=text, sessionId=session_id))
        except ApiError:
            continue
        acknowledged.append((text, result.assistant.content))
    raise AssertionError("unreachable")


async def passes(store: Store, done: asyncio.Event, lanes: list[int], ahead: timedelta) -> int:
    archived = 0
    policy = ArchivePolicy(after_days=30, time_budget_s=600, concurrency=4)
    for _ in range(PASSES_PER_LANE):
        summary = await run_archive(store, policy, clock=AheadClock(timedelta(days=40) + ahead))
        archived += summary.archived
        await asyncio.sleep(0)  # let the clients in between passes, as time would
    lanes.append(archived)
    if len(lanes) == LANES:
        done.set()
    return archived


@pytest.mark.volume
@pytest.mark.parametrize("skew", list(SKEWS))
def test_turns_against_back_to_back_passes_lose_nothing(
    stores: StoreFactory,
    caplog: pytest.LogCaptureFixture,
    skew: str,
    request: pytest.FixtureRequest,
) -> None:
    """The two lanes run on two hosts (two stores on the same data), the second with its
    clock ahead; the clients take turns on both hosts."""

    async def scenario() -> None:
        async with stores() as store, stores() as second:
            # The stores' own clocks are real here (turns and moves stamp real times); the
            # second host's runs ahead.
            for host, clock in ((store, SystemClock()), (second, AheadClock(SKEWS[skew]))):
                if hasattr(host, "clock"):
                    host.clock = clock  # type: ignore[attr-defined]
                    host.moves.clock = clock  # type: ignore[attr-defined]
            emails = [f"user{i}@example.com" for i in range(SESSIONS)]
            sessions = [
                await seed(store, email, datetime.now(UTC) - timedelta(days=60), SEEDED)
                for email in emails
            ]
            seeded = {
                sid: [
                    m.content
                    for m in (await store.page_messages(e, sid, where="active", limit=100))[0]
                ]
                for e, sid in zip(emails, sessions, strict=True)
            }
            services = [
                service(store, SystemClock()),  # type: ignore[arg-type]
                service(second, AheadClock(SKEWS[skew])),  # type: ignore[arg-type]
            ]
            done = asyncio.Event()
            lanes: list[int] = []
            clients = [
                asyncio.create_task(client(services[i % 2], e, sid, done, seed=i))
                for i, (e, sid) in enumerate(zip(emails, sessions, strict=True))
            ]
            archived = await asyncio.gather(
                passes(store, done, lanes, timedelta(0)),
                passes(second, done, lanes, SKEWS[skew]),
            )
            results = await asyncio.gather(*clients)

            # The passes really moved sessions while the clients brought them back. Not on
            # lagging replicas: there a move reads a session as of a snapshot that these
            # clients' turns (one every few milliseconds, on both hosts) have always passed,
            # so its commit is refused (safely) nearly every time. A session in real use is
            # never stale, so that costs nothing in production; what the run checks there is
            # that nothing is lost, and the interleavings prove each move step on lagging
            # replicas (tests/shared/archive/test_interleavings.py).
            restores = [r for r in caplog.records if r.getMessage() == "session_restored"]
            if "lagging" not in request.node.name:
                assert sum(archived) >= SESSIONS and len(restores) >= SESSIONS, (
                    archived,
                    restores,
                )
            # The next pass's housekeeping, far enough ahead (of the second host's clock too)
            # that no move counts as under way.
            await run_archive(
                store,
                ArchivePolicy(after_days=100_000, time_budget_s=600),
                clock=AheadClock(SKEWS[skew] + timedelta(days=1)),
            )

            for email, sid, acknowledged in zip(emails, sessions, results, strict=True):
                # What is stored now, not what a replica behind the other host's writes
                # shows (lagging mode): the reads below see every acknowledged write.
                assert await catch_up(store, email)
                assert len(acknowledged) >= MIN_TURNS_PER_CLIENT
                places = [
                    w for w in ("active", "archive") if await store.get_session(email, sid, where=w)
                ]
                assert len(places) == 1, (sid, places)
                where = places[0]
                for view in ("active", "archive"):
                    listed, _ = await store.list_sessions(email, where=view, limit=10, after=None)
                    assert ([s.id for s in listed] == [sid]) is (view == where), (sid, view)
                page, more = await store.page_messages(email, sid, where=where, limit=10_000)
                assert not more
                contents = [m.content for m in page]
                assert [m.seq for m in page] == list(range(1, len(page) + 1))
                assert contents[:SEEDED] == seeded[sid]
                for user_text, answer in acknowledged:
                    assert contents.count(user_text) == 1, (sid, user_text)
                    assert contents.count(answer) == 1, (sid, answer)
                raw = await raw_items(store, email)
                other = "archive" if where == "active" else "active"
                strays = [
                    i
                    for i in raw[other]
                    if not (i.get("state") == "archived" and i.get("id") == sid)
                ]
                assert strays == [], strays
                assert not [i for i in raw[where] if i.get("state")]

    with caplog.at_level("INFO", logger="parley.service"):
        asyncio.run(scenario())
