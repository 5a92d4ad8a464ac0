"""Sharing a conversation, on every store: who may read a share, until when, who did; revoking
it; continuing it; what erasure and a session's delete do to shares; and a share made while
its session is archived or restored (``shared/sharing.py``, ``docs/design.md`` "Sharing").

A FixedClock gives the time; nothing waits for time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared.clock import FixedClock
from shared.config import load_settings
from shared.errors import NotFound
from shared.llm.echo import EchoModel
from shared.models import FeedbackRequest, ShareCreateRequest
from shared.sharing import ShareService, is_share_id
from shared.storage.base import SessionRef, Store
from shared.storage.cosmos import CosmosStore
from tests.support.conversations import Conversations
from tests.support.faulty import FaultyStore
from tests.support.scenarios import (
    START,
    archive,
    chat_request,
    no_pause,
    nothing_of,
    seed_session,
)
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


class Users:
    """Callers of one test: the owner, a colleague she names, someone she does not, and a
    user of another tenant whose address looks like the colleague's."""

    def __init__(self, alice: str, bob: str) -> None:
        self.alice = alice
        self.bob = bob
        tag = alice.split("-")[1].split("@")[0]
        self.carol = f"carol-{tag}@example.com"
        self.mallory = f"{bob.split('@')[0]}@example.com.other-tenant.test"


@pytest.fixture
def users(emails: tuple[str, str]) -> Users:
    return Users(*emails)


def services(store: Any, clock: FixedClock) -> tuple[Conversations, ShareService]:
    settings = load_settings({"AUTH_MODE": "dev"})
    conversations = Conversations(store, EchoModel(), settings, clock=clock, sleep=no_pause)
    shares = ShareService(
        store, clock, token_key=settings.resolved_token_signing_key, sleep=no_pause
    )
    return conversations, shares


def people(*emails: str, days: int | None = None) -> ShareCreateRequest:
    body: dict[str, Any] = {"audience": "people", "people": list(emails)}
    if days is not None:
        body["expiresInDays"] = days
    return ShareCreateRequest.model_validate(body)


def signed_in(days: int | None = None) -> ShareCreateRequest:
    body: dict[str, Any] = {"audience": "signed_in"}
    if days is not None:
        body["expiresInDays"] = days
    return ShareCreateRequest.model_validate(body)


async def refused(call: Awaitable[Any]) -> bool:
    try:
        await call
    except NotFound:
        return True
    return False


TEXTS = ["How do I bake bread?", "Flour, water, salt, yeast.", "How long?", "About an hour."]


def scenario(run: Runner[Any], body: Callable[[Store, FixedClock], Awaitable[None]]) -> None:
    run(lambda store: body(store, FixedClock(START)))


# ---- who may read --------------------------------------------------------------------------------


def test_the_owner_and_the_people_named_read_it_nobody_else(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS, title="Bread")
        # Named as typed: upper case and all, normalised as identities are.
        share = await shares.create(users.alice, session.id, people(users.bob.upper()))
        assert is_share_id(share.share_id)
        assert share.people == [users.bob]
        assert (share.audience, share.message_count, share.views) == ("people", 4, 0)
        assert share.expires_at > share.created_at

        for reader in (users.alice, users.bob):
            shown = await shares.read(reader, share.share_id)
            assert [m.content for m in shown.messages] == TEXTS
            assert [m.role for m in shown.messages] == ["user", "assistant"] * 2
            assert shown.title == "Bread"
            assert (shown.shared_by.email, shown.shared_by.name) == (
                users.alice,
                users.alice.split("@")[0],
            )
        # Not named, and another tenant's user whose address merely looks like bob's.
        for stranger in (users.carol, users.mallory):
            assert await refused(shares.read(stranger, share.share_id))
            assert await refused(shares.continue_share(stranger, share.share_id))
            assert await refused(shares.views(stranger, share.share_id))
        # Refused exactly like an id that never existed.
        unknown = "sh_" + "0" * 48
        for call in (shares.read(users.bob, unknown), shares.read(users.bob, "nonsense")):
            assert await refused(call)

    scenario(run, body)


