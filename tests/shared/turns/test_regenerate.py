"""Regenerating an answer, its versions, and branching a conversation, on every store.

A regenerate is a turn without a new question: its answer replaces the last one in one write
guarded by the session's ETag, and the answer it replaces is kept as an earlier version, with
its session wherever it goes (moved, exported, deleted). Each race pauses the regenerate
between its read and its write (``pause_at`` on ``replace_answer``), lets the rival finish,
then lets the regenerate go on: nothing acknowledged is lost or doubled.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import Conflict, NotFound, QuotaExceeded, StorageUnavailable
from shared.export import export_document
from shared.export_formats import csv_rows, markdown_zip
from shared.ids import message_item_id
from shared.models import ChatRequest, FeedbackRequest, RegenerateRequest
from shared.storage.base import Store
from shared.storage.cosmos import CosmosStore
from shared.storage.sqlite import SqliteStore
from tests.support.conversations import Conversations
from tests.support.faulty import Crash, FaultyStore
from tests.support.scenarios import archive, make_service, nothing_of, pause_at, seed_session
from tests.support.store_state import raw_items
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


class CountingModel:
    """Answers "answer <n> to <question>", n counting the calls: each version differs."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, messages: Any, *, cache_key: str | None = None) -> Any:
        self.calls += 1
        yield f"answer {self.calls} to {messages[-1]['content']}"

    async def complete(self, *args: Any, **kwargs: Any) -> str:
        return "title"

    async def close(self) -> None:
        return None


def svc(store: Any, model: Any = None) -> Conversations:
    return make_service(store, model=model or CountingModel(), MAX_HISTORY_MESSAGES="6")


def again(cmid: str | None = None) -> RegenerateRequest:
    return RegenerateRequest.model_validate({"clientMessageId": cmid})


async def two_turns(service: Conversations, email: str) -> str:
    first = await service.chat(email, ChatRequest(message="one"))
    await service.chat(email, ChatRequest(message="two", sessionId=first.session_id))
    return first.session_id


def real(store: Any) -> Store:
    inner: Store = store.inner if isinstance(store, FaultyStore) else store
    return inner


async def contents(service: Conversations, email: str, session_id: str) -> list[str]:
    detail = await service.get_session(email, session_id)
    return [m.content for m in detail.messages]


async def version_texts(service: Conversations, email: str, session_id: str) -> list[str]:
    listed = await service.message_versions(email, session_id, message_item_id(session_id, 4))
    return [m.content for m in listed.versions]


