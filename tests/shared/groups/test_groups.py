"""Group conversations on every store (``shared/groups``, ``docs/design.md`` "Groups"): who may
do what (a non-member learns nothing, a member is refused owner actions), the leave and delete
rules, messages (sender from the identity, gapless seq under 20 concurrent senders, idempotent
retries, paging), asking the assistant, the membership index and its repair, the real-time
events (published only after the write, never failing it), and the data rights.

A FixedClock gives the time; nothing waits for time."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import zipfile
from typing import Any

import pytest

from shared import consistency
from shared.clock import FixedClock, iso
from shared.config import load_settings
from shared.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    ModelError,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
)
from shared.export import ExportCount, export_document
from shared.export_formats import export_stream
from shared.groups.models import (
    GroupCreateRequest,
    GroupSendRequest,
    MemberAddRequest,
    request_key,
)
from shared.groups.service import GroupService
from shared.identity.move import move_user
from shared.llm.echo import EchoModel
from shared.realtime import RealtimeUnavailable, realtime_user_id
from shared.storage.base import Store
from tests.support.conversations import Conversations
from tests.support.groups import People, service
from tests.support.realtime import FailingRealtime, RecordingRealtime
from tests.support.scenarios import START, no_pause
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


def create(*members: str, name: str = "Team") -> GroupCreateRequest:
    return GroupCreateRequest(name=name, members=list(members))


def say(content: str, cmid: str | None = None, ask: bool = False) -> GroupSendRequest:
    body: dict[str, Any] = {"content": content, "ask": ask}
    if cmid is not None:
        body["clientMessageId"] = cmid
    return GroupSendRequest.model_validate(body)


async def refused(call: Any, error: type[Exception] = NotFound) -> bool:
    try:
        await call
    except error:
        return True
    return False


def uid(email: str) -> str:
    return realtime_user_id(email, load_settings({"AUTH_MODE": "dev"}).resolved_token_signing_key)


# ---- membership -------------------------------------------------------------------------------


def test_create_get_and_list(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        made = await groups.create(people.alice, "Alice A.", create(people.bob.upper()))
        assert made.role == "owner" and made.member_count == 2 and made.messages == []
        members = {m.email: (m.name, m.role) for m in made.members}
        bob_local = people.bob.split("@")[0]
        assert members == {people.alice: ("Alice A.", "owner"), people.bob: (bob_local, "member")}
        as_bob = await groups.get(people.bob, made.group_id)
        assert as_bob.role == "member" and as_bob.name == "Team"
        for caller in (people.alice, people.bob):
            listing = await groups.list_groups(caller, limit=20, continuation=None)
            assert [g.group_id for g in listing.groups] == [made.group_id]
        assert (await groups.list_groups(people.carol, limit=20, continuation=None)).groups == []

    run(scenario)


def test_create_refuses_bad_members_and_too_many(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store, GROUP_MAX_MEMBERS="3")
        assert await refused(
            groups.create(people.alice, None, create("not-an-address")), InvalidRequest
        )
        four = create(people.bob, people.carol, people.dave)
        assert await refused(groups.create(people.alice, None, four), InvalidRequest)
        three = await groups.create(people.alice, None, create(people.bob, people.carol))
        assert three.member_count == 3
        add = MemberAddRequest(email=people.dave)
        assert await refused(groups.add_member(people.alice, three.group_id, add), InvalidRequest)
        assert await refused(groups.create(people.alice, None, create(name=" ")), InvalidRequest)

    run(scenario)


def test_list_pages_newest_first(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        clock = FixedClock(START)
        groups = service(store, clock=clock)
        made = []
        for index in range(5):
            clock.advance(seconds=1)
            made.append(
                (await groups.create(people.alice, None, create(name=f"g{index}"))).group_id
            )
        seen: list[str] = []
        token = None
        while True:
            page = await groups.list_groups(people.alice, limit=2, continuation=token)
            seen += [g.group_id for g in page.groups]
            token = page.continuation_token
            if token is None:
                break
        assert seen == list(reversed(made))
        with pytest.raises(InvalidRequest):
            await groups.list_groups(people.bob, limit=2, continuation=page_token(groups, people))

    run(scenario)


def page_token(groups: GroupService, people: People) -> str:
    """A well-made token of Alice's group list, which Bob must not be able to use."""
    from shared.paging import encode_page_token, listing_scope
    from shared.storage.keyset import encode_position

    position = encode_position("2026-01-01T00:00:00.000000Z", "g_x")
    return encode_page_token(groups._key, listing_scope("groups"), position, people.alice)