def test_signed_in_admits_any_authenticated_caller(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        share = await shares.create(users.alice, session.id, signed_in())
        for reader in (users.bob, users.carol, users.mallory):
            assert len((await shares.read(reader, share.share_id)).messages) == 4

    scenario(run, body)


def test_only_the_owner_shares_lists_revokes_and_reads_the_log(
    run: Runner[Any], users: Users
) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        assert await refused(shares.create(users.bob, session.id, signed_in()))
        share = await shares.create(users.alice, session.id, signed_in())
        assert (await shares.list(users.bob, limit=20, continuation=None)).shares == []
        assert await refused(shares.revoke(users.bob, share.share_id))
        assert await refused(shares.views(users.bob, share.share_id))
        assert len((await shares.read(users.bob, share.share_id)).messages) == 4

    scenario(run, body)


def test_feedback_is_never_shared(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        conversations, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        await conversations.set_feedback(
            users.alice,
            session.id,
            f"{session.id}:00000002",
            FeedbackRequest(rating="down", comment="too vague"),
        )
        share = await shares.create(users.alice, session.id, signed_in())
        shown = await shares.read(users.bob, share.share_id)
        assert all(m.feedback is None for m in shown.messages)
        assert "too vague" not in shown.model_dump_json()

    scenario(run, body)


# ---- a snapshot, with an expiry ------------------------------------------------------------------


def test_turns_after_sharing_do_not_appear(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        conversations, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        share = await shares.create(users.alice, session.id, people(users.bob))
        await conversations.chat(users.alice, chat_request("A secret added later", session.id))
        shown = await shares.read(users.bob, share.share_id)
        assert [m.content for m in shown.messages] == TEXTS
        listed = (await shares.list(users.alice, limit=20, continuation=None)).shares
        assert [s.message_count for s in listed] == [4]

    scenario(run, body)


def test_a_share_expires_for_everyone_at_its_time(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        week = await shares.create(users.alice, session.id, people(users.bob, days=7))
        default = await shares.create(users.alice, session.id, people(users.bob))
        assert week.expires_at == "2031-06-08T09:00:00.000Z"
        assert default.expires_at == "2031-07-01T09:00:00.000Z"
        clock.advance(days=7, seconds=-1)
        assert len((await shares.read(users.bob, week.share_id)).messages) == 4
        clock.advance(seconds=1)
        for reader in (users.alice, users.bob):
            assert await refused(shares.read(reader, week.share_id))
            assert await refused(shares.continue_share(reader, week.share_id))
        assert await refused(shares.views(users.alice, week.share_id))
        listed = (await shares.list(users.alice, limit=20, continuation=None)).shares
        assert [s.share_id for s in listed] == [default.share_id]

    scenario(run, body)


# ---- revoking ------------------------------------------------------------------------------------


def test_a_revoked_share_is_404_at_once_on_another_instance(
    run: Runner[Any],
    store_factory: Callable[[], Store],
    users: Users,
    request: pytest.FixtureRequest,
) -> None:
    lagging = "cosmos-lagging" in request.node.name

    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        share = await shares.create(users.alice, session.id, people(users.bob))
        # Other writes since, so that a replica a few writes behind still holds the share
        # after it is revoked.
        await shares.create(users.alice, session.id, signed_in())
        await shares.read(users.bob, share.share_id)
        other_store = store_factory()  # another instance: no session token of this one
        try:
            _, elsewhere = services(other_store, clock)
            await shares.revoke(users.alice, share.share_id)
            if lagging:
                # What a plain read on the other instance sees: the share, still there.
                assert await other_store.get_share(share.share_id) is not None
            for reader in (users.alice, users.bob):
                assert await refused(elsewhere.read(reader, share.share_id))
                assert await refused(shares.read(reader, share.share_id))
            assert await refused(elsewhere.continue_share(users.bob, share.share_id))
            assert await refused(shares.revoke(users.alice, share.share_id))
            listed = (await shares.list(users.alice, limit=20, continuation=None)).shares
            assert share.share_id not in [s.share_id for s in listed]
        finally:
            await other_store.close()

    scenario(run, body)


# ---- the view log --------------------------------------------------------------------------------


def test_views_by_others_are_logged_newest_first_and_bounded(
    run: Runner[Any], users: Users, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = 3
    for module in ("shared.storage.sqlite", "shared.storage.cosmos.shares"):
        monkeypatch.setattr(f"{module}.MAX_SHARE_VIEWS", bound)

    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        share = await shares.create(users.alice, session.id, signed_in())
        await shares.read(users.alice, share.share_id)  # the owner's own views are not logged
        assert (await shares.views(users.alice, share.share_id)).views == []
        viewers = [users.bob, users.carol, users.bob, users.mallory, users.carol]
        for viewer in viewers:
            clock.advance(minutes=1)
            await shares.read(viewer, share.share_id)
        log = (await shares.views(users.alice, share.share_id)).views
        assert [v.email for v in log] == viewers[::-1][:bound]
        assert [v.viewed_at for v in log] == sorted((v.viewed_at for v in log), reverse=True)
        assert log[0].viewed_at == "2031-06-01T09:05:00.000Z"
        listed = (await shares.list(users.alice, limit=20, continuation=None)).shares
        assert [s.views for s in listed] == [len(viewers)]  # every view counted

    scenario(run, body)


# ---- continuing ----------------------------------------------------------------------------------


def test_a_viewer_continues_a_long_share_in_a_conversation_of_their_own(
    run: Runner[Any], users: Users
) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        conversations, shares = services(store, clock)
        # Longer than one batch of any store: the snapshot and the copy are both cut.
        session = await seed_session(store, users.alice, 230, title="Long")
        share = await shares.create(users.alice, session.id, people(users.bob))
        assert share.message_count == 230
        copy = await shares.continue_share(users.bob, share.share_id)
        assert copy.session_id != session.id
        assert (copy.title, copy.message_count, copy.archived) == ("Long", 230, False)
        detail = await conversations.get_session(users.bob, copy.session_id)
        original = await conversations.get_session(users.alice, session.id)
        assert [m.content for m in detail.messages] == [m.content for m in original.messages]
        turn = await conversations.chat(users.bob, chat_request("And then?", copy.session_id))
        assert turn.assistant.content.startswith("echo[")
        # Alice's conversation is untouched, and not Bob's to read.
        assert (await conversations.get_session(users.alice, session.id)).message_count == 230
        assert await refused(conversations.get_session(users.bob, session.id))

    scenario(run, body)


# ---- data rights and deletes ---------------------------------------------------------------------


def test_erasing_the_owner_removes_their_shares_and_logs(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        conversations, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        share = await shares.create(users.alice, session.id, signed_in())
        await shares.read(users.bob, share.share_id)
        assert await conversations.erase_everything(users.alice, budget_s=60)
        assert await refused(shares.read(users.bob, share.share_id))
        assert await store.get_share(share.share_id) is None
        assert await store.share_views(share.share_id) == []
        assert await store.share_messages(share.share_id, after_seq=0, limit=10) == ([], False)
        assert (await store.list_shares(users.alice, limit=10, after=None)) == ([], None)

    scenario(run, body)


def test_erasing_a_viewer_removes_them_from_every_log(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        conversations, shares = services(store, clock)
        first = await seed_session(store, users.alice, TEXTS)
        second = await seed_session(store, users.carol, TEXTS)
        one = await shares.create(users.alice, first.id, signed_in())
        two = await shares.create(users.carol, second.id, signed_in())
        for viewer in (users.bob, users.mallory, users.bob):
            await shares.read(viewer, one.share_id)
        await shares.read(users.bob, two.share_id)
        assert {v.share_id for v in await store.viewed_shares(users.bob)} == {
            one.share_id,
            two.share_id,
        }
        assert await conversations.erase_everything(users.bob, budget_s=60)
        assert [v.email for v in (await shares.views(users.alice, one.share_id)).views] == [
            users.mallory
        ]
        assert (await shares.views(users.carol, two.share_id)).views == []
        assert await store.viewed_shares(users.bob) == []
        # The shares themselves are the owners': untouched.
        assert len((await shares.read(users.mallory, one.share_id)).messages) == 4

    scenario(run, body)


def test_deleting_a_session_deletes_its_shares_only(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        conversations, shares = services(store, clock)
        doomed = await seed_session(store, users.alice, TEXTS)
        kept = await seed_session(store, users.alice, TEXTS)
        gone = [await shares.create(users.alice, doomed.id, signed_in()) for _ in range(2)]
        stays = await shares.create(users.alice, kept.id, signed_in())
        await conversations.delete_session(users.alice, doomed.id)
        for share in gone:
            assert await refused(shares.read(users.bob, share.share_id))
            assert await store.get_share(share.share_id) is None
        listed = (await shares.list(users.alice, limit=20, continuation=None)).shares
        assert [s.share_id for s in listed] == [stays.share_id]

    scenario(run, body)


def test_retention_deleting_an_archived_session_deletes_its_shares(
    run: Runner[Any], users: Users
) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS, archived=True)
        kept = await seed_session(store, users.alice, TEXTS, archived=True)
        gone = await shares.create(users.alice, session.id, signed_in())
        stays = await shares.create(users.alice, kept.id, signed_in())
        assert session.etag is not None
        ref = SessionRef(users.alice, session.id, session.updated_at, session.etag)
        assert await store.expire(ref)
        assert await store.get_share(gone.share_id) is None
        assert await refused(shares.read(users.bob, gone.share_id))
        assert len((await shares.read(users.bob, stays.share_id)).messages) == 4

    scenario(run, body)


def test_the_owners_list_pages_newest_first(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        made = []
        for _ in range(5):
            clock.advance(seconds=1)
            made.append((await shares.create(users.alice, session.id, signed_in())).share_id)
        seen: list[str] = []
        token = None
        while True:
            page = await shares.list(users.alice, limit=2, continuation=token)
            seen += [s.share_id for s in page.shares]
            token = page.continuation_token
            if token is None:
                break
        assert seen == made[::-1]

    scenario(run, body)


# ---- interleavings -------------------------------------------------------------------------------


def test_a_share_made_while_its_session_is_archived_has_every_message(
    run: Runner[Any], users: Users
) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        session = await seed_session(store, users.alice, 30)
        faulty = FaultyStore(store)
        moved = asyncio.Event()

        async def archive_meanwhile(real: Any, *args: Any, **kwargs: Any) -> Any:
            # Between finding the session and reading its messages, the archival pass moves it.
            if not moved.is_set():
                moved.set()
                current = await store.get_session(users.alice, session.id, where="active")
                assert current is not None and current.etag is not None
                await archive(store, current)
            return await real(*args, **kwargs)

        faulty.hooks["page_messages"] = archive_meanwhile
        _, shares = services(faulty, clock)
        share = await shares.create(users.alice, session.id, signed_in())
        assert moved.is_set()
        assert share.message_count == 30
        shown = await shares.read(users.bob, share.share_id)
        assert [m.content for m in shown.messages] == [
            f"message {seq} of {session.id}" for seq in range(1, 31)
        ]

    scenario(run, body)


def test_a_share_made_while_its_session_is_restored_has_every_message(
    run: Runner[Any], users: Users
) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        session = await seed_session(store, users.alice, 30, archived=True)
        faulty = FaultyStore(store)
        moved = asyncio.Event()

        async def restore_meanwhile(real: Any, *args: Any, **kwargs: Any) -> Any:
            if not moved.is_set():
                moved.set()
                await store.restore(users.alice, session.id)
            return await real(*args, **kwargs)

        faulty.hooks["page_messages"] = restore_meanwhile
        _, shares = services(faulty, clock)
        share = await shares.create(users.alice, session.id, signed_in())
        assert moved.is_set()
        assert share.message_count == 30
        shown = await shares.read(users.bob, share.share_id)
        assert len(shown.messages) == 30
        assert await store.get_session(users.alice, session.id, where="active") is not None

    scenario(run, body)


def test_a_share_finished_after_its_session_was_deleted_goes_with_it(
    run: Runner[Any], users: Users
) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        session = await seed_session(store, users.alice, TEXTS)
        faulty = FaultyStore(store)
        conversations, _ = services(store, clock)

        async def delete_meanwhile(real: Any, *args: Any, **kwargs: Any) -> Any:
            # The delete runs just before the share is stored: its cascade cannot see it.
            await conversations.delete_session(users.alice, session.id)
            return await real(*args, **kwargs)

        faulty.hooks["create_share"] = delete_meanwhile
        _, shares = services(faulty, clock)
        assert await refused(shares.create(users.alice, session.id, signed_in()))
        assert (await store.list_shares(users.alice, limit=10, after=None)) == ([], None)

    scenario(run, body)


def test_a_half_made_share_is_never_readable(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        if not isinstance(store, CosmosStore):
            pytest.skip("SQLite stores a share in one transaction: it is never half-made")
        conversations, shares = services(store, clock)
        session = await seed_session(store, users.alice, 250)
        conn = store.shares.conn
        real_batch = conn.batch
        made: list[str] = []

        async def crash_before_visible(target: Any, key: str, ops: list[Any]) -> Any:
            if target == "shares" and ops[0][0] == "create" and ops[0][1][0]["type"] == "share":
                made.append(key)
            if target == "shares" and ops[0][0] == "replace":
                raise RuntimeError("crash before the share is made visible")
            return await real_batch(target, key, ops)

        conn.batch = crash_before_visible  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            await shares.create(users.alice, session.id, signed_in())
        conn.batch = real_batch  # type: ignore[method-assign]
        (share_id,) = made
        assert await store.get_share(share_id) is None
        assert await refused(shares.read(users.alice, share_id))
        assert await refused(shares.read(users.bob, share_id))
        assert (await shares.list(users.alice, limit=20, continuation=None)).shares == []
        # Its items carry the share's time-to-live: Cosmos removes them with it.
        items = await conn.query("shares", "SELECT * FROM c", [], email=share_id)
        assert len(items) == 251 and all(item["ttl"] > 0 for item in items)
        # An erasure does not wait for that: the owner's index finds it, and all of it goes.
        assert await conversations.erase_everything(users.alice, budget_s=60)
        assert await nothing_of(store, users.alice)
        assert await conn.query("shares", "SELECT * FROM c", [], email=share_id) == []

    scenario(run, body)


def test_items_expire_with_the_share(run: Runner[Any], users: Users) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        if not isinstance(store, CosmosStore):
            pytest.skip("SQLite has no time-to-live: expired shares go as new ones are made")
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        share = await shares.create(users.alice, session.id, people(users.bob, days=2))
        clock.advance(days=1)
        await shares.read(users.bob, share.share_id)
        items = await store.shares.conn.query("shares", "SELECT * FROM c", [], email=share.share_id)
        ttls = {item["type"]: item["ttl"] for item in items}
        # Cosmos counts an item's ttl from its last write: each write sets what is left.
        assert ttls["share"] == ttls["view"] == 86_400
        assert ttls["message"] == 2 * 86_400

    scenario(run, body)


def test_expired_shares_are_removed_as_new_ones_are_made_without_ttl(
    run: Runner[Any], users: Users
) -> None:
    async def body(store: Store, clock: FixedClock) -> None:
        if isinstance(store, CosmosStore):
            pytest.skip("Cosmos removes expired items by their time-to-live")
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        old = await shares.create(users.alice, session.id, signed_in(days=1))
        clock.advance(days=2)
        await shares.create(users.alice, session.id, signed_in())
        assert await store.get_share(old.share_id) is None
        assert await store.share_messages(old.share_id, after_seq=0, limit=10) == ([], False)

    scenario(run, body)


def test_bad_requests_are_400(run: Runner[Any], users: Users) -> None:
    from pydantic import ValidationError

    from shared.errors import InvalidRequest

    for days in (0, 366):  # refused as the body is parsed (400 over HTTP)
        with pytest.raises(ValidationError):
            people(users.bob, days=days)

    async def body(store: Store, clock: FixedClock) -> None:
        _, shares = services(store, clock)
        session = await seed_session(store, users.alice, TEXTS)
        for request in (
            people(),
            people(*[f"p{i}@example.com" for i in range(51)]),
            people("not an address"),
            ShareCreateRequest.model_validate({"audience": "signed_in", "people": [users.bob]}),
        ):
            with pytest.raises(InvalidRequest):
                await shares.create(users.alice, session.id, request)
        assert (await shares.list(users.alice, limit=20, continuation=None)).shares == []
        ok = await shares.create(users.alice, session.id, people(users.bob, days=365))
        assert ok.expires_at == "2032-05-31T09:00:00.000Z"

    scenario(run, body)
