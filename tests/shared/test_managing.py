"""Renaming, feedback and message paging through the service, on every store (``openapi.yaml``:
PATCH /api/sessions/{id}, the feedback routes, GET .../messages and GET /api/sessions/{id})."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from shared.clock import FixedClock, iso
from shared.errors import InvalidRequest, NotFound
from shared.ids import message_item_id
from shared.llm.base import ModelMessage
from shared.models import FeedbackRequest
from shared.service import FEEDBACK_LOG_PREFIX
from shared.storage.base import Store
from tests.support.conversations import Conversations
from tests.support.faulty import FaultyStore
from tests.support.scenarios import (
    START,
    archive,
    chat_request,
    make_service,
    pause_at,
    seed_session,
)
from tests.support.store_state import everything
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


def rating(value: str, comment: str | None = None) -> FeedbackRequest:
    return FeedbackRequest.model_validate({"rating": value, "comment": comment})


async def titled(store: Store, email: str, session_id: str) -> tuple[str, str, bool]:
    """(title, who wrote it, archived) as the store holds the session, wherever it is."""
    for where in ("active", "archive"):
        session = await store.get_session(email, session_id, where=where)  # type: ignore[arg-type]
        if session is not None:
            return session.title, session.title_source, session.archived
    raise AssertionError("the session is gone")


class TitleModel:
    """Writes the same title for every conversation (the model-title path's model)."""

    name = "titler"

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        return "A Model Written Title"

    async def close(self) -> None:
        return None


# ---- rename ------------------------------------------------------------------------------------


def test_rename_is_trimmed_and_shows_everywhere(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        sid = (await svc.chat(alice, chat_request("hello there"))).session_id
        summary = await svc.rename(alice, sid, "  \tTrip planning \n ")
        assert (summary.title, summary.session_id, summary.archived) == (
            "Trip planning",
            sid,
            False,
        )
        assert (await svc.get_session(alice, sid)).title == "Trip planning"
        listed = await svc.list_sessions(alice, limit=10, continuation=None, archived=False)
        assert [(s.session_id, s.title) for s in listed.sessions] == [(sid, "Trip planning")]
        assert await titled(store, alice, sid) == ("Trip planning", "user", False)
        # The longest title there is, once trimmed.
        longest = "x" * 100
        assert (await svc.rename(alice, sid, f"  {longest}  ")).title == longest

    run(scenario)


@pytest.mark.parametrize(
    "bad", ["", "   ", "\t\n", "x" * 101, "two\nlines", "carriage\rreturn", " a\r\nb "]
)
def test_a_bad_title_is_refused_and_changes_nothing(
    run: Runner[None], emails: tuple[str, str], bad: str
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        sid = (await svc.chat(alice, chat_request("keep my title"))).session_id
        before = await everything(store, [alice])
        with pytest.raises(InvalidRequest):
            await svc.rename(alice, sid, bad)
        assert await everything(store, [alice]) == before
        assert await titled(store, alice, sid) == ("keep my title", "first-message", False)

    run(scenario)


def test_renaming_another_users_session_is_404_and_changes_nothing(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        sid = (await svc.chat(alice, chat_request("mine"))).session_id
        archived = await seed_session(store, alice, 2, archived=True)
        before = await everything(store, [alice, bob])
        for target in (sid, archived.id, "s_" + "0" * 32, "not-an-id"):
            with pytest.raises(NotFound):
                await svc.rename(bob, target, "stolen")
        assert await everything(store, [alice, bob]) == before

    run(scenario)


def test_an_archived_session_is_renamed_in_place(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        session = await seed_session(store, alice, 4, title="old title", archived=True)
        summary = await svc.rename(alice, session.id, "Renamed in the archive")
        assert (summary.title, summary.archived) == ("Renamed in the archive", True)
        assert await titled(store, alice, session.id) == ("Renamed in the archive", "user", True)
        assert await store.get_session(alice, session.id, where="active") is None
        archived = await svc.list_sessions(alice, limit=10, continuation=None, archived=True)
        assert [(s.session_id, s.title, s.archived) for s in archived.sessions] == [
            (session.id, "Renamed in the archive", True)
        ]
        active = await svc.list_sessions(alice, limit=10, continuation=None, archived=False)
        assert active.sessions == []
        detail = await svc.get_session(alice, session.id)
        assert (detail.title, detail.archived, detail.message_count) == (
            "Renamed in the archive",
            True,
            4,
        )

    run(scenario)


@pytest.mark.parametrize("archived", [False, True], ids=["active", "archived"])
def test_a_model_title_never_replaces_one_the_user_set(
    run: Runner[None], emails: tuple[str, str], archived: bool
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store, model=TitleModel())
        renamed = await seed_session(store, alice, 2, title="first words", archived=archived)
        untouched = await seed_session(store, alice, 2, title="first words", archived=archived)
        await svc.rename(alice, renamed.id, "Mine")
        assert await svc.turns.chat.titles.write(alice, renamed.id, "first words") is None
        assert await titled(store, alice, renamed.id) == ("Mine", "user", archived)
        # The control: where the user set nothing, the model's title is stored.
        stored = await svc.turns.chat.titles.write(alice, untouched.id, "first words")
        assert stored == "A Model Written Title"
        assert await titled(store, alice, untouched.id) == (
            "A Model Written Title",
            "model",
            archived,
        )

    run(scenario)


@pytest.mark.parametrize(
    "pause",
    ["before-the-user-message", "before-the-answer"],
)
def test_a_rename_racing_a_turn_keeps_both(
    run: Runner[None], emails: tuple[str, str], pause: str
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        faulty = FaultyStore(store)
        svc = make_service(faulty)
        sid = (await svc.chat(alice, chat_request("first"))).session_id
        # The turn's first append stores the user message, its second the answer: pause the
        # chosen one after the turn read the session (and its ETag), before the write.
        gate = pause_at(faulty, "append", call=1 if pause == "before-the-user-message" else 2)
        turn = asyncio.create_task(svc.chat(alice, chat_request("second", sid)))
        await gate.reached_by(turn)
        renamed = await make_service(store).rename(alice, sid, "Renamed meanwhile")
        assert renamed.title == "Renamed meanwhile"
        gate.release.set()
        result = await turn
        assert result.assistant.content == "echo[2]:\nsecond"
        detail = await svc.get_session(alice, sid)
        assert [m.content for m in detail.messages] == [
            "first",
            "echo[0]:\nfirst",
            "second",
            "echo[2]:\nsecond",
        ]
        assert detail.message_count == 4
        assert await titled(store, alice, sid) == ("Renamed meanwhile", "user", False)

    run(scenario)


# ---- feedback ----------------------------------------------------------------------------------


async def exported(svc: Conversations, email: str) -> dict[str, Any]:
    text = "".join([piece async for piece in svc.export_json(email, now=START)])
    document: dict[str, Any] = json.loads(text)
    return document


def test_feedback_is_set_replaced_and_cleared_everywhere_it_shows(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(START)
        svc = make_service(store, clock=clock)
        turn = await svc.chat(alice, chat_request("rate me"))
        sid, answer_id = turn.session_id, turn.assistant.id

        clock.advance(minutes=1)
        rated = await svc.set_feedback(alice, sid, answer_id, rating("up", "Spot on, thanks"))
        assert rated is not None and rated.id == answer_id
        expected = {"rating": "up", "comment": "Spot on, thanks", "updatedAt": iso(clock.now())}
        assert rated.model_dump(by_alias=True)["feedback"] == expected

        async def shown() -> list[dict[str, Any] | None]:
            """The answer's feedback as GET, message paging and export show it."""
            detail = await svc.get_session(alice, sid)
            page = await svc.page_messages(alice, sid, before=None, limit=10)
            [session] = (await exported(svc, alice))["sessions"]
            views = [
                [m.model_dump(by_alias=True) for m in detail.messages],
                [m.model_dump(by_alias=True) for m in page.messages],
                session["messages"],
            ]
            for messages in views:
                assert "feedback" not in messages[0]  # the user message never has any
            return [messages[1].get("feedback") for messages in views]

        assert await shown() == [expected] * 3

        clock.advance(minutes=1)
        replaced = await svc.set_feedback(alice, sid, answer_id, rating("down"))
        assert replaced is not None
        expected = {"rating": "down", "comment": None, "updatedAt": iso(clock.now())}
        assert replaced.model_dump(by_alias=True)["feedback"] == expected
        assert await shown() == [expected] * 3

        cleared = await svc.set_feedback(alice, sid, answer_id, None)
        assert cleared is not None and cleared.feedback is None
        assert await shown() == [None] * 3
        again = await svc.set_feedback(alice, sid, answer_id, None)  # none to clear: fine
        assert again is not None and again.feedback is None
        assert await shown() == [None] * 3
        assert (await svc.get_session(alice, sid)).message_count == 2

    run(scenario)


def test_feedback_on_a_user_message_is_refused(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        turn = await svc.chat(alice, chat_request("my own words"))
        before = await everything(store, [alice])
        with pytest.raises(InvalidRequest):
            await svc.set_feedback(alice, turn.session_id, turn.user.id, rating("up"))
        with pytest.raises(InvalidRequest):
            await svc.set_feedback(alice, turn.session_id, turn.user.id, None)
        assert await everything(store, [alice]) == before

    run(scenario)


def test_feedback_on_what_is_not_the_callers_is_404_and_changes_nothing(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        mine = await svc.chat(alice, chat_request("one"))
        other = await svc.chat(alice, chat_request("two"))
        sid = mine.session_id
        before = await everything(store, [alice, bob])
        attempts = [
            (bob, sid, mine.assistant.id),  # another user's session
            (alice, sid, other.assistant.id),  # a message of another session
            (alice, sid, message_item_id(sid, 3)),  # no such message (yet)
            (alice, sid, message_item_id(sid, 0)),
            (alice, sid, "garbage"),
            (alice, sid, f"{sid}:2"),  # not our id shape (8 digits)
            (alice, sid, f"{sid}:0000000x"),
            (alice, "s_" + "f" * 32, message_item_id("s_" + "f" * 32, 2)),
            (alice, "not-a-session", mine.assistant.id),
        ]
        for email, session_id, message_id in attempts:
            for request in (rating("up", "nope"), None):
                with pytest.raises(NotFound):
                    await svc.set_feedback(email, session_id, message_id, request)
        assert await everything(store, [alice, bob]) == before

    run(scenario)


def test_each_feedback_change_logs_one_line_without_the_comment_or_the_user(
    run: Runner[None], emails: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    alice, _ = emails
    comment = "secret-comment-text"
    rated: dict[str, str] = {}

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        turn = await svc.chat(alice, chat_request("log me"))
        sid, answer = turn.session_id, turn.assistant.id
        rated.update(sessionId=sid, messageId=answer)
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            await svc.set_feedback(alice, sid, answer, rating("up", comment))
            await svc.set_feedback(alice, sid, answer, rating("down", comment))
            await svc.set_feedback(alice, sid, answer, None)
            await svc.set_feedback(alice, sid, answer, None)  # cleared again: a change too
            # Refused requests change nothing and log no change.
            with pytest.raises(InvalidRequest):
                await svc.set_feedback(alice, sid, turn.user.id, rating("up", comment))
            with pytest.raises(NotFound):
                await svc.set_feedback(alice, sid, message_item_id(sid, 9), rating("up", comment))

    run(scenario)
    messages = [record.getMessage() for record in caplog.records]
    lines = [m for m in messages if FEEDBACK_LOG_PREFIX.strip() in m]
    assert all(line.startswith(FEEDBACK_LOG_PREFIX) for line in lines)
    assert [json.loads(line.removeprefix(FEEDBACK_LOG_PREFIX)) for line in lines] == [
        {**rated, "rating": value, "model": "echo"} for value in ("up", "down", None, None)
    ]
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert comment not in logged
    assert alice not in logged


def test_feedback_on_an_archived_session_stays_in_the_archive(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        session = await seed_session(store, alice, 4, archived=True)
        answer = message_item_id(session.id, 4)
        rated = await svc.set_feedback(alice, session.id, answer, rating("down", "too short"))
        assert rated is not None and rated.feedback is not None
        assert await store.get_session(alice, session.id, where="active") is None
        detail = await svc.get_session(alice, session.id)
        assert detail.archived is True
        assert detail.messages[3].feedback is not None
        assert (detail.messages[3].feedback.rating, detail.messages[3].feedback.comment) == (
            "down",
            "too short",
        )
        stored = await store.get_message(alice, session.id, 4, where="archive")
        assert stored is not None and stored.feedback is not None
        cleared = await svc.set_feedback(alice, session.id, answer, None)
        assert cleared is not None and cleared.feedback is None
        assert (await svc.get_session(alice, session.id)).messages[3].feedback is None
        assert await store.get_session(alice, session.id, where="archive") is not None

    run(scenario)


# ---- message paging ----------------------------------------------------------------------------


def ids(page: Any) -> list[int]:
    return [int(m.id.rsplit(":", 1)[1]) for m in page.messages]


def test_message_pages_and_their_edges(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        session = await seed_session(store, alice, 10)
        other = await seed_session(store, alice, 4)
        sid = session.id

        async def page(before: int | None, limit: int) -> tuple[list[int], bool]:
            found = await svc.page_messages(
                alice,
                sid,
                before=message_item_id(sid, before) if before is not None else None,
                limit=limit,
            )
            return ids(found), found.has_more

        for archived in (False, True):  # active, then the same pages once it is archived
            if archived:
                await archive(store, session)  # reads left its ETag as written
            assert (await svc.get_session(alice, sid)).archived is archived
            assert await page(None, 4) == ([7, 8, 9, 10], True)
            assert await page(7, 4) == ([3, 4, 5, 6], True)
            assert await page(3, 4) == ([1, 2], False)
            # Exact multiples of the limit: the last page says so, no empty page after it.
            assert await page(None, 5) == ([6, 7, 8, 9, 10], True)
            assert await page(6, 5) == ([1, 2, 3, 4, 5], False)
            assert await page(None, 10) == (list(range(1, 11)), False)
            assert await page(None, 200) == (list(range(1, 11)), False)
            assert await page(None, 1) == ([10], True)
            assert await page(2, 1) == ([1], False)
            # Before the oldest message: nothing, and nothing older.
            assert await page(1, 5) == ([], False)
            # Every message is the same object as GET shows it.
            detail = await svc.get_session(alice, sid)
            full = await svc.page_messages(alice, sid, before=None, limit=10)
            assert full.messages == detail.messages
            for before in (
                message_item_id(other.id, 3),  # a message of another session
                "garbage",
                f"{sid}:3",
            ):
                with pytest.raises(NotFound):
                    await svc.page_messages(alice, sid, before=before, limit=5)
            with pytest.raises(NotFound):
                await svc.page_messages(bob, sid, before=None, limit=5)

    run(scenario)


@pytest.mark.parametrize(("count", "more"), [(4, False), (5, True), (11, True)])
def test_a_session_shows_its_newest_messages_only(
    run: Runner[None], emails: tuple[str, str], count: int, more: bool
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store, MAX_SESSION_MESSAGES="4")
        session = await seed_session(store, alice, count)
        detail = await svc.get_session(alice, session.id)
        shown = list(range(max(1, count - 3), count + 1))
        assert [int(m.id.rsplit(":", 1)[1]) for m in detail.messages] == shown
        assert detail.has_more_messages is more
        assert detail.message_count == count
        if more:  # the rest is reached by paging from the oldest message shown
            rest = await svc.page_messages(
                alice, session.id, before=detail.messages[0].id, limit=200
            )
            assert ids(rest) == list(range(1, shown[0]))
            assert rest.has_more is False

    run(scenario)


@pytest.mark.volume
@pytest.mark.parametrize("limit", [200, 37])
def test_paging_2000_messages_back_reaches_each_once_in_order(
    run: Runner[None], emails: tuple[str, str], limit: int
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        session = await seed_session(store, alice, 2000)
        seen: list[str] = []
        contents: list[str] = []
        before: str | None = None
        pages = 0
        while True:
            page = await svc.page_messages(alice, session.id, before=before, limit=limit)
            pages += 1
            assert 0 < len(page.messages) <= limit
            seen = [m.id for m in page.messages] + seen
            contents = [m.content for m in page.messages] + contents
            if not page.has_more:
                break
            before = page.messages[0].id
        assert seen == [message_item_id(session.id, seq) for seq in range(1, 2001)]
        assert contents == [f"message {seq} of {session.id}" for seq in range(1, 2001)]
        assert pages == -(-2000 // limit)

    run(scenario)
