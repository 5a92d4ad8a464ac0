"""Membership changes racing sends, on every store: a send paused between its read of the group
and its conditional write meets a removal, a delete or a rename landing in between. Nothing a
removed member sends after their removal is stored, nothing of a deleted group is left, and a
send that loses a race to an unrelated change is stored with the next seq (``docs/design.md``,
"Groups"). Each pause waits for an event the test sets; nothing waits for time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.errors import NotFound
from shared.groups.models import GroupCreateRequest, GroupSendRequest, MemberAddRequest
from shared.storage.base import Store
from tests.support.groups import People, service
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


class PausedWrites:
    """The store, with the first write of a group that stores a message held until released."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self._paused = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write_group(self, group: Any, **kwargs: Any) -> Any:
        if kwargs.get("messages") and not self._paused:
            self._paused = True
            self.reached.set()
            await self.release.wait()
        return await self._store.write_group(group, **kwargs)


async def race(paused: PausedWrites, send: Any, meanwhile: Any) -> Any:
    task = asyncio.ensure_future(send)
    await paused.reached.wait()
    await meanwhile
    paused.release.set()
    return await asyncio.gather(task, return_exceptions=True)


def test_a_member_removed_while_sending_stores_nothing(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        plain = service(store)
        made = await plain.create(
            people.alice, None, GroupCreateRequest(name="t", members=[people.bob])
        )
        paused = PausedWrites(store)
        racing = service(paused)
        (outcome,) = await race(
            paused,
            racing.send(people.bob, None, made.group_id, GroupSendRequest(content="late")),
            plain.remove_member(people.alice, made.group_id, people.bob),
        )
        assert isinstance(outcome, NotFound)
        assert await store.group_messages(made.group_id, limit=10) == ([], False)
        group = await store.read_group(made.group_id)
        assert group is not None and group.last_seq == 0 and group.member(people.bob) is None

    run(scenario)


def test_a_group_deleted_while_a_message_is_sent_leaves_nothing(
    run: Runner[Any], people: People
) -> None:
    async def scenario(store: Store) -> None:
        plain = service(store)
        made = await plain.create(
            people.alice, None, GroupCreateRequest(name="t", members=[people.bob])
        )
        paused = PausedWrites(store)
        racing = service(paused)
        (outcome,) = await race(
            paused,
            racing.send(people.bob, None, made.group_id, GroupSendRequest(content="late")),
            plain.delete(people.alice, made.group_id),
        )
        assert isinstance(outcome, NotFound)
        assert await store.read_group(made.group_id, latest=True) is None
        assert await store.group_messages(made.group_id, limit=10) == ([], False)

    run(scenario)


def test_a_send_that_meets_another_change_is_stored_next(run: Runner[Any], people: People) -> None:
    async def scenario(store: Store) -> None:
        plain = service(store)
        made = await plain.create(
            people.alice, None, GroupCreateRequest(name="t", members=[people.bob])
        )
        await plain.send(people.alice, None, made.group_id, GroupSendRequest(content="first"))
        paused = PausedWrites(store)
        racing = service(paused)

        async def changes() -> None:
            await plain.rename(people.alice, made.group_id, "renamed")
            await plain.add_member(
                people.alice, made.group_id, MemberAddRequest(email=people.carol)
            )
            await plain.send(people.carol, None, made.group_id, GroupSendRequest(content="carol"))

        (sent,) = await race(
            paused,
            racing.send(people.bob, None, made.group_id, GroupSendRequest(content="bob")),
            changes(),
        )
        assert sent.user.seq == 3
        stored, _ = await store.group_messages(made.group_id, limit=10)
        assert [(m.seq, m.content) for m in stored] == [(1, "first"), (2, "carol"), (3, "bob")]
        group = await store.read_group(made.group_id)
        assert group is not None and group.name == "renamed" and len(group.members) == 3

    run(scenario)


class PausedDrop:
    """The store, with the first removal of an index entry held until released."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self._paused = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def drop_group_ref(self, email: str, group_id: str) -> None:
        if not self._paused:
            self._paused = True
            self.reached.set()
            await self.release.wait()
        await self._store.drop_group_ref(email, group_id)


def test_a_member_added_again_while_their_removal_finishes_keeps_the_group_listed(
    run: Runner[Any], people: People
) -> None:
    async def scenario(store: Store) -> None:
        plain = service(store)
        made = await plain.create(
            people.alice, None, GroupCreateRequest(name="t", members=[people.bob])
        )
        paused = PausedDrop(store)
        removing = asyncio.ensure_future(
            service(paused).remove_member(people.alice, made.group_id, people.bob)
        )
        await paused.reached.wait()  # the removal is stored; its index delete is next
        await plain.add_member(people.alice, made.group_id, MemberAddRequest(email=people.bob))
        paused.release.set()
        await removing
        listing = await plain.list_groups(people.bob, limit=10, continuation=None)
        assert [g.group_id for g in listing.groups] == [made.group_id]

    run(scenario)