def test_a_non_member_learns_nothing_and_changes_nothing(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        made = await groups.create(people.alice, None, create(people.bob))
        await groups.send(people.bob, None, made.group_id, say("hello"))
        before = await store.read_group(made.group_id)
        messages_before = await store.group_messages(made.group_id, limit=50)
        gid, eve = made.group_id, people.eve
        calls = [
            groups.get(eve, gid),
            groups.rename(eve, gid, "mine now"),
            groups.delete(eve, gid),
            groups.add_member(eve, gid, MemberAddRequest(email=eve)),
            groups.remove_member(eve, gid, people.bob),
            groups.remove_member(eve, gid, eve),
            groups.send(eve, None, gid, say("let me in")),
            groups.send(eve, None, gid, say("let me in", ask=True)),
            groups.page_messages(eve, gid, limit=50, after=0, before=None),
            # A group id of the wrong shape is the same 404, without a read.
            groups.get(eve, "g_nope"),
        ]
        for call in calls:
            assert await refused(call, NotFound)
        assert await store.read_group(made.group_id) == before
        assert await store.group_messages(made.group_id, limit=50) == messages_before
        assert (await groups.list_groups(eve, limit=20, continuation=None)).groups == []

    run(scenario)


def test_a_member_is_refused_owner_actions(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        made = await groups.create(people.alice, None, create(people.bob, people.carol))
        gid = made.group_id
        before = await store.read_group(gid)
        for call in (
            groups.rename(people.bob, gid, "bob's"),
            groups.delete(people.bob, gid),
            groups.add_member(people.bob, gid, MemberAddRequest(email=people.dave)),
            groups.add_member(people.bob, gid, MemberAddRequest(email=people.bob, role="owner")),
            groups.remove_member(people.bob, gid, people.carol),
        ):
            assert await refused(call, Forbidden)
        assert await store.read_group(gid) == before
        # The owner may do each of them.
        assert (await groups.rename(people.alice, gid, "Renamed")).name == "Renamed"
        added = await groups.add_member(people.alice, gid, MemberAddRequest(email=people.dave))
        assert added.member_count == 4
        again = await groups.add_member(
            people.alice, gid, MemberAddRequest(email=people.dave, role="owner")
        )
        assert again.member_count == 4
        assert {m.email: m.role for m in again.members}[people.dave] == "owner"
        await groups.remove_member(people.alice, gid, people.carol)
        assert await refused(groups.get(people.carol, gid))

    run(scenario)


def test_leaving_passes_ownership_and_the_last_one_out_deletes(
    run: Runner[Any], people: People
) -> None:
    async def scenario(store: Store) -> None:
        clock = FixedClock(START)
        realtime = RecordingRealtime()
        groups = service(store, realtime, clock=clock)
        made = await groups.create(people.alice, None, create())
        gid = made.group_id
        clock.advance(seconds=1)
        await groups.add_member(people.alice, gid, MemberAddRequest(email=people.carol))
        clock.advance(seconds=1)
        await groups.add_member(people.alice, gid, MemberAddRequest(email=people.bob))
        await groups.send(people.bob, None, gid, say("hi", cmid="c1"))
        # The only owner leaves: the earliest remaining member (carol) becomes owner.
        await groups.remove_member(people.alice, gid, people.alice)
        roles = {m.email: m.role for m in (await groups.get(people.bob, gid)).members}
        assert roles == {people.carol: "owner", people.bob: "member"}
        assert await refused(groups.get(people.alice, gid))
        assert (await groups.list_groups(people.alice, limit=20, continuation=None)).groups == []
        await groups.remove_member(people.carol, gid, people.carol)
        assert {m.role for m in (await groups.get(people.bob, gid)).members} == {"owner"}
        # The last member leaves: nothing of the group is left.
        await groups.remove_member(people.bob, gid, people.bob)
        assert await store.read_group(gid, latest=True) is None
        assert await store.group_messages(gid, limit=50) == ([], False)
        assert await store.get_group_request(gid, request_key(people.bob, "c1")) is None
        for who in (people.alice, people.bob, people.carol):
            assert await store.group_ref_ids(who, limit=10) == []
        assert realtime.events("send")[-1] == {"type": "group.removed", "groupId": gid}

    run(scenario)


def test_delete_removes_everything(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        realtime = RecordingRealtime()
        groups = service(store, realtime)
        made = await groups.create(people.alice, None, create(people.bob))
        gid = made.group_id
        for index in range(3):
            await groups.send(people.bob, None, gid, say(f"m{index}", cmid=f"c{index}"))
        await groups.delete(people.alice, gid)
        assert await store.read_group(gid, latest=True) is None
        assert await store.group_messages(gid, limit=50) == ([], False)
        assert await store.group_ref_ids(people.bob, limit=10) == []
        assert await refused(groups.get(people.alice, gid))
        assert realtime.events()[-1] == {"type": "group.deleted", "groupId": gid}

    run(scenario)


# ---- messages ---------------------------------------------------------------------------------


def test_the_sender_is_the_verified_caller(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        made = await groups.create(people.alice, None, create(people.bob))
        # A "sender" in the body is not part of the request model: it is ignored.
        spoofed = GroupSendRequest.model_validate(
            {"content": "it was alice", "sender": {"email": people.alice, "name": "Alice"}}
        )
        sent = await groups.send(people.bob, "Bob B.", made.group_id, spoofed)
        (message,) = [m.to_api() for m in await sent.result()]
        assert message.sender is not None
        assert (message.sender.email, message.sender.name) == (people.bob, "Bob B.")
        assert message.seq == 1 and message.role == "user"
        # No name claim: the address's local part.
        sent = await groups.send(people.alice, None, made.group_id, say("hi"))
        (message,) = [m.to_api() for m in await sent.result()]
        assert message.sender is not None and message.sender.name == people.alice.split("@")[0]
        # The member list shows the name the sign-in gave.
        detail = await groups.get(people.alice, made.group_id)
        assert {m.email: m.name for m in detail.members}[people.bob] == "Bob B."

    run(scenario)


def test_content_is_checked(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store, MAX_MESSAGE_CHARS="10")
        made = await groups.create(people.alice, None, create())
        assert await refused(
            groups.send(people.alice, None, made.group_id, say("  ")), InvalidRequest
        )
        assert await refused(
            groups.send(people.alice, None, made.group_id, say("x" * 11)), PayloadTooLarge
        )
        assert await store.group_messages(made.group_id, limit=5) == ([], False)

    run(scenario)


def test_twenty_members_sending_at_once(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        senders = [f"m{index}-{people.alice}" for index in range(19)]
        made = await groups.create(people.alice, None, create(*senders))
        everyone = [people.alice, *senders]
        assert len(everyone) == 20

        async def send(who: str) -> int:
            sent = await groups.send(who, None, made.group_id, say(f"from {who}"))
            return sent.user.seq

        seqs = await asyncio.gather(*(send(who) for who in everyone))
        assert sorted(seqs) == list(range(1, 21))
        stored, more = await store.group_messages(made.group_id, limit=50)
        assert not more
        assert [m.seq for m in stored] == list(range(1, 21))
        assert sorted(m.content for m in stored) == sorted(f"from {who}" for who in everyone)
        assert {m.seq: m.sender_email for m in stored} == dict(zip(seqs, everyone, strict=True))
        group = await store.read_group(made.group_id)
        assert group is not None and (group.last_seq, group.message_count) == (20, 20)

    run(scenario)


def test_a_retried_send_stores_nothing_twice(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        made = await groups.create(people.alice, None, create(people.bob))
        first = await groups.send(people.bob, None, made.group_id, say("once", cmid="x1"))
        again = await groups.send(people.bob, None, made.group_id, say("once", cmid="x1"))
        assert again.user == first.user
        # Another member may use the same id: it is theirs, not bob's.
        alice = await groups.send(people.alice, None, made.group_id, say("mine", cmid="x1"))
        assert alice.user.seq == 2
        assert await refused(
            groups.send(people.bob, None, made.group_id, say("other", cmid="x1")), Conflict
        )
        stored, _ = await store.group_messages(made.group_id, limit=50)
        assert [m.content for m in stored] == ["once", "mine"]
        # With ask: the answer is stored once, and a retry returns it.
        asked = await groups.send(people.bob, None, made.group_id, say("q?", cmid="x2", ask=True))
        user, answer = await asked.result()
        retried = await groups.send(people.bob, None, made.group_id, say("q?", cmid="x2", ask=True))
        assert await retried.result() == [user, answer]
        stored, _ = await store.group_messages(made.group_id, limit=50)
        assert [m.seq for m in stored] == [1, 2, 3, 4]

    run(scenario)


def test_paging_by_seq_and_by_message(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store, MAX_SESSION_MESSAGES="3")
        made = await groups.create(people.alice, None, create())
        gid = made.group_id
        for index in range(7):
            await groups.send(people.alice, None, gid, say(f"m{index + 1}"))
        detail = await groups.get(people.alice, gid)
        assert [m.seq for m in detail.messages] == [5, 6, 7] and detail.has_more_messages
        older = await groups.page_messages(
            people.alice, gid, limit=3, after=None, before=detail.messages[0].id
        )
        assert [m.seq for m in older.messages] == [2, 3, 4] and older.has_more
        caught_up = await groups.page_messages(people.alice, gid, limit=4, after=2, before=None)
        assert [m.seq for m in caught_up.messages] == [3, 4, 5, 6] and caught_up.has_more
        tail = await groups.page_messages(people.alice, gid, limit=4, after=6, before=None)
        assert [m.content for m in tail.messages] == ["m7"] and not tail.has_more
        assert await refused(
            groups.page_messages(people.alice, gid, limit=3, after=None, before="s_x:1"),
            InvalidRequest,
        )

    run(scenario)


def test_ask_answers_from_the_group_history(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        realtime = RecordingRealtime()
        groups = service(store, realtime)
        made = await groups.create(people.alice, "Alice", create(people.bob))
        gid = made.group_id
        await groups.send(people.alice, "Alice", gid, say("the budget is 10"))
        sent = await groups.send(people.bob, "Bob", gid, say("what is it?", ask=True))
        pieces = [piece async for piece in sent.deltas()]
        _, answer = await sent.result()
        # The echo model answers "echo[N]:", a line break and the last message as it saw it:
        # N earlier messages, each user message prefixed with its sender's name.
        assert answer.content == "echo[1]:\nBob: what is it?" == "".join(pieces)
        assert (answer.role, answer.seq, answer.sender_email) == ("assistant", 3, None)
        assert answer.to_api().sender is None
        stored, _ = await store.group_messages(gid, limit=50)
        assert [m.seq for m in stored] == [1, 2, 3]
        published = [e["message"]["seq"] for e in realtime.events() if e["type"] == "group.message"]
        assert published == [1, 2, 3]

    run(scenario)


# ---- real time --------------------------------------------------------------------------------


def test_events_are_published_only_after_the_write(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        realtime = RecordingRealtime()
        groups = service(store, realtime)
        made = await groups.create(people.alice, None, create(people.bob))
        readable: list[bool] = []

        async def check(group_id: str, event: dict[str, Any]) -> None:
            if event["type"] == "group.message":
                seq = event["message"]["seq"]
                page, _ = await store.group_messages(group_id, limit=1, after_seq=seq - 1)
                readable.append(bool(page) and page[0].seq == seq)

        realtime.on_publish = check
        for index in range(3):
            await groups.send(people.bob, None, made.group_id, say(f"m{index}"))
        assert readable == [True, True, True]
        events = [e for e in realtime.events() if e["type"] == "group.message"]
        assert [e["message"]["content"] for e in events] == ["m0", "m1", "m2"]
        assert all(e["groupId"] == made.group_id for e in events)

    run(scenario)


def test_a_failing_publish_never_fails_the_write(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        for realtime in (FailingRealtime(), FailingRealtime(RuntimeError)):
            groups = service(store, realtime)
            made = await groups.create(people.alice, None, create(people.bob))
            sent = await groups.send(people.bob, None, made.group_id, say("still stored"))
            asked = await groups.send(people.bob, None, made.group_id, say("q", ask=True))
            await asked.result()
            await groups.rename(people.alice, made.group_id, "new")
            await groups.remove_member(people.alice, made.group_id, people.bob)
            assert sent.user.seq == 1
            stored, _ = await store.group_messages(made.group_id, limit=50)
            assert [m.seq for m in stored] == [1, 2, 3]
            assert realtime.events()  # it was tried
            await groups.delete(people.alice, made.group_id)
            assert await store.read_group(made.group_id, latest=True) is None

    run(scenario)


def test_a_removed_member_leaves_the_channel_before_anything_else(
    run: Runner[Any], people: People
) -> None:
    async def scenario(store: Store) -> None:
        realtime = RecordingRealtime()
        groups = service(store, realtime)
        made = await groups.create(people.alice, None, create(people.bob, people.carol))
        realtime.calls.clear()
        await groups.remove_member(people.alice, made.group_id, people.bob)
        await groups.send(people.alice, None, made.group_id, say("after bob"))
        kinds = [(call[0], call[1]) for call in realtime.calls]
        assert kinds[0] == ("remove", uid(people.bob))
        assert kinds[1] == ("send", uid(people.bob))
        assert realtime.calls[1][2] == {"type": "group.removed", "groupId": made.group_id}
        assert [kind for kind, _ in kinds[2:]] == ["publish", "publish"]
        assert await refused(groups.get(people.bob, made.group_id))
        assert await refused(groups.send(people.bob, None, made.group_id, say("still here?")))

    run(scenario)


def test_join_adds_exactly_the_callers_groups(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        realtime = RecordingRealtime()
        groups = service(store, realtime)
        mine = await groups.create(people.alice, None, create(people.bob))
        other = await groups.create(people.carol, None, create())
        left = await groups.create(people.carol, None, create(people.bob))
        await groups.remove_member(people.carol, left.group_id, people.bob)
        # A stale index entry (a crash between the group write and the index write) is not
        # trusted: the group item says bob is not a member.
        await store.put_group_ref(people.bob, other.group_id)
        realtime.calls.clear()
        await groups.join(people.bob)
        assert realtime.calls == [("add", uid(people.bob), mine.group_id)]
        assert await store.group_ref_ids(people.bob, limit=10) == [mine.group_id]

    run(scenario)


# ---- the index --------------------------------------------------------------------------------


def test_index_entries_that_disagree_are_repaired(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        made = await groups.create(people.alice, None, create(people.bob))
        gone = await groups.create(people.alice, None, create())
        # An entry for a group that no longer exists, and one for a group bob is not in.
        await store.delete_group(gone.group_id, expected_etag=None)
        await store.put_group_ref(people.bob, gone.group_id)
        listing = await groups.list_groups(people.alice, limit=20, continuation=None)
        assert [g.group_id for g in listing.groups] == [made.group_id]
        listing = await groups.list_groups(people.bob, limit=20, continuation=None)
        assert [g.group_id for g in listing.groups] == [made.group_id]
        assert await store.group_ref_ids(people.bob, limit=10) == [made.group_id]
        # A missing entry (the add stopped before writing it) is written by the retried add.
        await store.drop_group_ref(people.bob, made.group_id)
        await groups.add_member(people.alice, made.group_id, MemberAddRequest(email=people.bob))
        assert await store.group_ref_ids(people.bob, limit=10) == [made.group_id]

    run(scenario)


# ---- data rights ------------------------------------------------------------------------------


def test_export_holds_every_group_and_message(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        made = await groups.create(people.alice, None, create(people.bob))
        await groups.create(people.carol, None, create())  # not hers
        for index in range(3):
            await groups.send(people.bob, None, made.group_id, say(f"m{index}"))
        pieces = export_document(store, people.alice, now=START)
        document = json.loads("".join([piece async for piece in pieces]))
        assert document["complete"] is True
        (group,) = document["groups"]
        assert group["groupId"] == made.group_id and group["role"] == "owner"
        assert [m["content"] for m in group["messages"]] == ["m0", "m1", "m2"]
        assert {m["email"] for m in group["members"]} == {people.alice, people.bob}

    run(scenario)


def test_erasure_leaves_groups_and_empties_the_messages(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        shared = await groups.create(people.bob, None, create(people.alice, people.carol))
        hers = await groups.create(people.alice, None, create(people.carol))
        alone = await groups.create(people.alice, None, create())
        await groups.send(people.alice, "Alice", shared.group_id, say("secret from alice", "a1"))
        await groups.send(people.carol, None, shared.group_id, say("carol here"))
        await groups.send(people.alice, "Alice", hers.group_id, say("also alice's"))
        await groups.send(people.alice, "Alice", alone.group_id, say("only me"))
        conversations = Conversations(
            store, EchoModel(), load_settings({"AUTH_MODE": "dev"}), clock=FixedClock(START)
        )
        # The user's erasure (the API's and the operator's both call it) covers groups.
        assert await conversations.erase_everything(people.alice, budget_s=60.0)
        # Where she was the only member, nothing is left.
        assert await store.read_group(alone.group_id, latest=True) is None
        # Where others remain: she is gone, ownership passed on, her messages keep their place
        # without content or sender.
        detail = await groups.get(people.carol, hers.group_id)
        assert {m.email: m.role for m in detail.members} == {people.carol: "owner"}
        page = await groups.get(people.carol, shared.group_id)
        first, second = page.messages
        assert (first.seq, first.content, first.sender, first.removed) == (1, "", None, True)
        assert second.content == "carol here" and second.sender is not None
        assert people.alice not in {m.email for m in page.members}
        assert await store.group_ref_ids(people.alice, limit=10) == []
        for gid in (shared.group_id, hers.group_id):
            stored, _ = await store.group_messages(gid, limit=50)
            text = json.dumps([m.model_dump(mode="json") for m in stored])
            assert people.alice not in text and "alice's" not in text and "secret" not in text
        assert (await groups.list_groups(people.alice, limit=20, continuation=None)).groups == []

    run(scenario)


def test_markdown_and_csv_exports_hold_the_groups(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        made = await groups.create(people.alice, None, create(people.bob, name="Plans"))
        await groups.send(people.bob, "Bob", made.group_id, say("see you, at noon"))
        raw = b"".join(
            [
                p
                async for p in export_stream(
                    store, people.alice, "csv", now=START, count=ExportCount()
                )
            ]
        )
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
        assert rows[-1] == [
            made.group_id,
            "Plans",
            "1",
            "user",
            iso(START),
            "see you, at noon",
            "",
            "",
        ]
        zipped = b"".join(
            [
                p
                async for p in export_stream(
                    store, people.alice, "markdown", now=START, count=ExportCount()
                )
            ]
        )
        with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
            (name,) = [n for n in archive.namelist() if n.startswith("groups/")]
            text = archive.read(name).decode()
        assert made.group_id in name and "see you, at noon" in text and f"<{people.bob}>" in text

    run(scenario)


class BrokenModel(EchoModel):
    """A model that fails before its first word."""

    async def stream(self, messages: Any, *, cache_key: str | None = None) -> Any:  # type: ignore[override]
        raise ModelError("down")
        yield ""


def test_a_failed_answer_keeps_the_question_and_a_retry_asks_again(
    run: Runner[Any], people: People
) -> None:
    async def scenario(store: Store) -> None:
        broken = service(store)
        broken.model = BrokenModel()
        made = await broken.create(people.alice, None, create())
        sent = await broken.send(people.alice, None, made.group_id, say("q?", "r1", ask=True))
        with pytest.raises(ModelError):
            await sent.result()
        stored, _ = await store.group_messages(made.group_id, limit=10)
        assert [(m.seq, m.role) for m in stored] == [(1, "user")]
        working = service(store)
        retried = await working.send(people.alice, None, made.group_id, say("q?", "r1", ask=True))
        user, answer = await retried.result()
        assert (user.seq, answer.seq, answer.role) == (1, 2, "assistant")

    run(scenario)


def test_a_spent_budget_refuses_a_question_before_storing_it(
    run: Runner[Any], people: People
) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store, USER_DAILY_TOKEN_LIMIT="1")
        made = await groups.create(people.alice, None, create())
        first = await groups.send(people.alice, None, made.group_id, say("q?", ask=True))
        await first.result()  # spends the budget
        with pytest.raises(QuotaExceeded):
            await groups.send(people.alice, None, made.group_id, say("again?", ask=True))
        # A plain message costs no tokens and is still sent.
        await groups.send(people.alice, None, made.group_id, say("plain"))
        stored, _ = await store.group_messages(made.group_id, limit=10)
        assert [m.content for m in stored][-1] == "plain" and len(stored) == 3

    run(scenario)


def test_join_reports_an_unavailable_realtime_service(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store, FailingRealtime())
        await groups.create(people.alice, None, create())
        with pytest.raises(RealtimeUnavailable):
            await groups.join(people.alice)

    run(scenario)


def test_a_second_instance_never_takes_a_new_group_for_a_missing_one(
    store_factory: Any, people: People
) -> None:
    """Two instances on one account (the second's replica may lag the first's writes): a group
    made, and a member added, on one are read at once on the other by a member, never a 404;
    the creator's list there shows it with the creator's Parley-Consistency token."""
    key = load_settings({"AUTH_MODE": "dev"}).resolved_token_signing_key

    async def scenario() -> None:
        first, second = store_factory(), store_factory()
        try:
            one, two = service(first), service(second)
            consistency.begin()
            made = await one.create(people.alice, None, create())
            await one.add_member(people.alice, made.group_id, MemberAddRequest(email=people.bob))
            await one.send(people.alice, None, made.group_id, say("on the first"))
            token = consistency.seal_for(key, people.alice)
            # Bob, on the other instance, with no token of his own.
            consistency.begin()
            seen = await two.get(people.bob, made.group_id)
            assert [m.content for m in seen.messages] == ["on the first"]
            sent = await two.send(people.bob, None, made.group_id, say("on the second"))
            assert sent.user.seq == 2
            # Alice, there, with the token her last answer carried.
            consistency.begin()
            consistency.adopt(key, people.alice, token)
            listing = await two.list_groups(people.alice, limit=10, continuation=None)
            assert [g.group_id for g in listing.groups] == [made.group_id]
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_an_address_move_carries_the_memberships(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        groups = service(store)
        old, new = people.alice, people.dave
        hers = await groups.create(old, "Alice", create(people.bob))
        both = await groups.create(people.bob, None, create(old, new))
        await groups.send(old, "Alice", hers.group_id, say("from the old address"))
        await groups.send(old, "Alice", both.group_id, say("me too"))
        await move_user(store, old, new, clock=FixedClock(START), sleep=no_pause)
        moved = await groups.get(new, hers.group_id)
        assert {m.email: m.role for m in moved.members} == {new: "owner", people.bob: "member"}
        assert moved.messages[0].sender is not None and moved.messages[0].sender.email == new
        merged = await groups.get(new, both.group_id)
        assert {m.email for m in merged.members} == {people.bob, new}
        assert await refused(groups.get(old, hers.group_id))
        listing = await groups.list_groups(new, limit=10, continuation=None)
        assert {g.group_id for g in listing.groups} == {hers.group_id, both.group_id}
        assert await store.group_ref_ids(old, limit=10) == []
        for gid in (hers.group_id, both.group_id):
            stored, _ = await store.group_messages(gid, limit=10)
            assert old not in {m.sender_email for m in stored}

    run(scenario)