def test_a_regenerated_answer_keeps_the_earlier_ones_as_versions(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service = svc(store)
        sid = await two_turns(service, alice)
        result = await service.regenerate(alice, sid, again())
        assert [m.content for m in result.to_response().messages] == ["answer 3 to two"]
        assert result.assistant.versions == 2
        assert result.assistant.id == message_item_id(sid, 4)
        await service.regenerate(alice, sid, again())
        assert await contents(service, alice, sid) == [
            "one",
            "answer 1 to one",
            "two",
            "answer 4 to two",
        ]
        assert await version_texts(service, alice, sid) == [
            "answer 2 to two",
            "answer 3 to two",
            "answer 4 to two",
        ]
        detail = await service.get_session(alice, sid)
        assert (detail.message_count, detail.messages[-1].versions) == (4, 3)
        # A message never regenerated has one version: itself.
        one = await service.message_versions(alice, sid, message_item_id(sid, 2))
        assert [m.content for m in one.versions] == ["answer 1 to one"]
        assert one.versions[0].versions is None
        # The conversation goes on from the current answer.
        turn = await service.chat(alice, ChatRequest(message="three", sessionId=sid))
        assert turn.assistant.id == message_item_id(sid, 6)

    run(scenario)


def test_only_the_last_answer_can_be_regenerated(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        service = svc(store)
        sid = await two_turns(service, alice)
        # A question stored, its answer not (yet): the last message is not an answer.
        turn = await service.begin_turn(alice, ChatRequest(message="three", sessionId=sid))
        with pytest.raises(Conflict):
            await service.regenerate(alice, sid, again())
        await turn.result()
        with pytest.raises(NotFound):
            await service.regenerate(bob, sid, again())
        with pytest.raises(NotFound):
            await service.message_versions(bob, sid, message_item_id(sid, 4))
        assert (await service.regenerate(alice, sid, again())).assistant.versions == 2

    run(scenario)


def test_a_retried_client_message_id_regenerates_once(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        model = CountingModel()
        service = svc(store, model)
        sid = await two_turns(service, alice)
        first = await service.regenerate(alice, sid, again("r-1"))
        retry = await service.regenerate(alice, sid, again("r-1"))
        assert retry.assistant == first.assistant and model.calls == 3
        # Regenerated again since: the retry still answers what the first attempt stored.
        await service.regenerate(alice, sid, again("r-2"))
        late = await service.regenerate(alice, sid, again("r-1"))
        assert late.assistant.content == first.assistant.content == "answer 3 to two"
        assert model.calls == 4
        assert await version_texts(service, alice, sid) == [
            "answer 2 to two",
            "answer 3 to two",
            "answer 4 to two",
        ]
        # A clientMessageId a turn used is not a regenerate's.
        await service.chat(alice, ChatRequest(message="q", sessionId=sid, clientMessageId="t-1"))
        with pytest.raises(Conflict):
            await service.regenerate(alice, sid, again("t-1"))

    run(scenario)


def test_two_attempts_of_one_regenerate_racing_store_one_answer(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        faulty = FaultyStore(store)
        service = svc(faulty)
        sid = await two_turns(service, alice)
        gate = pause_at(faulty, "replace_answer")
        first = asyncio.create_task(service.regenerate(alice, sid, again("r-1")))
        await gate.reached_by(first)
        second = await service.regenerate(alice, sid, again("r-1"))
        gate.release.set()
        assert (await first).assistant == second.assistant
        assert len(await version_texts(service, alice, sid)) == 2

    run(scenario)


async def _paused_regenerate(
    store: Store, email: str
) -> tuple[Conversations, FaultyStore, str, asyncio.Task[Any], Any]:
    faulty = FaultyStore(store)
    service = svc(faulty)
    sid = await two_turns(service, email)
    gate = pause_at(faulty, "replace_answer")
    task = asyncio.create_task(service.regenerate(email, sid, again()))
    await gate.reached_by(task)
    return service, faulty, sid, task, gate


def test_a_turn_that_wins_the_race_makes_the_regenerate_stale(
    run: Runner[None], emails: tuple[str, str], store_factory: Callable[[], Store]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service, _, sid, task, gate = await _paused_regenerate(store, alice)
        other = store_factory()  # another instance on the same data
        try:
            await svc(other).chat(alice, ChatRequest(message="three", sessionId=sid))
        finally:
            await other.close()
        gate.release.set()
        with pytest.raises(Conflict):
            await task
        texts = await contents(service, alice, sid)
        assert texts[:4] == ["one", "answer 1 to one", "two", "answer 2 to two"]
        assert len(texts) == 6
        assert await version_texts(service, alice, sid) == ["answer 2 to two"]

    run(scenario)


def test_a_rename_during_a_regenerate_is_kept(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service, _, sid, task, gate = await _paused_regenerate(store, alice)
        await service.rename(alice, sid, "Renamed meanwhile")
        gate.release.set()
        assert (await task).assistant.versions == 2
        detail = await service.get_session(alice, sid)
        assert detail.title == "Renamed meanwhile"
        assert await version_texts(service, alice, sid) == ["answer 2 to two", "answer 3 to two"]

    run(scenario)


def test_feedback_given_during_a_regenerate_stays_on_its_version(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service, _, sid, task, gate = await _paused_regenerate(store, alice)
        rating = FeedbackRequest(rating="down", comment="too short")
        await service.set_feedback(alice, sid, message_item_id(sid, 4), rating)
        gate.release.set()
        await task
        listed = await service.message_versions(alice, sid, message_item_id(sid, 4))
        old, new = listed.versions
        assert old.feedback is not None and old.feedback.rating == "down"
        assert new.feedback is None and new.content == "answer 3 to two"

    run(scenario)


def test_a_delete_during_a_regenerate_leaves_nothing(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service, _, sid, task, gate = await _paused_regenerate(store, alice)
        await service.delete_session(alice, sid)
        gate.release.set()
        with pytest.raises(NotFound):
            await task
        assert await nothing_of_session(real(store), alice, sid)

    run(scenario)


def test_a_session_archived_during_a_regenerate_comes_back_with_its_versions(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service, _, sid, task, gate = await _paused_regenerate(store, alice)
        session = await store.get_session(alice, sid, where="active")
        assert session is not None
        await archive(store, session)
        gate.release.set()
        assert (await task).assistant.versions == 2
        assert await version_texts(service, alice, sid) == ["answer 2 to two", "answer 3 to two"]
        # Moved to the archive again: the versions go with it, and come back with it.
        moved = await store.get_session(alice, sid, where="active")
        assert moved is not None
        await archive(store, moved)
        assert (await service.get_session(alice, sid)).archived
        assert await version_texts(service, alice, sid) == ["answer 2 to two", "answer 3 to two"]
        held = await raw_items(real(store), alice)
        assert not _versions_in(held["active"]) and len(_versions_in(held["archive"])) == 1
        await service.regenerate(alice, sid, again())  # restores it, then regenerates
        assert await version_texts(service, alice, sid) == [
            "answer 2 to two",
            "answer 3 to two",
            "answer 4 to two",
        ]

    run(scenario)


async def nothing_of_session(store: Store, email: str, session_id: str) -> bool:
    """No row or item of the session is left in either container (usage counts, kept per
    user, are not the session's)."""
    held = await raw_items(store, email)
    return not [
        item
        for where in ("active", "archive")
        for item in held[where]  # type: ignore[index]
        if session_id in (item.get("sessionId"), item.get("session_id"), item.get("id"))
    ]


def _versions_in(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if i.get("table") == "message_versions" or i.get("type") == "version"]


def test_versions_are_exported_and_erased(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service = svc(store)
        sid = await two_turns(service, alice)
        await service.regenerate(alice, sid, again())
        document = json.loads(
            "".join([piece async for piece in export_document(store, alice, now=_now())])
        )
        (session,) = document["sessions"]
        answer = session["messages"][-1]
        assert (answer["content"], answer["versions"]) == ("answer 3 to two", 2)
        assert [v["content"] for v in answer["earlierVersions"]] == ["answer 2 to two"]
        assert "earlierVersions" not in session["messages"][1]
        csv = b"".join([piece async for piece in csv_rows(store, alice, count=_count())])
        rows = csv.decode().splitlines()
        assert rows[0].endswith(",rating,version")
        assert [r.rsplit(",", 1)[1] for r in rows if "to two" in r] == ["1", "2"]
        assert "answer 2 to two" in rows[-2] and "answer 3 to two" in rows[-1]
        zipped = b"".join(
            [piece async for piece in markdown_zip(store, alice, now=_now(), count=_count())]
        )
        with zipfile.ZipFile(io.BytesIO(zipped)) as archive_file:
            (name,) = archive_file.namelist()
            text = archive_file.read(name).decode()
        assert "answer 3 to two" in text
        assert "> *Earlier version 1 · " in text and "> answer 2 to two" in text
        # Erasing the session, then everything of the user: no version is left anywhere.
        other = await two_turns(service, alice)
        await service.regenerate(alice, other, again())
        await service.delete_session(alice, sid)
        held = await raw_items(store, alice)
        assert len(_versions_in(held["active"])) == 1
        assert await service.erase_everything(alice, budget_s=60)
        assert await nothing_of(store, alice)

    run(scenario)


def _now() -> Any:
    from tests.support.scenarios import START

    return START


def _count() -> Any:
    from shared.export import ExportCount

    return ExportCount()


# ---- branches ----------------------------------------------------------------------------------


def test_a_branch_copies_the_messages_up_to_one(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        service = svc(store)
        sid = await two_turns(service, alice)
        await service.regenerate(alice, sid, again())
        await service.rename(alice, sid, "Plans")
        summary = await service.fork(alice, sid, message_item_id(sid, 3))
        assert summary.title == "Plans (branch)" and summary.message_count == 3
        assert summary.session_id != sid and not summary.archived
        assert await contents(service, alice, summary.session_id) == [
            "one",
            "answer 1 to one",
            "two",
        ]
        # The branch goes on by itself; the original is untouched.
        turn = await service.chat(alice, ChatRequest(message="other", sessionId=summary.session_id))
        assert turn.assistant.id == message_item_id(summary.session_id, 5)
        assert len(await contents(service, alice, sid)) == 4
        # The current text of a regenerated answer, as a message of its own.
        whole = await service.fork(alice, sid, message_item_id(sid, 4))
        assert (await contents(service, alice, whole.session_id))[-1] == "answer 3 to two"
        for who, message in ((bob, message_item_id(sid, 3)), (alice, message_item_id(sid, 9))):
            with pytest.raises(NotFound):
                await service.fork(who, sid, message)
        with pytest.raises(NotFound):  # a message of another session
            await service.fork(alice, sid, message_item_id(summary.session_id, 1))
        listed = await service.list_sessions(bob, limit=10, continuation=None, archived=False)
        assert listed.sessions == []

    run(scenario)


def test_a_branch_of_an_archived_session_is_a_new_active_one(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service = svc(store)
        original = await seed_session(store, alice, 6, archived=True, title="Old")
        summary = await service.fork(alice, original.id, message_item_id(original.id, 5))
        assert summary.title == "Old (branch)" and not summary.archived
        assert summary.message_count == 5
        assert (await service.get_session(alice, original.id)).archived

    run(scenario)


def test_a_branch_that_fails_half_way_leaves_nothing_visible(
    run: Runner[None], emails: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service = svc(store)
        # Long enough that Cosmos writes it in several batches.
        original = await seed_session(store, alice, 240, title="Long")
        before = await store.usage(alice)
        fail_once = _fail_mid_write(store, monkeypatch)
        with pytest.raises((Crash, StorageUnavailable)):
            await service.fork(alice, original.id, message_item_id(original.id, 230))
        assert fail_once()  # the failure came after part of the copy was written
        listed = await service.list_sessions(alice, limit=10, continuation=None, archived=False)
        assert [s.session_id for s in listed.sessions] == [original.id]
        assert await store.usage(alice) == before  # what was written is gone again
        # The next attempt makes the whole branch.
        summary = await service.fork(alice, original.id, message_item_id(original.id, 230))
        assert summary.message_count == 230
        copied = await contents(service, alice, summary.session_id)
        assert copied[-1] == f"message 230 of {original.id}"

    run(scenario)


def _fail_mid_write(store: Store, monkeypatch: pytest.MonkeyPatch) -> Callable[[], bool]:
    """Make the branch's write fail once after part of it is written: on Cosmos its third
    batch (the hidden session item and the first messages are stored); on SQLite after its
    messages are inserted, inside its one transaction. Returns whether it failed there."""
    failed: list[bool] = []
    if isinstance(store, SqliteStore):
        import shared.storage.sqlite as sqlite_module

        real_insert = sqlite_module._insert_messages

        def insert(*args: Any, **kwargs: Any) -> None:
            real_insert(*args, **kwargs)
            if not failed:
                failed.append(True)
                raise Crash("after the messages")

        monkeypatch.setattr(sqlite_module, "_insert_messages", insert)
    else:
        assert isinstance(store, CosmosStore)
        conn = store.conn
        real_batch = conn.batch
        calls: list[int] = []

        async def batch(where: Any, email: str, ops: list[Any]) -> Any:
            calls.append(1)
            if len(calls) == 3 and not failed:
                failed.append(True)
                raise Crash("third batch")
            return await real_batch(where, email, ops)

        monkeypatch.setattr(conn, "batch", batch)
    return lambda: bool(failed)


def test_fork_and_versions_refuse_ids_of_other_sessions(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        service = svc(store)
        sid = await two_turns(service, alice)
        for bad in ("nope", message_item_id("s_" + "0" * 32, 1)):
            with pytest.raises(NotFound):
                await service.message_versions(alice, sid, bad)
            with pytest.raises(NotFound):
                await service.fork(alice, sid, bad)
        with pytest.raises(NotFound):
            await service.message_versions(alice, sid, message_item_id(sid, 7))

    run(scenario)


def test_a_regenerate_with_the_budget_spent_is_refused_before_anything(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        model = CountingModel()
        open_service = svc(store, model)
        sid = await two_turns(open_service, alice)
        # The two turns spent more than this budget: the next model call is refused.
        capped = make_service(
            store, model=model, MAX_HISTORY_MESSAGES="6", USER_DAILY_TOKEN_LIMIT="1"
        )
        with pytest.raises(QuotaExceeded):
            await capped.regenerate(alice, sid, again())
        assert model.calls == 2
        assert await version_texts(open_service, alice, sid) == ["answer 2 to two"]

    run(scenario)


def test_versions_follow_their_session_to_a_new_address(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        service = svc(store)
        sid = await two_turns(service, alice)
        await service.regenerate(alice, sid, again())
        assert (await store.rehome_session(alice, bob, sid)).value == "moved"
        assert await version_texts(service, bob, sid) == ["answer 2 to two", "answer 3 to two"]
        assert await nothing_of_session(store, alice, sid)

    run(scenario)
