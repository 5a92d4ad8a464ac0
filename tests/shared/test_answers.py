"""Answers stored as they grow, on every store (docs/design.md, "Streaming checkpoints"): an
answer that ends within one checkpoint interval is written once, whole; a longer one is
readable from another client while the model writes, its checkpoints paced by their pause,
and a checkpoint racing a turn, a rename, feedback, a delete or an archival move loses and
doubles nothing. A stop asked for through another client stops it; a dead generation is shown
as "interrupted" by the clock alone, and the session goes on. No time passes in these tests:
every pause is ended by the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.answers import Ended, Grew, Resumed
from shared.clock import FixedClock
from shared.config import load_settings
from shared.errors import Conflict, ModelError, NotFound
from shared.ids import message_item_id
from shared.llm.base import ModelMessage, Usage
from shared.llm.echo import EchoModel
from shared.models import ChatRequest, FeedbackRequest, MessageRecord, RegenerateRequest
from shared.storage.base import Checkpoint, MoveOutcome, SessionRef, Store
from shared.time_limits import model_budget_s
from tests.support.conversations import Conversations
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

START = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)
SETTINGS = load_settings({"MAX_HISTORY_MESSAGES": "6"})
BUDGET_S = model_budget_s(SETTINGS.llm_timeout_s, SETTINGS.llm_max_retries)


class GatedModel:
    """Answers with ``pieces``, waiting before each one after the first until the test lets it
    go (``release``)."""

    name = "gated"

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = list(pieces)
        self.gates = [asyncio.Event() for _ in pieces]
        self.gates[0].set()
        self.cancelled = False

    def release(self, index: int) -> None:
        self.gates[index].set()

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        try:
            for gate, piece in zip(self.gates, self.pieces, strict=True):
                await gate.wait()
                yield piece
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def close(self) -> None:
        return None


class Pauses:
    """The checkpoints' pause, ended by the test (``tick``): no time passes in these tests."""

    def __init__(self) -> None:
        self.waiting = 0
        self._tick = asyncio.Event()

    async def sleep(self, _seconds: float) -> None:
        self.waiting += 1
        await self._tick.wait()
        self._tick = asyncio.Event()

    def tick(self) -> None:
        self._tick.set()


class Watched:
    """The store, counting its writes."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.appends = 0
        self.finishes = 0
        self.checkpoints: list[Checkpoint] = []

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.inner.append(*args, **kwargs)
        self.appends += 1
        return result

    async def checkpoint_answer(self, *args: Any, **kwargs: Any) -> Checkpoint:
        result = await self.inner.checkpoint_answer(*args, **kwargs)
        self.checkpoints.append(result)
        return result

    async def finish_answer(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.inner.finish_answer(*args, **kwargs)
        self.finishes += 1
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def until(condition: Any) -> None:
    """Wait for the scenario's tasks to reach ``condition`` (checked between their steps; the
    stores' own I/O may take real time, bounded here so a broken scenario fails)."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition was never met")


def make(store: Any, model: Any, pauses: Pauses, clock: FixedClock) -> Conversations:
    return Conversations(store, model, SETTINGS, clock=clock, checkpoint_sleep=pauses.sleep)


def ask(message: str, session_id: str | None = None) -> ChatRequest:
    return ChatRequest.model_validate({"message": message, "sessionId": session_id})


async def last(svc: Conversations, email: str, sid: str) -> Any:
    detail = await svc.get_session(email, sid)
    return detail.messages[-1]


async def grown(
    watched: Watched, pauses: Pauses, model: GatedModel, svc: Conversations, email: str
) -> tuple[Any, asyncio.Future[Any]]:
    """A turn whose answer is past its first checkpoint: its item exists, "streaming"."""
    turn = await svc.begin_turn(email, ask("hi"))
    result = asyncio.ensure_future(turn.result())
    await until(lambda: pauses.waiting == 1)
    pauses.tick()
    await until(lambda: watched.appends == 2 and pauses.waiting == 2)
    return turn, result


