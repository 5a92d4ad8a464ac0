"""The service's guarantees hold on every store: idempotency, concurrent turns, failures in the
middle of a turn, delete. The echo model answers; a FixedClock gives the time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.clock import FixedClock
from shared.config import load_settings
from shared.errors import ModelError, NotFound, StorageUnavailable
from shared.llm.base import ModelMessage, Usage
from shared.llm.echo import EchoModel
from shared.models import ChatRequest, MessageRecord, RequestRecord, SessionRecord
from shared.storage.base import MoveOutcome, SessionRef, Store
from tests.support.conversations import Conversations
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

START = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)


def service(store: Store, model: Any = None) -> Conversations:
    settings = load_settings({"MAX_HISTORY_MESSAGES": "6"})
    return Conversations(store, model or EchoModel(), settings, clock=FixedClock(START))


def chat(message: str, session_id: str | None = None, cmid: str | None = None) -> ChatRequest:
    return ChatRequest.model_validate(
        {"message": message, "sessionId": session_id, "clientMessageId": cmid}
    )


class FailingModel:
    """A model that fails the way a real one does (ModelError), after the user message."""

    name = "failing"

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        raise ModelError()
        yield ""  # an async generator, like a real adapter

    async def close(self) -> None:
        return None


class FailSecondCommit:
    """Wraps a store and fails its second append, as a storage outage between the two batches
    of one turn would. Only ``append`` is intercepted; the rest is the real store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.commits = 0

    async def append(
        self,
        session: SessionRecord,
        messages: list[MessageRecord],
        *,
        expected_etag: str | None,
        request: RequestRecord | None = None,
    ) -> SessionRecord:
        self.commits += 1
        if self.commits == 2:
            raise StorageUnavailable()
        return await self.inner.append(
            session, messages, expected_etag=expected_etag, request=request
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def assert_consistent(store: Store, email: str, session_id: str) -> list[str]:
    """The session item agrees with its messages; returns the messages' contents."""
    session = await store.get_session(email, session_id, where="active")
    assert session is not None
    messages, more = await store.page_messages(email, session_id, where="active", limit=1000)
    assert not more
    seqs = [m.seq for m in messages]
    assert seqs == list(range(1, len(messages) + 1))
    assert (session.message_count, session.last_seq) == (len(messages), len(messages))
    return [m.content for m in messages]


def test_a_conversation_continues_from_stored_history(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = service(store)
        first = await svc.chat(alice, chat("one"))
        second = await svc.chat(alice, chat("two", first.session_id))
        third = await svc.chat(alice, chat("three", first.session_id))
        assert [t.assistant.content for t in (first, second, third)] == [
            "echo[0]:\none",
            "echo[2]:\ntwo",
            "echo[4]:\nthree",
        ]
        detail = await svc.get_session(alice, first.session_id)
        assert [m.content for m in detail.messages][-1] == "echo[4]:\nthree"
        assert detail.message_count == 6

    run(scenario)


def test_a_retried_client_message_id_stores_nothing_twice(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = service(store)
        first = await svc.chat(alice, chat("hello", cmid="m-1"))
        again = await svc.chat(alice, chat("hello", cmid="m-1"))  # first message, retried
        assert again.session_id == first.session_id
        assert again.assistant == first.assistant and again.user == first.user

        nxt = await svc.chat(alice, chat("more", first.session_id, cmid="m-2"))
        retry = await svc.chat(alice, chat("more", first.session_id, cmid="m-2"))
        assert retry.assistant == nxt.assistant
        contents = await assert_consistent(store, alice, first.session_id)
        assert contents == ["hello", "echo[0]:\nhello", "more", "echo[2]:\nmore"]

    run(scenario)


def test_twenty_concurrent_turns_in_one_session(
    run: Runner[None], emails: tuple[str, str], throttled: bool
) -> None:
    """All twenty are stored, each once. Under a tight request-unit budget a turn may instead
    be refused with 503 and Retry-After once the SDK's own retries are spent: that turn is not
    acknowledged, and whatever it stored is whole (its question, maybe without an answer)."""
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = service(store)
        start = await svc.chat(alice, chat("start"))
        sid = start.session_id
        outcomes = await asyncio.gather(
            *(svc.chat(alice, chat(f"m{i}", sid)) for i in range(20)), return_exceptions=True
        )
        results = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        for error in refused:
            assert throttled and isinstance(error, StorageUnavailable), error
            assert error.retry_after_s and error.retry_after_s > 0
        contents = await assert_consistent(store, alice, sid)
        users = [c for c in contents if c.startswith("m")]
        assert len(users) == len(set(users))  # none stored twice
        for result in results:  # every acknowledged turn stored once, answer included
            assert users.count(result.user.content) == 1
            stored = [c for c in contents if c.endswith(f":\n{result.user.content}")]
            assert stored == [result.assistant.content]
        if not throttled:
            assert len(contents) == 2 + 40 and sorted(users) == sorted(f"m{i}" for i in range(20))

    run(scenario)


def test_a_model_failure_keeps_the_user_message_only(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        ok = await service(store).chat(alice, chat("first"))
        with pytest.raises(ModelError):
            await service(store, FailingModel()).chat(alice, chat("second", ok.session_id))
        contents = await assert_consistent(store, alice, ok.session_id)
        assert contents == ["first", "echo[0]:\nfirst", "second"]
        # The conversation goes on afterwards, the model seeing the kept message.
        after = await service(store).chat(alice, chat("third", ok.session_id))
        assert after.assistant.content == "echo[3]:\nthird"

    run(scenario)


def test_a_retry_after_a_model_failure_answers_without_storing_the_question_twice(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        ok = await service(store).chat(alice, chat("first"))
        with pytest.raises(ModelError):
            await service(store, FailingModel()).chat(alice, chat("second", ok.session_id, "c-2"))
        retried = await service(store).chat(alice, chat("second", ok.session_id, "c-2"))
        # The model saw the stored history up to the kept question: 2 earlier messages.
        assert retried.assistant.content == "echo[2]:\nsecond"
        assert retried.user.id == f"{ok.session_id}:00000003"
        again = await service(store).chat(alice, chat("second", ok.session_id, "c-2"))
        assert again.assistant == retried.assistant
        contents = await assert_consistent(store, alice, ok.session_id)
        assert contents == ["first", "echo[0]:\nfirst", "second", "echo[2]:\nsecond"]

    run(scenario)


def test_a_storage_failure_mid_turn_leaves_the_session_consistent(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        flaky = FailSecondCommit(store)
        with pytest.raises(StorageUnavailable):
            await service(flaky).chat(alice, chat("hello"))  # type: ignore[arg-type]
        assert flaky.commits == 2
        [listed], _ = await store.list_sessions(alice, where="active", limit=5, after=None)
        contents = await assert_consistent(store, alice, listed.id)
        assert contents == ["hello"]  # the user's message, no invented answer

    run(scenario)


def test_delete_leaves_nothing_in_either_container(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = service(store)
        turn = await svc.chat(alice, chat("hello"))
        sid = turn.session_id
        session = await store.get_session(alice, sid, where="active")
        assert session is not None and session.etag
        ref = SessionRef(
            email=alice, session_id=sid, updated_at=session.updated_at, etag=session.etag
        )
        assert await store.archive(ref) is MoveOutcome.MOVED

        with pytest.raises(NotFound):
            await svc.delete_session(bob, sid)
        await svc.delete_session(alice, sid)
        for where in ("active", "archive"):
            assert await store.get_session(alice, sid, where=where) is None
            assert await store.page_messages(alice, sid, where=where, limit=5) == ([], False)
        assert await store.session_ids(alice, limit=5) == []
        with pytest.raises(NotFound):
            await svc.get_session(alice, sid)
        with pytest.raises(NotFound):
            await svc.delete_session(alice, sid)

    run(scenario)
