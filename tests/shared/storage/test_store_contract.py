"""The store contract: every store behaves the same (SQLite and Cosmos, see conftest).

Times come from fixed datetimes, never from the wall clock. The move, delete and interleaving
protocol of the Cosmos store has its own suite (tests/shared/archive/test_interleavings.py);
here every operation is checked for what a caller sees.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import ConcurrencyConflict, DuplicateRequest, InvalidRequest
from shared.ids import new_session_id
from shared.models import ContextMessage, Feedback, MessageRecord, RequestRecord, SessionRecord
from shared.storage.base import MoveOutcome, Presence, SessionRef, Store
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

T0 = datetime(2031, 5, 4, 10, 0, 0, 123456, tzinfo=UTC)
OLD = datetime(2001, 1, 1, tzinfo=UTC)  # only the archival-scan tests write times this old


def message(sid: str, seq: int, at: datetime = T0, **extra: Any) -> MessageRecord:
    role = "user" if seq % 2 else "assistant"
    fields: dict[str, Any] = {"content": f"text {seq}", **extra}
    return MessageRecord(session_id=sid, seq=seq, role=role, timestamp=at, **fields)


def context(message: MessageRecord) -> ContextMessage:
    return ContextMessage(seq=message.seq, role=message.role, content=message.content)


def session(
    email: str, sid: str, messages: list[MessageRecord], at: datetime = T0
) -> SessionRecord:
    return SessionRecord(
        id=sid,
        email=email,
        title=f"title {sid[-4:]}",
        preview="first words",
        created_at=at,
        updated_at=at,
        message_count=len(messages),
        last_seq=messages[-1].seq if messages else 0,
    )


async def create(
    store: Store, email: str, n: int = 2, at: datetime = T0, content: str | None = None
) -> tuple[SessionRecord, list[MessageRecord]]:
    """A session of ``n`` messages, written in as few appends as batches allow."""
    sid = new_session_id()
    messages = [
        message(sid, seq, at, **({"content": content} if content else {}))
        for seq in range(1, n + 1)
    ]
    stored: SessionRecord | None = None
    for start in range(0, n, 50):
        chunk = messages[start : start + 50]
        record = session(email, sid, messages[: start + len(chunk)], at)
        stored = await store.append(record, chunk, expected_etag=stored.etag if stored else None)
    assert stored is not None
    return stored, messages


def ref(session: SessionRecord) -> SessionRef:
    assert session.etag is not None
    return SessionRef(
        email=session.email, session_id=session.id, updated_at=session.updated_at, etag=session.etag
    )


async def all_messages(store: Store, email: str, sid: str, where: Any) -> list[MessageRecord]:
    page, more = await store.page_messages(email, sid, where=where, limit=1000)
    assert not more
    return page


# ---- a turn's read and writes ---------------------------------------------------------------


def test_append_creates_and_reads_back_every_field(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        sid = new_session_id()
        first = message(sid, 1, client_message_id="c-1")
        answer = message(sid, 2, model="echo", prompt_tokens=3, completion_tokens=4)
        record = session(alice, sid, [first, answer]).model_copy(update={"title_source": "model"})
        request = RequestRecord(
            session_id=sid, client_message_id="c-1", user_seq=1, assistant_seq=2
        )
        stored = await store.append(record, [first, answer], expected_etag=None, request=request)
        assert stored.etag and not stored.archived

        read = await store.get_session(alice, sid, where="active")
        assert read is not None
        assert read.etag == stored.etag  # the write's ETag is the item's ETag
        assert read.model_dump(exclude={"etag"}) == record.model_dump(exclude={"etag"})
        assert await store.get_message(alice, sid, 1, where="active") == first
        assert await store.get_message(alice, sid, 2, where="active") == answer
        assert await store.get_request(alice, sid, "c-1", where="active") == request
        view = await store.read_turn(alice, sid, history=20)
        assert view.presence is Presence.LIVE and view.session == read
        assert list(view.window) == [context(first), context(answer)]

    run(scenario)


def test_missing_things_read_as_missing(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        sid = new_session_id()
        assert (await store.read_turn(alice, sid, history=5)).presence is Presence.MISSING
        for where in ("active", "archive"):
            assert await store.get_session(alice, sid, where=where) is None
            assert await store.get_message(alice, sid, 1, where=where) is None
            assert await store.get_request(alice, sid, "c", where=where) is None
            assert await store.page_messages(alice, sid, where=where, limit=5) == ([], False)
            assert await store.list_sessions(alice, where=where, limit=20, after=None) == (
                [],
                None,
            )
        assert await store.delete_session(alice, sid) is False
        assert await store.session_ids(alice, limit=10) == []
        assert await store.restore(alice, sid) is MoveOutcome.GONE

    run(scenario)


def test_the_window_is_the_newest_messages_oldest_first(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, messages = await create(store, alice, n=30)
        view = await store.read_turn(alice, stored.id, history=7)
        assert [m.seq for m in view.window] == list(range(24, 31))
        assert (await store.read_turn(alice, stored.id, history=0)).window == ()
        everything = await store.read_turn(alice, stored.id, history=100)
        assert list(everything.window) == [context(m) for m in messages]

    run(scenario)


def test_next_turn_replaces_the_session_with_a_new_etag(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice)
        third = message(stored.id, 3, T0 + timedelta(seconds=1))
        updated = stored.model_copy(
            update={"message_count": 3, "last_seq": 3, "updated_at": third.timestamp}
        )
        after = await store.append(updated, [third], expected_etag=stored.etag)
        assert after.etag and after.etag != stored.etag
        read = await store.get_session(alice, stored.id, where="active")
        assert read is not None and (read.last_seq, read.etag) == (3, after.etag)
        assert [m.seq for m in await all_messages(store, alice, stored.id, "active")] == [1, 2, 3]

    run(scenario)


def test_a_stale_etag_conflicts_and_writes_nothing(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice)
        winner = await store.append(
            stored.model_copy(update={"last_seq": 3, "message_count": 3}),
            [message(stored.id, 3)],
            expected_etag=stored.etag,
        )
        with pytest.raises(ConcurrencyConflict):
            await store.append(
                stored.model_copy(update={"last_seq": 4, "message_count": 4}),
                [message(stored.id, 4)],
                expected_etag=stored.etag,
                request=RequestRecord(session_id=stored.id, client_message_id="x", user_seq=4),
            )
        read = await store.get_session(alice, stored.id, where="active")
        assert read is not None and read.etag == winner.etag and read.last_seq == 3
        assert await store.get_message(alice, stored.id, 4, where="active") is None
        assert await store.get_request(alice, stored.id, "x", where="active") is None

    run(scenario)


def test_an_existing_seq_fails_the_whole_write(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice)
        with pytest.raises(ConcurrencyConflict):
            await store.append(
                stored.model_copy(update={"last_seq": 3}),
                [message(stored.id, 3), message(stored.id, 2)],
                expected_etag=stored.etag,
            )
        assert await store.get_message(alice, stored.id, 3, where="active") is None
        read = await store.get_session(alice, stored.id, where="active")
        assert read is not None and read.etag == stored.etag

    run(scenario)


def test_one_id_names_one_session_across_both_containers(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, messages = await create(store, alice)
        with pytest.raises(ConcurrencyConflict):  # it exists in the active container
            await store.append(stored, messages[:1], expected_etag=None)
        assert await store.archive(ref(stored)) is MoveOutcome.MOVED
        again = session(alice, stored.id, messages[:1])
        with pytest.raises(ConcurrencyConflict):  # ... and now in the archive
            await store.append(again, messages[:1], expected_etag=None)
        assert (await store.read_turn(alice, stored.id, history=5)).presence is Presence.ARCHIVED
        assert await all_messages(store, alice, stored.id, "archive") == messages

    run(scenario)


def test_a_recorded_client_message_id_is_a_duplicate(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice)
        request = RequestRecord(session_id=stored.id, client_message_id="c-9", user_seq=3)
        first = await store.append(
            stored.model_copy(update={"last_seq": 3, "message_count": 3}),
            [message(stored.id, 3)],
            expected_etag=stored.etag,
            request=request,
        )
        with pytest.raises(DuplicateRequest) as raised:
            await store.append(
                first.model_copy(update={"last_seq": 4, "message_count": 4}),
                [message(stored.id, 4)],
                expected_etag=first.etag,
                request=request.model_copy(update={"user_seq": 4}),
            )
        assert raised.value.existing in (None, request)
        assert await store.get_message(alice, stored.id, 4, where="active") is None
        # The answer's write records where the answer went.
        answered = request.model_copy(update={"assistant_seq": 4})
        await store.append(
            first.model_copy(update={"last_seq": 4, "message_count": 4}),
            [message(stored.id, 4)],
            expected_etag=first.etag,
            request=answered,
        )
        assert await store.get_request(alice, stored.id, "c-9", where="active") == answered

    run(scenario)


# ---- listing and paging -----------------------------------------------------------------------


def test_listing_pages_45_sessions_by_20_newest_first(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        made = [(await create(store, alice, at=T0 + timedelta(seconds=i)))[0].id for i in range(45)]
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            page, after = await store.list_sessions(alice, where="active", limit=20, after=after)
            pages.append([s.id for s in page])
            if after is None:
                break
        assert [len(p) for p in pages] == [20, 20, 5]
        assert [sid for page in pages for sid in page] == made[::-1]

    run(scenario)


def test_a_full_last_page_hands_out_no_position(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        for i in range(40):
            await create(store, alice, at=T0 + timedelta(seconds=i))
        first, after = await store.list_sessions(alice, where="active", limit=20, after=None)
        assert len(first) == 20 and after is not None
        second, after = await store.list_sessions(alice, where="active", limit=20, after=after)
        # Exactly full and the last: no position that would only lead to an empty page.
        assert len(second) == 20 and after is None

    run(scenario)


def test_listing_shows_summaries_and_only_the_callers(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice, n=3)
        page, _ = await store.list_sessions(alice, where="active", limit=20, after=None)
        assert [s.model_dump(exclude={"etag"}) for s in page] == [
            stored.model_dump(exclude={"etag"})
        ]
        assert await store.list_sessions(bob, where="active", limit=20, after=None) == ([], None)
        assert (await store.read_turn(bob, stored.id, history=5)).presence is Presence.MISSING
        assert await store.get_message(bob, stored.id, 1, where="active") is None
        assert await store.delete_session(bob, stored.id) is False
        assert await store.get_session(alice, stored.id, where="active") is not None

    run(scenario)


def test_a_forged_position_is_invalid_request(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        await create(store, alice)
        for forged in ("not-a-token", "W10", "WyJhIl0"):
            with pytest.raises(InvalidRequest):
                await store.list_sessions(alice, where="active", limit=20, after=forged)

    run(scenario)


def test_messages_page_backwards_and_forwards(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, messages = await create(store, alice, n=10)
        newest, more = await store.page_messages(alice, stored.id, where="active", limit=4)
        assert [m.seq for m in newest] == [7, 8, 9, 10] and more
        older, more = await store.page_messages(
            alice, stored.id, where="active", limit=4, before_seq=7
        )
        assert [m.seq for m in older] == [3, 4, 5, 6] and more
        oldest, more = await store.page_messages(
            alice, stored.id, where="active", limit=4, before_seq=3
        )
        assert [m.seq for m in oldest] == [1, 2] and not more
        exact, more = await store.page_messages(
            alice, stored.id, where="active", limit=5, before_seq=6
        )
        assert [m.seq for m in exact] == [1, 2, 3, 4, 5] and not more  # an exact multiple
        assert await store.page_messages(
            alice, stored.id, where="active", limit=3, before_seq=1
        ) == ([], False)
        forward, more = await store.page_messages(
            alice, stored.id, where="active", limit=4, after_seq=0
        )
        assert forward == messages[:4] and more
        rest, more = await store.page_messages(
            alice, stored.id, where="active", limit=6, after_seq=4
        )
        assert rest == messages[4:] and not more

    run(scenario)


# ---- titles and feedback -------------------------------------------------------------------


def test_save_session_replaces_it_if_match(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice)
        renamed = stored.model_copy(update={"title": "Mine", "title_source": "user"})
        after = await store.save_session(renamed, where="active", expected_etag=stored.etag or "")
        assert after.etag != stored.etag
        with pytest.raises(ConcurrencyConflict):
            await store.save_session(renamed, where="active", expected_etag=stored.etag or "")
        read = await store.get_session(alice, stored.id, where="active")
        assert read is not None and (read.title, read.title_source) == ("Mine", "user")
        # In the archive too, in place.
        assert await store.archive(ref(read)) is MoveOutcome.MOVED
        archived = await store.get_session(alice, stored.id, where="archive")
        assert archived is not None and archived.etag
        await store.save_session(
            archived.model_copy(update={"title": "Old"}),
            where="archive",
            expected_etag=archived.etag,
        )
        again = await store.get_session(alice, stored.id, where="archive")
        assert again is not None and again.title == "Old" and again.archived

    run(scenario)


def test_feedback_is_kept_on_the_message_and_moves_the_session_etag(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice)
        rating = Feedback(rating="down", comment="wrong year", updated_at=T0)
        rated = await store.set_feedback(
            alice, stored.id, 2, rating, where="active", expected_etag=stored.etag or ""
        )
        assert rated is not None and rated.feedback == rating
        assert await store.get_message(alice, stored.id, 2, where="active") == rated
        after = await store.get_session(alice, stored.id, where="active")
        assert after is not None and after.etag != stored.etag  # a move would see the change
        with pytest.raises(ConcurrencyConflict):
            await store.set_feedback(
                alice, stored.id, 2, None, where="active", expected_etag=stored.etag or ""
            )
        cleared = await store.set_feedback(
            alice, stored.id, 2, None, where="active", expected_etag=after.etag or ""
        )
        assert cleared is not None and cleared.feedback is None
        latest = await store.get_session(alice, stored.id, where="active")
        assert latest is not None
        assert (
            await store.set_feedback(
                alice, stored.id, 9, rating, where="active", expected_etag=latest.etag or ""
            )
            is None
        )

    run(scenario)


# ---- moves, deletes, scans --------------------------------------------------------------------


def test_archive_and_restore_move_every_item(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, messages = await create(store, alice, n=5)
        request = RequestRecord(session_id=stored.id, client_message_id="c", user_seq=6)
        stored = await store.append(
            stored.model_copy(update={"last_seq": 6, "message_count": 6}),
            [message(stored.id, 6)],
            expected_etag=stored.etag,
            request=request,
        )
        messages.append(message(stored.id, 6))

        assert await store.archive(ref(stored)) is MoveOutcome.MOVED
        assert (await store.read_turn(alice, stored.id, history=5)).presence is Presence.ARCHIVED
        assert await store.get_session(alice, stored.id, where="active") is None
        archived = await store.get_session(alice, stored.id, where="archive")
        assert archived is not None and archived.archived
        assert archived.model_dump(exclude={"etag", "archived"}) == stored.model_dump(
            exclude={"etag", "archived"}
        )
        assert await all_messages(store, alice, stored.id, "archive") == messages
        assert await all_messages(store, alice, stored.id, "active") == []
        assert await store.get_request(alice, stored.id, "c", where="archive") == request
        assert await store.list_sessions(alice, where="active", limit=5, after=None) == ([], None)
        listed, _ = await store.list_sessions(alice, where="archive", limit=5, after=None)
        assert [s.id for s in listed] == [stored.id]

        assert await store.restore(alice, stored.id) is MoveOutcome.MOVED
        assert await store.restore(alice, stored.id) is MoveOutcome.MOVED  # already back
        view = await store.read_turn(alice, stored.id, history=50)
        assert view.presence is Presence.LIVE and list(view.window) == [
            context(m) for m in messages
        ]
        assert await store.get_request(alice, stored.id, "c", where="active") == request
        assert await store.get_session(alice, stored.id, where="archive") is None
        assert await all_messages(store, alice, stored.id, "archive") == []

    run(scenario)


def test_a_changed_or_missing_session_is_not_archived(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice)
        changed = await store.append(
            stored.model_copy(update={"last_seq": 3, "message_count": 3}),
            [message(stored.id, 3)],
            expected_etag=stored.etag,
        )
        assert await store.archive(ref(stored)) is MoveOutcome.CHANGED
        assert (await store.read_turn(alice, stored.id, history=5)).presence is Presence.LIVE
        assert await store.get_session(alice, stored.id, where="archive") is None
        assert await all_messages(store, alice, stored.id, "archive") == []
        assert await store.delete_session(alice, stored.id)
        assert await store.archive(ref(changed)) is MoveOutcome.GONE

    run(scenario)


@pytest.mark.volume
def test_long_and_non_ascii_sessions_move_in_size_bounded_batches(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    """250 messages (more than two batches) of 6,000 emoji each: 100 of them are 2.4 MB even
    as compact UTF-8 (7.2 MB as the SDK's default escapes), over a transactional batch's 2 MB
    limit, which Cosmos measures on what is sent. Batches are cut by size as well as count."""
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, messages = await create(store, alice, n=250, content="\U0001f600" * 6000)
        assert await store.archive(ref(stored)) is MoveOutcome.MOVED
        assert await all_messages(store, alice, stored.id, "archive") == messages
        assert await all_messages(store, alice, stored.id, "active") == []
        assert await store.restore(alice, stored.id) is MoveOutcome.MOVED
        assert await all_messages(store, alice, stored.id, "active") == messages
        assert await all_messages(store, alice, stored.id, "archive") == []
        assert await store.delete_session(alice, stored.id)
        assert await store.session_ids(alice, limit=5) == []

    run(scenario)


def test_delete_removes_everything_in_both_containers_and_repeats(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        live, _ = await create(store, alice, n=3)
        archived, _ = await create(store, alice, n=4)
        theirs, bob_messages = await create(store, bob, n=2)
        assert await store.archive(ref(archived)) is MoveOutcome.MOVED
        for stored in (live, archived):
            assert await store.delete_session(alice, stored.id) is True
            assert await store.delete_session(alice, stored.id) is False
            assert (await store.read_turn(alice, stored.id, history=5)).presence is (
                Presence.MISSING
            )
        assert await store.session_ids(alice, limit=10) == []
        assert await all_messages(store, bob, theirs.id, "active") == bob_messages

    run(scenario)


def test_expiry_deletes_an_unchanged_archived_session_only(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        stored, _ = await create(store, alice)
        assert await store.archive(ref(stored)) is MoveOutcome.MOVED
        archived = await store.get_session(alice, stored.id, where="archive")
        assert archived is not None
        renamed = await store.save_session(
            archived.model_copy(update={"title": "kept"}),
            where="archive",
            expected_etag=archived.etag or "",
        )
        assert await store.expire(ref(archived)) is False  # renamed since the scan
        assert await store.get_session(alice, stored.id, where="archive") is not None
        assert await store.expire(ref(renamed)) is True
        assert await store.session_ids(alice, limit=5) == []
        assert (await store.read_turn(alice, stored.id, history=5)).presence is Presence.MISSING

    run(scenario)


def test_scan_stale_pages_through_old_sessions_of_all_users(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        old = {
            (await create(store, email, at=OLD + timedelta(seconds=i)))[0].id
            for i, email in enumerate([alice, bob, alice, bob, alice])
        }
        await create(store, alice)  # fresh: not stale
        found: set[str] = set()
        after: str | None = None
        while True:
            page, after = await store.scan_stale(
                where="active", updated_before=OLD + timedelta(days=1), limit=2, after=after
            )
            assert len(page) <= 2
            found |= {r.session_id for r in page if r.email in (alice, bob)}
            if after is None:
                break
        assert found == old
        unfinished = []
        after = None
        while True:
            page_u, after = await store.scan_unfinished(
                older_than=T0 + timedelta(days=1), limit=10, after=after
            )
            unfinished += [u for u in page_u if u.email in (alice, bob)]
            if after is None:
                break
        assert unfinished == []

    run(scenario)