def test_an_answer_within_one_interval_is_written_once_whole(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        model = GatedModel(["quick ", "answer"])
        model.release(1)
        svc = make(watched, model, pauses, clock)
        done = await svc.chat(alice, ask("hi"))
        assert (done.assistant.status, done.assistant.content) == ("complete", "quick answer")
        # The question's write and the answer's: nothing more than before checkpoints existed.
        assert (watched.appends, watched.checkpoints, watched.finishes) == (2, [], 0)
        assert (await last(svc, alice, done.session_id)).status == "complete"

    run(scenario)


def test_a_longer_answer_is_readable_as_it_grows(
    run: Runner[None], emails: tuple[str, str], store_factory: Any, request: Any
) -> None:
    alice, _ = emails
    # A lagging replica shows another client an older snapshot (a moment behind, by design):
    # there the reader shares the writer's client (its session token).
    lagging = "lagging" in request.node.name

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        model = GatedModel(["Hello", " there", ", friend."])
        svc = make(watched, model, pauses, clock)
        other = store if lagging else store_factory()
        reader = Conversations(other, EchoModel(), SETTINGS, clock=clock)
        try:
            turn, result = await grown(watched, pauses, model, svc, alice)
            shown = await last(reader, alice, turn.session_id)
            assert (shown.role, shown.status, shown.content) == ("assistant", "streaming", "Hello")

            model.release(1)
            await until(lambda: turn._queue.qsize() == 2)  # the piece has arrived
            assert watched.checkpoints == []  # held back by the pause
            pauses.tick()
            await until(lambda: len(watched.checkpoints) == 1)
            shown = await last(reader, alice, turn.session_id)
            assert (shown.status, shown.content) == ("streaming", "Hello there")

            model.release(2)
            done = await result
            assert (done.assistant.status, done.assistant.content) == (
                "complete",
                "Hello there, friend.",
            )
            detail = await reader.get_session(alice, turn.session_id)
            assert [(m.role, m.status, m.content) for m in detail.messages] == [
                ("user", None, "hi"),
                ("assistant", "complete", "Hello there, friend."),
            ]
            assert detail.message_count == 2
            # Search finds the answer by its last words, not only by those of its first write.
            found = await reader.search(
                alice, "friend", limit=10, continuation=None, archived=False
            )
            assert [(r.session_id, [m.message_id for m in r.matches]) for r in found.results] == [
                (turn.session_id, [message_item_id(turn.session_id, 2)])
            ]
            # The question, the answer begun, one checkpoint, the final write.
            assert watched.appends == 2 and watched.finishes == 1
            assert watched.checkpoints == [Checkpoint.WRITTEN]
        finally:
            if other is not store:
                await other.close()

    run(scenario)


def test_checkpoints_racing_a_turn_a_rename_and_feedback_lose_and_double_nothing(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        model = GatedModel(["slow ", "answer ", "ends"])
        svc = make(watched, model, pauses, clock)
        quick = Conversations(store, EchoModel(), SETTINGS, clock=clock)
        turn, result = await grown(watched, pauses, model, svc, alice)
        sid = turn.session_id
        growing = await last(quick, alice, sid)
        # Feedback on the growing answer, a rename and a whole other turn, while it streams.
        await quick.set_feedback(alice, sid, growing.id, FeedbackRequest(rating="up"))
        await quick.update_session(alice, sid, title="renamed meanwhile")
        other = await quick.chat(alice, ask("three", sid))
        model.release(1)
        await until(lambda: turn._queue.qsize() == 2)
        pauses.tick()
        await until(lambda: len(watched.checkpoints) == 1)
        assert watched.checkpoints == [Checkpoint.WRITTEN]
        model.release(2)
        done = await result
        assert done.assistant.content == "slow answer ends"
        detail = await quick.get_session(alice, sid)
        assert [(m.role, m.content, m.status) for m in detail.messages] == [
            ("user", "hi", None),
            ("assistant", "slow answer ends", "complete"),
            ("user", "three", None),
            ("assistant", other.assistant.content, "complete"),
        ]
        assert detail.message_count == 4 and detail.title == "renamed meanwhile"
        answer = detail.messages[1]
        assert answer.feedback is not None and answer.feedback.rating == "up"

    run(scenario)


def test_a_checkpoint_after_a_delete_writes_nothing_and_the_answer_goes_with_it(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        model = GatedModel(["doomed ", "answer", "."])
        svc = make(watched, model, pauses, clock)
        turn, result = await grown(watched, pauses, model, svc, alice)
        await svc.delete_session(alice, turn.session_id)
        model.release(1)
        pauses.tick()
        await until(lambda: len(watched.checkpoints) == 1)
        assert watched.checkpoints == [Checkpoint.GONE]
        model.release(2)
        with pytest.raises(NotFound):
            await result
        for where in ("active", "archive"):
            assert await store.get_session(alice, turn.session_id, where=where) is None
            assert await store.page_messages(alice, turn.session_id, where=where, limit=5) == (
                [],
                False,
            )

    run(scenario)


def test_an_archival_move_during_an_answer_loses_none_of_it(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        model = GatedModel(["moved ", "while ", "streaming"])
        svc = make(watched, model, pauses, clock)
        turn, result = await grown(watched, pauses, model, svc, alice)
        session = await store.get_session(alice, turn.session_id, where="active")
        assert session is not None and session.etag
        ref = SessionRef(
            email=alice, session_id=session.id, updated_at=session.updated_at, etag=session.etag
        )
        assert await store.archive(ref) is MoveOutcome.MOVED
        model.release(1)
        pauses.tick()
        await until(lambda: len(watched.checkpoints) == 1)
        assert watched.checkpoints == [Checkpoint.GONE]  # not in the active container any more
        model.release(2)
        done = await result
        assert (done.assistant.content, done.assistant.status) == (
            "moved while streaming",
            "complete",
        )
        detail = await svc.get_session(alice, turn.session_id)
        assert not detail.archived
        assert [(m.role, m.content, m.status) for m in detail.messages] == [
            ("user", "hi", None),
            ("assistant", "moved while streaming", "complete"),
        ]
        assert await store.get_session(alice, turn.session_id, where="archive") is None

    run(scenario)


def test_a_stop_through_another_client_cancels_the_model_and_keeps_the_text(
    run: Runner[None], emails: tuple[str, str], store_factory: Any, request: Any
) -> None:
    alice, _ = emails
    lagging = "lagging" in request.node.name

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        model = GatedModel(["half ", "an answer", " never said"])
        svc = make(watched, model, pauses, clock)
        other = store if lagging else store_factory()
        elsewhere = make(other, EchoModel(), Pauses(), clock)
        try:
            turn, result = await grown(watched, pauses, model, svc, alice)
            model.release(1)
            await until(lambda: turn._queue.qsize() == 2)
            assert await elsewhere.stop_answer(alice, turn.session_id) is True
            pauses.tick()  # the next checkpoint meets the stop
            done = await result
            assert model.cancelled
            assert (done.assistant.status, done.assistant.content) == ("stopped", "half an answer")
            assert watched.checkpoints == [Checkpoint.STOPPED]
            shown = await last(elsewhere, alice, turn.session_id)
            assert (shown.status, shown.content) == ("stopped", "half an answer")
            # Nothing being generated any more: a stop now is nothing to do (204).
            assert await elsewhere.stop_answer(alice, turn.session_id) is False
            # The session goes on.
            after = await elsewhere.chat(alice, ask("again", turn.session_id))
            assert after.assistant.status == "complete"
        finally:
            if other is not store:
                await other.close()

    run(scenario)


def test_a_follower_sees_the_answer_resume_grow_and_end(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        model = GatedModel(["Once", " upon", " a time."])
        svc = make(watched, model, pauses, clock)
        reads = Pauses()
        follower = make(store, EchoModel(), reads, clock)
        turn, result = await grown(watched, pauses, model, svc, alice)
        events = aiter(follower.follow_answer(alice, turn.session_id))
        first = await anext(events)
        assert isinstance(first, Resumed) and first.message.content == "Once"
        assert first.message.status == "streaming"
        model.release(1)
        await until(lambda: turn._queue.qsize() == 2)
        pauses.tick()
        await until(lambda: len(watched.checkpoints) == 1)
        following = asyncio.ensure_future(anext(events))
        await until(lambda: reads.waiting == 1)
        reads.tick()
        assert await following == Grew(" upon")
        model.release(2)
        await result
        following = asyncio.ensure_future(anext(events))
        await until(lambda: reads.waiting == 2)
        reads.tick()
        assert await following == Grew(" a time.")
        end = await anext(events)
        assert isinstance(end, Ended) and end.message is not None
        assert (end.message.status, end.message.content) == ("complete", "Once upon a time.")
        # Nothing being generated: the follow ends at once.
        assert [e async for e in follower.follow_answer(alice, turn.session_id)] == [Ended(None)]
        # Another user's session is not found.
        with pytest.raises(NotFound):
            await anext(aiter(follower.follow_answer(bob, turn.session_id)))
        with pytest.raises(NotFound):
            await follower.stop_answer(bob, turn.session_id)

    run(scenario)


def test_a_dead_generation_is_shown_interrupted_once_older_than_the_model_budget(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = Conversations(store, EchoModel(), SETTINGS, clock=FixedClock(START))
        first = await svc.chat(alice, ask("hello"))
        sid = first.session_id
        session = await store.get_session(alice, sid, where="active")
        assert session is not None
        # What an instance killed mid-answer leaves: an answer begun, never finished.
        begun = MessageRecord(
            session_id=sid,
            seq=session.last_seq + 2,
            role="assistant",
            content="half an ans",
            timestamp=START,
            status="streaming",
            checkpoint_at=START + timedelta(seconds=5),
        )
        question = MessageRecord(
            session_id=sid, seq=session.last_seq + 1, role="user", content="go", timestamp=START
        )
        await store.append(
            session.model_copy(update={"last_seq": begun.seq, "message_count": 4}),
            [question, begun],
            expected_etag=session.etag,
        )

        def at(seconds: float) -> Conversations:
            clock = FixedClock(START + timedelta(seconds=seconds))
            return Conversations(store, EchoModel(), SETTINGS, clock=clock)

        within = await last(at(5 + BUDGET_S), alice, sid)
        assert (within.status, within.content) == ("streaming", "half an ans")
        later = at(5 + BUDGET_S + 1)
        after = await last(later, alice, sid)
        assert (after.status, after.content) == ("interrupted", "half an ans")
        page = await later.page_messages(alice, sid, before=None, limit=5)
        assert page.messages[-1].status == "interrupted"
        exported = "".join(
            [piece async for piece in later.export_json(alice, now=later.clock.now())]
        )
        assert '"status":"interrupted"' in exported and '"status":"streaming"' not in exported
        # Nothing to stop or follow: it is not being generated.
        assert await later.stop_answer(alice, sid) is False
        assert [e async for e in later.follow_answer(alice, sid)] == [Ended(None)]
        # The stored item is untouched by reading it, and the session goes on.
        stored = await store.get_message(alice, sid, begun.seq, where="active")
        assert stored is not None and stored.status == "streaming"
        nxt = await later.chat(alice, ask("and now?", sid))
        assert nxt.assistant.status == "complete"
        detail = await later.get_session(alice, sid)
        assert [m.status for m in detail.messages] == [
            None,
            "complete",
            None,
            "interrupted",
            None,
            "complete",
        ]

    run(scenario)


def test_a_model_failure_after_some_text_keeps_it_as_interrupted(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    class Breaks(GatedModel):
        async def stream(
            self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
        ) -> AsyncIterator[str | Usage]:
            yield "a beginning"
            await self.gates[1].wait()
            raise ModelError()

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        model = Breaks(["a beginning", ""])
        svc = make(watched, model, pauses, clock)
        turn = await svc.begin_turn(alice, ask("hi"))
        result = asyncio.ensure_future(turn.result())
        await until(lambda: pauses.waiting == 1)
        pauses.tick()
        await until(lambda: watched.appends == 2)
        model.release(1)
        with pytest.raises(ModelError):
            await result
        shown = await last(svc, alice, turn.session_id)
        assert (shown.status, shown.content) == ("interrupted", "a beginning")

    run(scenario)


def test_a_stop_that_meets_the_final_write_leaves_the_answer_whole(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    class HeldFinish(Watched):
        def __init__(self, inner: Store) -> None:
            super().__init__(inner)
            self.arrived = asyncio.Event()
            self.go = asyncio.Event()

        async def finish_answer(self, *args: Any, **kwargs: Any) -> Any:
            self.arrived.set()
            await self.go.wait()
            return await super().finish_answer(*args, **kwargs)

    async def scenario(store: Store) -> None:
        watched, pauses, clock = HeldFinish(store), Pauses(), FixedClock(START)
        model = GatedModel(["all ", "of ", "it"])
        svc = make(watched, model, pauses, clock)
        elsewhere = make(store, EchoModel(), Pauses(), clock)
        turn, result = await grown(watched, pauses, model, svc, alice)
        model.release(1)
        model.release(2)
        await watched.arrived.wait()  # the model has ended; its final write is about to go
        # The stop still finds it streaming (202), but no checkpoint is left to meet it.
        assert await elsewhere.stop_answer(alice, turn.session_id) is True
        watched.go.set()
        done = await result
        assert (done.assistant.status, done.assistant.content) == ("complete", "all of it")
        stored = await store.get_message(alice, turn.session_id, 2, where="active")
        assert stored is not None and (stored.status, stored.stop_requested) == ("complete", False)
        assert await elsewhere.stop_answer(alice, turn.session_id) is False

    run(scenario)


def test_a_long_regenerated_answer_grows_like_any_and_is_not_regenerated_while_it_does(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        watched, pauses, clock = Watched(store), Pauses(), FixedClock(START)
        quick = Conversations(store, EchoModel(), SETTINGS, clock=clock)
        first = await quick.chat(alice, ask("hi"))
        sid = first.session_id
        model = GatedModel(["another ", "answer"])
        svc = make(watched, model, pauses, clock)
        turn = await svc.begin_regenerate(alice, sid, RegenerateRequest())
        result = asyncio.ensure_future(turn.result())
        await until(lambda: pauses.waiting == 1)
        pauses.tick()  # the first checkpoint: the new answer takes the old one's place
        await until(lambda: pauses.waiting == 2)
        growing = await last(quick, alice, sid)
        assert (growing.status, growing.content) == ("streaming", "another ")
        # Its generator still writes that item: no regenerate over it (409).
        with pytest.raises(Conflict):
            await quick.begin_regenerate(alice, sid, RegenerateRequest())
        model.release(1)
        done = await result
        assert (done.assistant.status, done.assistant.content) == ("complete", "another answer")
        versions = await quick.message_versions(alice, sid, growing.id)
        assert [(v.content, v.status) for v in versions.versions] == [
            (first.assistant.content, "complete"),
            ("another answer", "complete"),
        ]
        detail = await quick.get_session(alice, sid)
        assert [m.content for m in detail.messages] == ["hi", "another answer"]

    run(scenario)
