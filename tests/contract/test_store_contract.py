"""The ConversationStore contract: every store behaves the same (sqlite and Cosmos).

Each test runs once per store of conftest.store_factory. Times come from fixed datetimes,
never from the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import ConcurrencyConflict, InvalidRequest
from shared.ids import new_session_id
from shared.models import ClientRequestRef, ContextMessage, MessageRecord, SessionRecord
from shared.storage.base import ConversationStore
from tests.contract.conftest import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

T0 = datetime(2031, 5, 4, 10, 0, 0, 123456, tzinfo=UTC)
OLD = datetime(2001, 1, 1, tzinfo=UTC)  # only the archival-scan tests write times this old


def message(sid: str, seq: int, at: datetime = T0, **extra: Any) -> MessageRecord:
    role = "user" if seq % 2 else "assistant"
    return MessageRecord(
        session_id=sid, seq=seq, role=role, content=f"text {seq}", timestamp=at, **extra
    )


def session(
    email: str, sid: str, messages: list[MessageRecord], at: datetime = T0
) -> SessionRecord:
    last = messages[-1].seq if messages else 0
    return SessionRecord(
        id=sid,
        email=email,
        title=f"title {sid[-4:]}",
        preview="first words",
        created_at=at,
        updated_at=at,
        message_count=len(messages),
        last_seq=last,
        context=[ContextMessage(seq=m.seq, role=m.role, content=m.content) for m in messages],
    )


async def create(
    store: ConversationStore, email: str, n: int = 2, at: datetime = T0
) -> tuple[SessionRecord, list[MessageRecord]]:
    sid = new_session_id()
    messages = [message(sid, seq, at) for seq in range(1, n + 1)]
    stored = await store.commit(session(email, sid, messages, at), messages, expected_etag=None)
    return stored, messages


# ---- reads and the turn's commit ------------------------------------------------------------


def test_commit_creates_and_reads_back_every_field(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        sid = new_session_id()
        first = message(sid, 1, client_message_id="c-1")
        answer = message(sid, 2, model="echo", prompt_tokens=3, completion_tokens=4)
        record = session(alice, sid, [first, answer]).model_copy(
            update={"client_requests": {"c-1": ClientRequestRef(user_seq=1, assistant_seq=2)}}
        )
        stored = await store.commit(record, [first, answer], expected_etag=None)
        assert stored.etag and not stored.archived

        read = await store.get_session(alice, sid)
        assert read is not None
        assert read.etag == stored.etag  # the batch's ETag is the item's ETag
        assert read.model_dump(exclude={"etag"}) == record.model_dump(exclude={"etag"})
        assert await store.get_message(alice, sid, 1) == first
        assert await store.get_message(alice, sid, 2) == answer
        assert await store.list_messages(alice, sid) == [first, answer]

    run(scenario)


def test_missing_items_read_as_none_or_empty(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        sid = new_session_id()
        assert await store.get_session(alice, sid) is None
        assert await store.get_message(alice, sid, 1) is None
        assert await store.list_messages(alice, sid) == []
        assert await store.list_sessions(alice, limit=20, continuation=None) == ([], None)
        assert await store.delete_session(alice, sid) is False

    run(scenario)


def test_next_turn_replaces_the_session_with_a_new_etag(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice)
        third = message(stored.id, 3, T0 + timedelta(seconds=1))
        updated = stored.model_copy(
            update={"message_count": 3, "last_seq": 3, "updated_at": third.timestamp}
        )
        after = await store.commit(updated, [third], expected_etag=stored.etag)
        assert after.etag and after.etag != stored.etag
        read = await store.get_session(alice, stored.id)
        assert read is not None and (read.last_seq, read.etag) == (3, after.etag)
        assert [m.seq for m in await store.list_messages(alice, stored.id)] == [1, 2, 3]

    run(scenario)


def test_stale_etag_conflicts_and_writes_nothing(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice)
        winner_msg = message(stored.id, 3)
        winner = await store.commit(
            stored.model_copy(update={"last_seq": 3, "title": "winner"}),
            [winner_msg],
            expected_etag=stored.etag,
        )
        loser_msg = message(stored.id, 4)
        with pytest.raises(ConcurrencyConflict):
            await store.commit(
                stored.model_copy(update={"last_seq": 4, "title": "loser"}),
                [loser_msg],
                expected_etag=stored.etag,  # stale: the winner moved it on
            )
        assert await store.get_message(alice, stored.id, 4) is None
        read = await store.get_session(alice, stored.id)
        assert read is not None and (read.title, read.etag) == ("winner", winner.etag)

    run(scenario)


def test_creating_an_existing_session_conflicts_and_writes_nothing(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice, n=1)
        again = message(stored.id, 2)
        with pytest.raises(ConcurrencyConflict):
            await store.commit(
                stored.model_copy(update={"title": "second"}), [again], expected_etag=None
            )
        assert await store.get_message(alice, stored.id, 2) is None
        read = await store.get_session(alice, stored.id)
        assert read is not None and read.title == stored.title and read.etag == stored.etag

    run(scenario)


def test_an_existing_seq_fails_the_whole_commit(run: Runner[None], emails: tuple[str, str]) -> None:
    """A commit is all-or-nothing: a clashing message leaves the session item untouched."""
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice)
        clash = [message(stored.id, 3), message(stored.id, 2)]  # seq 2 exists
        with pytest.raises(ConcurrencyConflict):
            await store.commit(
                stored.model_copy(update={"last_seq": 3, "title": "half"}),
                clash,
                expected_etag=stored.etag,
            )
        assert await store.get_message(alice, stored.id, 3) is None
        read = await store.get_session(alice, stored.id)
        assert read is not None and (read.title, read.etag) == (stored.title, stored.etag)

    run(scenario)


# ---- listing ------------------------------------------------------------------------------------


def test_listing_pages_45_sessions_by_20_newest_first(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        made: list[SessionRecord] = []
        for i in range(45):
            # Every third pair shares a time: ties are ordered by id, still without gaps.
            at = T0 + timedelta(minutes=i - i % 3)
            made.append((await create(store, alice, n=1, at=at))[0])
        expected = [s.id for s in sorted(made, key=lambda s: (s.updated_at, s.id), reverse=True)]

        pages: list[list[str]] = []
        token: str | None = None
        while True:
            page, token = await store.list_sessions(alice, limit=20, continuation=token)
            pages.append([s.id for s in page])
            assert all(not s.archived and s.etag for s in page)
            if token is None:
                break
        assert [len(p) for p in pages] == [20, 20, 5]
        assert [sid for page in pages for sid in page] == expected

    run(scenario)


def test_listing_shows_summaries(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice, n=3)
        [listed], token = await store.list_sessions(alice, limit=5, continuation=None)
        assert token is None
        assert listed.to_summary() == stored.to_summary()

    run(scenario)


def test_a_forged_continuation_token_is_invalid_request(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        await create(store, alice)
        for forged in ("not a token", "eyJ4IjogMX0", '{"bogus": true}'):
            with pytest.raises(InvalidRequest):
                await store.list_sessions(alice, limit=5, continuation=forged)

    run(scenario)


def test_another_caller_sees_nothing(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, bob = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice)
        assert await store.get_session(bob, stored.id) is None
        assert await store.get_message(bob, stored.id, 1) is None
        assert await store.list_messages(bob, stored.id) == []
        assert await store.list_sessions(bob, limit=20, continuation=None) == ([], None)
        assert await store.delete_session(bob, stored.id) is False
        # ... and bob's attempt changed nothing of alice's.
        assert await store.get_session(alice, stored.id) == stored

    run(scenario)


# ---- delete -------------------------------------------------------------------------------------


def test_delete_leaves_nothing_and_repeats(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice, n=1)
        # 150 messages: more than one batch of 100 deletes.
        many = [message(stored.id, seq) for seq in range(1, 151)]
        await store.put_items("active", stored.model_copy(update={"last_seq": 150}), many)
        keep, _ = await create(store, alice)

        assert await store.delete_session(alice, stored.id) is True
        assert await store.get_session(alice, stored.id) is None
        assert await store.list_messages(alice, stored.id) == []
        listed, _ = await store.list_sessions(alice, limit=20, continuation=None)
        assert [s.id for s in listed] == [keep.id]
        assert await store.delete_session(alice, stored.id) is False
        assert len(await store.list_messages(alice, keep.id)) == 2

    run(scenario)


def test_delete_finishes_an_interrupted_delete(run: Runner[None], emails: tuple[str, str]) -> None:
    """A crash after the session item went but before its messages did: messages go next time."""
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice, n=3)
        await store.delete_session_item("active", alice, stored.id, expected_etag=None)
        assert await store.delete_session(alice, stored.id) is True
        assert await store.list_messages(alice, stored.id) == []
        assert await store.delete_session(alice, stored.id) is False

    run(scenario)


def test_delete_in_the_archive_container(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, messages = await create(store, alice)
        await store.put_items("archive", stored, messages)
        assert await store.delete_session(alice, stored.id, "archive") is True
        assert await store.get_session(alice, stored.id, "archive") is None
        assert await store.list_messages(alice, stored.id, "archive") == []
        assert await store.get_session(alice, stored.id) is not None  # active copy untouched

    run(scenario)


# ---- archival primitives -----------------------------------------------------------------------


def test_put_items_copies_and_repeats(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, messages = await create(store, alice)
        for _ in range(2):  # repeatable: upserts
            await store.put_items("archive", stored, messages)
        copy = await store.get_session(alice, stored.id, "archive")
        assert copy is not None and copy.archived and copy.etag
        assert copy.model_dump(exclude={"etag", "archived"}) == stored.model_dump(
            exclude={"etag", "archived"}
        )
        assert await store.list_messages(alice, stored.id, "archive") == messages
        archived, token = await store.list_sessions(
            alice, limit=20, continuation=None, where="archive"
        )
        assert [s.id for s in archived] == [stored.id] and archived[0].archived and token is None

    run(scenario)


def test_delete_messages_in_batches_missing_ones_fine(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, _ = await create(store, alice, n=1)
        many = [message(stored.id, seq) for seq in range(1, 131)]
        await store.put_items("active", stored, many)
        await store.delete_messages("active", alice, stored.id, [*range(1, 121), 500, 501])
        left = await store.list_messages(alice, stored.id)
        assert [m.seq for m in left] == list(range(121, 131))
        await store.delete_messages("active", alice, stored.id, [*range(1, 121)])  # again: fine

    run(scenario)


def test_delete_session_item_checks_the_etag(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: ConversationStore) -> None:
        stored, messages = await create(store, alice)
        moved = await store.commit(
            stored.model_copy(update={"title": "moved"}),
            [message(stored.id, 3)],
            expected_etag=stored.etag,
        )
        with pytest.raises(ConcurrencyConflict):
            await store.delete_session_item("active", alice, stored.id, expected_etag=stored.etag)
        assert await store.get_session(alice, stored.id) is not None
        await store.delete_session_item("active", alice, stored.id, expected_etag=moved.etag)
        assert await store.get_session(alice, stored.id) is None
        # Missing is fine, with or without an ETag.
        await store.delete_session_item("active", alice, stored.id, expected_etag=moved.etag)
        await store.delete_session_item("active", alice, stored.id, expected_etag=None)
        assert len(messages) == 2  # message items are not the session item's business

    run(scenario)


def test_scan_sessions_pages_through_stale_sessions_of_all_users(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: ConversationStore) -> None:
        stale = [
            (await create(store, email, at=OLD + timedelta(days=i)))[0]
            for i, email in enumerate([alice, bob, alice, bob, alice])
        ]
        await create(store, alice, at=OLD + timedelta(days=400))  # fresh: not found
        found: list[tuple[str, str, str]] = []
        token: str | None = None
        pages = 0
        while True:
            refs, token = await store.scan_sessions(
                "active", updated_before=OLD + timedelta(days=30), limit=2, continuation=token
            )
            assert len(refs) <= 2
            pages += 1
            found += [(r.email, r.session_id, r.etag) for r in refs if r.email in emails]
            if token is None:
                break
        assert pages >= 3
        assert sorted(found) == sorted((s.email, s.id, s.etag or "") for s in stale)
        assert {r[1] for r in found} == {s.id for s in stale}

    run(scenario)


def test_scan_orphans_finds_messages_without_a_session(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: ConversationStore) -> None:
        orphaned, _ = await create(store, alice, at=OLD)
        await create(store, bob, at=OLD)  # whole: not an orphan
        await store.delete_session_item("active", alice, orphaned.id, expected_etag=None)
        young, _ = await create(store, bob, at=OLD + timedelta(days=400))
        await store.delete_session_item("active", bob, young.id, expected_etag=None)

        orphans = await store.scan_orphans("active", older_than=OLD + timedelta(days=30), limit=100)
        ours = [(o.email, o.session_id) for o in orphans if o.email in emails]
        assert ours == [(alice, orphaned.id)]
        later = await store.scan_orphans("active", older_than=OLD + timedelta(days=500), limit=100)
        assert sorted((o.email, o.session_id) for o in later if o.email in emails) == sorted(
            [(alice, orphaned.id), (bob, young.id)]
        )

    run(scenario)
