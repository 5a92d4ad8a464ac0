"""Group conversations' rules (``docs/http.md``, "Groups and real-time"; ``docs/design.md``,
"Groups"). Knows no HTTP and no database.

- **Membership.** The group item is the truth of who belongs: every call reads it and a caller
  who is not a member gets 404 for everything about the group (as for another user's session).
  Owners rename, delete and manage members (a member asking is 403); anyone may leave. When the
  last owner goes, the earliest remaining member becomes owner; when the last member goes, the
  group and everything of it is deleted. Each member's own data holds an index entry per group
  (one single-partition read lists them); it is written after the group and never trusted: the
  list checks every entry against its group and drops those that disagree.
- **Messages.** The sender is the verified caller (name: the token's ``name`` claim, else the
  address's local part). Each message gets the group's next seq in the same conditional write
  (if-match the group item's ETag) that stores it, so seqs have no gaps; a writer that lost the
  race re-reads and tries again after a randomised pause. ``clientMessageId`` makes a send
  idempotent per sender, as for chat. ``ask`` has the assistant answer from the stored history
  (each user message shown with its sender's name), stored as the group's next message.
- **Real time.** Events are published strictly after what they announce is stored; a publish
  that fails is logged and never fails or undoes the write (clients catch up by seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.answers import ANSWER_COMMIT_PATIENCE_S
from shared.auth.claims import normalise_email
from shared.backoff import LostRace, RetriesExhausted, Sleep, retry_on_conflict
from shared.clock import Clock, SystemClock, stored_time
from shared.config import Settings
from shared.context import context_window
from shared.deadline import storage_budget
from shared.errors import (
    ApiError,
    ConcurrencyConflict,
    Conflict,
    DuplicateRequest,
    Forbidden,
    InvalidRequest,
    ModelError,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
)
from shared.groups.ask import GroupSend
from shared.groups.models import (
    GROUP_NAME_MAX_CHARS,
    MEMBER_NAME_MAX_CHARS,
    GroupCreateRequest,
    GroupList,
    GroupMember,
    GroupMessagePage,
    GroupMessageRecord,
    GroupOut,
    GroupRecord,
    GroupRequestRecord,
    GroupRole,
    GroupSendRequest,
    GroupSummary,
    MemberAddRequest,
    is_group_id,
    member_out,
    new_group_id,
    parse_group_message_id,
    request_key,
    summary_of,
)
from shared.llm.base import ChatModel, Usage
from shared.models import Role
from shared.paging import decode_page_token, encode_page_token, listing_scope
from shared.realtime import NoRealtime, Realtime, RealtimeUnavailable, realtime_user_id
from shared.storage.base import MAX_BATCH_OPERATIONS, ConversationStore, GroupStore
from shared.storage.keyset import decode_position, encode_position
from shared.time_limits import model_budget_s
from shared.titles import one_line_name
from shared.usage import UsageMeter

log = logging.getLogger("parley.groups")

LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 20, 100
MESSAGES_LIMIT_DEFAULT, MESSAGES_LIMIT_MAX = 50, 200
# The groups one caller's list reads (their index entries): far above any real membership.
MAX_GROUPS_PER_USER = 1000
LIST_READ_CONCURRENCY = 16
# A write of a group that lost a race tries again, up to this many times (with the pauses
# below, several seconds of contention), then answers 503: 20 members sending into one group at
# once all get stored well within it.
MAX_ATTEMPTS = 60


def _too_busy() -> StorageUnavailable:
    return StorageUnavailable("The group is too busy right now; try again.")


# A publish waits at most this long: the write is stored, the event is a courtesy.
PUBLISH_TIMEOUT_S = 5.0
# Messages redacted per write when a sender is erased (each one batch with the group item).
REDACT_BATCH = MAX_BATCH_OPERATIONS - 2
EXPORT_PAGE = 200


class GroupRulesStore(GroupStore, ConversationStore, Protocol):
    """What the group rules need of a store: groups, and the caller's usage records."""


async def member_groups(store: GroupStore, email: str) -> list[GroupRecord]:
    """Every group ``email`` belongs to, by their index checked against each group item: an
    entry whose group is gone or does not list them (confirmed by a read that sees every
    acknowledged write) is removed, never shown."""
    ids = await store.group_ref_ids(email, limit=MAX_GROUPS_PER_USER)
    gate = asyncio.Semaphore(LIST_READ_CONCURRENCY)

    async def verified(group_id: str) -> GroupRecord | None:
        async with gate:
            group = await store.read_group(group_id)
            if group is None or group.member(email) is None:
                group = await store.read_group(group_id, latest=True)
            if group is None or group.member(email) is None:
                await drop_ref(store, email, group_id)
                return None
            return group

    found = await asyncio.gather(*(verified(group_id) for group_id in dict.fromkeys(ids)))
    return sorted((g for g in found if g is not None), key=lambda g: (g.created_at, g.id))


async def drop_ref(store: GroupStore, email: str, group_id: str) -> None:
    """Remove a member's index entry for a group that no longer lists them. An add of the same
    member may have landed meanwhile (its group write, then its entry, both before this
    delete): read the group again, as it is now, and put the entry back if it lists them."""
    await store.drop_group_ref(email, group_id)
    group = await store.read_group(group_id, latest=True)
    if group is not None and group.member(email) is not None:
        await store.put_group_ref(email, group_id)


async def move_member(
    store: GroupStore, old: str, new: str, *, sleep: Sleep = asyncio.sleep
) -> int:
    """An address change (``shared/identity/move.py``): in every group ``old`` belongs to, the
    messages ``old`` sent name ``new``, then the member becomes ``new`` (role and addedAt kept;
    when ``new`` is a member already, the higher role stays); then the index follows. Each step
    is a conditional write of the group like any other, and the old index entry goes last, so a
    run stopped anywhere is finished by running it again. How many groups moved."""
    moved = 0
    for group_id in await store.group_ref_ids(old, limit=MAX_GROUPS_PER_USER):
        while theirs := await store.messages_of_sender(group_id, old, limit=REDACT_BATCH):
            renamed = [m.model_copy(update={"sender_email": new}) for m in theirs]

            def rename(group: GroupRecord, renamed: list[GroupMessageRecord] = renamed) -> Change:
                return Change(group, rewrite=renamed)

            if not await _rewrite(store, group_id, old, rename, sleep):
                break

        def move(group: GroupRecord) -> Change:
            was = group.member(old)
            assert was is not None
            present = group.member(new)
            roles = (was.role, present.role if present else "member")
            role: GroupRole = "owner" if "owner" in roles else "member"
            members = [
                was.model_copy(update={"email": new, "role": role}) if m.email == old else m
                for m in group.members
                if m.email != new
            ]
            return Change(group.model_copy(update={"members": members}))

        if await _rewrite(store, group_id, old, move, sleep):
            moved += 1
        group = await store.read_group(group_id, latest=True)
        if group is not None and group.member(new) is not None:
            await store.put_group_ref(new, group_id)
        await store.drop_group_ref(old, group_id)
    return moved


async def _rewrite(
    store: GroupStore,
    group_id: str,
    member: str,
    change: Callable[[GroupRecord], Change],
    sleep: Sleep,
) -> bool:
    """Apply ``change`` to the group as it is now while ``member`` belongs to it, in one
    conditional write, retried when another writer got there first; False when the group is
    gone or no longer lists ``member`` (nothing to do)."""

    async def attempt(_: int) -> bool:
        group = await store.read_group(group_id, latest=True)
        if group is None or group.member(member) is None:
            return False
        planned = change(group)
        assert group.etag is not None
        try:
            await store.write_group(
                planned.group,
                expected_etag=group.etag,
                messages=planned.messages,
                rewrite=planned.rewrite,
            )
        except ConcurrencyConflict:
            raise LostRace() from None
        return True

    try:
        return await retry_on_conflict(attempt, attempts=MAX_ATTEMPTS, sleep=sleep)
    except RetriesExhausted:
        raise _too_busy() from None


async def group_pages(store: GroupStore, group_id: str) -> AsyncIterator[list[GroupMessageRecord]]:
    """Every message of the group, oldest first, a page at a time (exports)."""
    after = 0
    while True:
        page, more = await store.group_messages(group_id, limit=EXPORT_PAGE, after_seq=after)
        if page:
            yield page
        if not more or not page:
            return
        after = page[-1].seq


async def export_groups(store: GroupStore, email: str) -> AsyncIterator[str]:
    """The export's ``"groups"`` member (JSON text with a leading comma): every group the
    caller belongs to, with its members and every message, a page at a time."""
    yield ',"groups":['
    first = True
    for group in await member_groups(store, email):
        head = GroupService.detail(group, email, [], False).model_dump(
            by_alias=True, exclude={"messages", "has_more_messages"}
        )
        text = json.dumps(head, separators=(",", ":"))
        yield ("" if first else ",") + text[:-1] + ',"messages":['
        first = False
        sent = False
        async for page in group_pages(store, group.id):
            for message in page:
                yield ("," if sent else "") + message.to_api().model_dump_json(by_alias=True)
                sent = True
        yield "]}"
    yield "]"


async def erase_groups(
    store: GroupRulesStore,
    email: str,
    *,
    settings: Settings,
    clock: Clock,
    realtime: Realtime | None = None,
) -> int:
    """A user's erasure, for groups (``GroupService.erase``); how many groups they left."""
    rules = GroupService(store, None, settings, realtime or NoRealtime(), clock=clock)
    return await rules.erase(email)


def display_name(email: str, claim: str | None) -> str:
    """The name shown for a member: the token's ``name`` claim, else the local part."""
    name = " ".join((claim or "").split())[:MEMBER_NAME_MAX_CHARS]
    return name or email.partition("@")[0]


def group_name_of(raw: str) -> str:
    return one_line_name(raw, "name", GROUP_NAME_MAX_CHARS)


def address_of(raw: object) -> str:
    email = normalise_email(raw)
    if email is None:
        raise InvalidRequest("members must be email addresses.")
    return email


def with_owner(members: list[GroupMember]) -> list[GroupMember]:
    """``members`` with an owner: when none is left, the earliest remaining member becomes one."""
    if not members or any(m.role == "owner" for m in members):
        return members
    heir = min(range(len(members)), key=lambda i: (members[i].added_at, i))
    return [
        m.model_copy(update={"role": "owner"}) if i == heir else m for i, m in enumerate(members)
    ]


@dataclass(frozen=True)
class Line:
    """A stored group message as the model is shown it (``shared.context.Spoken``)."""

    role: Role
    content: str
    seq: int
    context_from: int | None = None


def model_line(message: GroupMessageRecord) -> Line:
    if message.role == "user":
        who = message.sender_name or "a former member"
        return Line("user", f"{who}: {message.content}", message.seq)
    return Line("assistant", message.content, message.seq)


@dataclass
class Change:
    """What one conditional write of a group does."""

    group: GroupRecord
    messages: list[GroupMessageRecord] = field(default_factory=list)
    rewrite: list[GroupMessageRecord] = field(default_factory=list)
    request: GroupRequestRecord | None = None


class GroupService:
    def __init__(
        self,
        store: GroupRulesStore,
        model: ChatModel | None,
        settings: Settings,
        realtime: Realtime,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.model = model
        self.settings = settings
        self.realtime = realtime
        self.clock = clock or SystemClock()
        self._sleep = sleep
        self._key = settings.resolved_token_signing_key
        self.usage = UsageMeter(store, settings, self.clock, sleep=sleep)

    # ---- reading the truth --------------------------------------------------------------------

    async def _group_of(self, group_id: str, email: str) -> GroupRecord:
        """The group when ``email`` is a member; 404 otherwise (never a hint of existence). An
        absence is confirmed by a read that sees every acknowledged write, so a replica
        behind another instance's write never makes a new member's group a 404."""
        if not is_group_id(group_id):
            raise NotFound("No such group.")
        group = await self.store.read_group(group_id)
        if group is None or group.member(email) is None:
            group = await self.store.read_group(group_id, latest=True)
        if group is None or group.member(email) is None:
            raise NotFound("No such group.")
        return group

    async def _owned(self, group_id: str, email: str) -> GroupRecord:
        group = await self._group_of(group_id, email)
        member = group.member(email)
        assert member is not None
        if member.role != "owner":
            raise Forbidden("Only an owner of the group can do this.")
        return group

    async def _write(
        self,
        group_id: str,
        email: str,
        change: Callable[[GroupRecord], Change | None],
        *,
        owner: bool = False,
    ) -> tuple[GroupRecord, Change | None]:
        """Apply ``change`` to the group as it is now, in one conditional write, again and again
        until no other writer got there first. ``change`` returns None when nothing is to be
        written (the group as read is returned)."""

        async def attempt(_: int) -> tuple[GroupRecord, Change | None]:
            group = await (self._owned if owner else self._group_of)(group_id, email)
            planned = change(group)
            if planned is None:
                return group, None
            assert group.etag is not None
            try:
                stored = await self.store.write_group(
                    planned.group,
                    expected_etag=group.etag,
                    messages=planned.messages,
                    rewrite=planned.rewrite,
                    request=planned.request,
                )
            except ConcurrencyConflict:
                raise LostRace() from None
            return stored, planned

        try:
            return await retry_on_conflict(attempt, attempts=MAX_ATTEMPTS, sleep=self._sleep)
        except RetriesExhausted:
            raise _too_busy() from None

    # ---- groups -------------------------------------------------------------------------------

    async def create(
        self, email: str, name_claim: str | None, request: GroupCreateRequest
    ) -> GroupOut:
        name = group_name_of(request.name)
        others: dict[str, None] = {}
        for raw in request.members:
            address = address_of(raw)
            if address != email:
                others[address] = None
        if 1 + len(others) > self.settings.group_max_members:
            raise InvalidRequest(f"A group has at most {self.settings.group_max_members} members.")
        now = self.clock.now()
        members = [
            GroupMember(
                email=email, name=display_name(email, name_claim), role="owner", added_at=now
            )
        ]
        members += [
            GroupMember(email=m, name=display_name(m, None), role="member", added_at=now)
            for m in others
        ]
        group = GroupRecord(
            id=new_group_id(), name=name, created_at=now, updated_at=now, members=members
        )
        stored = await self.store.create_group(group)
        for member in members:  # the index, after the truth
            await self.store.put_group_ref(member.email, stored.id)
        log.info("group_created", extra={"group_id": stored.id, "members": len(members)})
        for member in members:
            await self._realtime(
                "join", self.realtime.add_user_to_group(self._uid(member.email), stored.id)
            )
        await self._publish_updated(stored, email)
        return self.detail(stored, email, [], False)

    async def list_groups(self, email: str, *, limit: int, continuation: str | None) -> GroupList:
        scope = listing_scope("groups")
        after = (
            decode_position(decode_page_token(self._key, continuation, scope, email), 2)
            if continuation
            else None
        )
        groups = await self.my_groups(email)
        ordered = sorted(groups, key=lambda g: (stored_time(g.updated_at), g.id), reverse=True)
        if after is not None:
            ordered = [g for g in ordered if (stored_time(g.updated_at), g.id) < after]
        page = ordered[:limit]
        token = None
        if len(ordered) > limit:
            last = page[-1]
            position = encode_position(stored_time(last.updated_at), last.id)
            token = encode_page_token(self._key, scope, position, email)
        return GroupList(groups=[summary_of(g, email) for g in page], continuation_token=token)

    async def my_groups(self, email: str) -> list[GroupRecord]:
        return await member_groups(self.store, email)

    async def get(self, email: str, group_id: str) -> GroupOut:
        group = await self._group_of(group_id, email)
        messages, more = await self.store.group_messages(
            group.id, limit=self.settings.max_session_messages
        )
        return self.detail(group, email, messages, more)

    async def rename(self, email: str, group_id: str, raw_name: str) -> GroupSummary:
        name = group_name_of(raw_name)

        def rename(group: GroupRecord) -> Change:
            return Change(group.model_copy(update={"name": name, "updated_at": self.clock.now()}))

        stored, _ = await self._write(group_id, email, rename, owner=True)
        await self._publish_updated(stored, email)
        return summary_of(stored, email)

    async def delete(self, email: str, group_id: str) -> None:

        async def attempt(_: int) -> None:
            group = await self._owned(group_id, email)
            if not await self.store.delete_group(group.id, expected_etag=group.etag):
                raise LostRace()
            await self._gone(group)

        try:
            await retry_on_conflict(attempt, attempts=MAX_ATTEMPTS, sleep=self._sleep)
        except RetriesExhausted:
            raise _too_busy() from None

    async def _gone(self, group: GroupRecord) -> None:
        """After a group's delete: its event, then its members' index entries."""
        log.info("group_deleted", extra={"group_id": group.id})
        await self._realtime(
            "publish",
            self.realtime.publish(group.id, {"type": "group.deleted", "groupId": group.id}),
        )
        for member in group.members:
            await self.store.drop_group_ref(member.email, group.id)

    # ---- members ------------------------------------------------------------------------------

    async def add_member(self, email: str, group_id: str, request: MemberAddRequest) -> GroupOut:
        address = address_of(request.email)
        role: GroupRole = request.role

        def add(group: GroupRecord) -> Change | None:
            present = group.member(address)
            if present is not None:
                if present.role == role:
                    return None
                members = [
                    m.model_copy(update={"role": role}) if m.email == address else m
                    for m in group.members
                ]
                if not any(m.role == "owner" for m in members):
                    raise Conflict("A group needs an owner: make someone else owner first.")
            else:
                if len(group.members) >= self.settings.group_max_members:
                    raise InvalidRequest(
                        f"A group has at most {self.settings.group_max_members} members."
                    )
                members = [
                    *group.members,
                    GroupMember(
                        email=address,
                        name=display_name(address, None),
                        role=role,
                        added_at=self.clock.now(),
                    ),
                ]
            return Change(
                group.model_copy(update={"members": members, "updated_at": self.clock.now()})
            )

        stored, changed = await self._write(group_id, email, add, owner=True)
        # The index after the truth, also when nothing changed: a retried add repairs an entry
        # an earlier attempt did not write (it stopped between the two).
        await self.store.put_group_ref(address, stored.id)
        if changed is not None:
            await self._realtime(
                "join", self.realtime.add_user_to_group(self._uid(address), stored.id)
            )
            await self._publish_updated(stored, email)
        messages, more = await self.store.group_messages(
            stored.id, limit=self.settings.max_session_messages
        )
        return self.detail(stored, email, messages, more)

    async def remove_member(self, email: str, group_id: str, raw_member: str) -> None:
        """The owner removes anyone; a member removes only themself (leaves)."""
        target = normalise_email(raw_member)

        async def attempt(_: int) -> None:
            group = await self._group_of(group_id, email)
            caller = group.member(email)
            assert caller is not None
            if target != email and caller.role != "owner":
                raise Forbidden("Only an owner of the group can remove other members.")
            if target is None or group.member(target) is None:
                raise NotFound("No such member.")
            assert group.etag is not None
            remaining = with_owner([m for m in group.members if m.email != target])
            if not remaining:
                # The last member leaves: the group and everything of it goes.
                if await self.store.delete_group(group.id, expected_etag=group.etag):
                    await self._left(group.id, target)
                    await self._gone(group)
                    return
                raise LostRace()
            updated = group.model_copy(
                update={"members": remaining, "updated_at": self.clock.now()}
            )
            try:
                stored = await self.store.write_group(updated, expected_etag=group.etag)
            except ConcurrencyConflict:
                raise LostRace() from None
            await self._left(stored.id, target)
            await self._publish_updated(stored, email)

        try:
            await retry_on_conflict(attempt, attempts=MAX_ATTEMPTS, sleep=self._sleep)
        except RetriesExhausted:
            raise _too_busy() from None

    async def _left(self, group_id: str, email: str) -> None:
        """A member is out: their connections leave the group's channel before anything else
        is published to it, then they are told, then their index entry goes."""
        uid = self._uid(email)
        await self._realtime("leave", self.realtime.remove_user_from_group(uid, group_id))
        await self._realtime(
            "send", self.realtime.send_to_user(uid, {"type": "group.removed", "groupId": group_id})
        )
        await drop_ref(self.store, email, group_id)

    # ---- messages -----------------------------------------------------------------------------

    def validate(self, request: GroupSendRequest) -> None:
        if not request.content.strip():
            raise InvalidRequest("content must not be empty.")
        if len(request.content) > self.settings.max_message_chars:
            raise PayloadTooLarge(
                f"content is longer than {self.settings.max_message_chars} characters."
            )

    async def send(
        self, email: str, name_claim: str | None, group_id: str, request: GroupSendRequest
    ) -> GroupSend:
        """Store the caller's message (or find it, for a retry) and publish it; with ``ask``,
        the answer is to come (``GroupSend``). Every error of the request is raised here."""
        self.validate(request)
        if request.ask:
            await self.usage.check(email)  # 429 before anything is stored or the model called
        name = display_name(email, name_claim)
        cmid = request.client_message_id
        key = request_key(email, cmid) if cmid else None

        def store_message(group: GroupRecord) -> Change:
            now = self.clock.now()
            user = GroupMessageRecord(
                group_id=group.id,
                seq=group.last_seq + 1,
                role="user",
                content=request.content,
                timestamp=now,
                sender_email=email,
                sender_name=name,
                client_message_id=cmid,
            )
            # The sender's name as their sign-in says it now, in the same write.
            members = [
                m.model_copy(update={"name": name}) if m.email == email else m
                for m in group.members
            ]
            updated = group.model_copy(
                update={
                    "members": members,
                    "last_seq": user.seq,
                    "message_count": group.message_count + 1,
                    "updated_at": now,
                }
            )
            record = None
            if key is not None and cmid is not None:
                record = GroupRequestRecord(
                    group_id=group.id, key=key, client_message_id=cmid, user_seq=user.seq
                )
            return Change(updated, [user], request=record)

        try:
            stored, change = await self._write(group_id, email, store_message)
        except DuplicateRequest:
            assert key is not None
            return await self._replay(email, group_id, key, request)
        assert change is not None
        user = change.messages[0]
        await self._publish_message(stored.id, user)
        if not request.ask:
            return GroupSend(stored.id, user)
        return self._asking(email, stored, user, key)

    async def _replay(
        self, email: str, group_id: str, key: str, request: GroupSendRequest
    ) -> GroupSend:
        """A retry of a clientMessageId: store nothing twice, answer what was answered (or
        answer now, if the first attempt's answer was never stored)."""
        group = await self._group_of(group_id, email)
        existing = await self.store.get_group_request(group.id, key)
        user = await self._message(group.id, existing.user_seq) if existing else None
        if existing is None or user is None:
            raise StorageUnavailable("The message is being stored; try again.")
        if user.content != request.content:
            raise Conflict("This clientMessageId was already used for another message.")
        if not request.ask:
            return GroupSend(group.id, user)
        if existing.assistant_seq is not None:
            answer = await self._message(group.id, existing.assistant_seq)
            if answer is not None:
                return GroupSend(group.id, user, _replayed=answer)
        return self._asking(email, group, user, key)

    async def _message(self, group_id: str, seq: int) -> GroupMessageRecord | None:
        page, _ = await self.store.group_messages(group_id, limit=1, after_seq=seq - 1)
        return page[0] if page and page[0].seq == seq else None

    def _asking(
        self, email: str, group: GroupRecord, user: GroupMessageRecord, key: str | None
    ) -> GroupSend:
        async def answer(queue: asyncio.Queue[str | None]) -> GroupMessageRecord:
            return await self._answer(email, group.id, user, key, queue)

        return GroupSend(group.id, user, _answer=answer)

    async def _answer(
        self,
        email: str,
        group_id: str,
        user: GroupMessageRecord,
        key: str | None,
        queue: asyncio.Queue[str | None],
    ) -> GroupMessageRecord:
        history, _ = await self.store.group_messages(
            group_id, limit=max(self.settings.max_history_messages - 1, 0), before_seq=user.seq
        )
        window = context_window(
            self.settings.system_prompt,
            [model_line(m) for m in [*history, user]],
            max_messages=self.settings.max_history_messages,
            max_tokens=self.settings.max_context_tokens,
            policy=self.settings.context_window,
        )
        pieces: list[str] = []
        usage: Usage | None = None
        assert self.model is not None  # only erasure runs without a model, and never asks
        model = self.model
        deadline_s = model_budget_s(self.settings.llm_timeout_s, self.settings.llm_max_retries)
        try:
            async with asyncio.timeout(deadline_s):
                async for piece in model.stream(window.messages, cache_key=None):
                    if isinstance(piece, Usage):
                        usage = piece
                    else:
                        pieces.append(piece)
                        queue.put_nowait(piece)
        except TimeoutError:
            log.warning("group_model_failed", extra={"group_id": group_id, "code": "deadline"})
            raise ModelError("The model did not answer in time.") from None
        except ApiError as error:
            log.warning("group_model_failed", extra={"group_id": group_id, "code": error.code})
            raise
        except Exception as exc:  # an adapter bug must still look like a model failure
            log.error("group_model_failed %s", type(exc).__name__, extra={"group_id": group_id})
            raise ModelError() from exc
        finally:
            content = "".join(pieces)
            if usage is not None or pieces:
                await self.usage.record(email, window.messages, content, usage, turn=True)
        if not content.strip():
            raise ModelError("The model returned an empty answer.")
        stored = await self._store_answer(email, group_id, user, content, usage, key)
        await self._publish_message(group_id, stored)
        return stored

    async def _store_answer(
        self,
        email: str,
        group_id: str,
        user: GroupMessageRecord,
        content: str,
        usage: Usage | None,
        key: str | None,
    ) -> GroupMessageRecord:
        """Store the answer as the group's next message. Not given up for contention while the
        group exists (``ANSWER_COMMIT_PATIENCE_S`` bounds a pathological case); the asker may
        have left meanwhile: the answer is the group's, so it is stored while the group is."""

        async def attempt(n: int) -> GroupMessageRecord:
            with storage_budget(self.settings.store_timeout_s):
                group = await self.store.read_group(group_id, latest=n > 0)
                if group is None:
                    raise NotFound("No such group.")
                request = await self.store.get_group_request(group_id, key) if key else None
                if request is not None and request.assistant_seq is not None:
                    stored = await self._message(group_id, request.assistant_seq)
                    if stored is not None:  # a concurrent retry of the same request won
                        return stored
                now = self.clock.now()
                answer = GroupMessageRecord(
                    group_id=group_id,
                    seq=group.last_seq + 1,
                    role="assistant",
                    content=content,
                    timestamp=now,
                    model=usage.model if usage else (self.model.name if self.model else None),
                    prompt_tokens=usage.prompt_tokens if usage else None,
                    completion_tokens=usage.completion_tokens if usage else None,
                )
                updated = group.model_copy(
                    update={
                        "last_seq": answer.seq,
                        "message_count": group.message_count + 1,
                        "updated_at": now,
                    }
                )
                answered = (
                    request.model_copy(update={"assistant_seq": answer.seq}) if request else None
                )
                assert group.etag is not None
                try:
                    await self.store.write_group(
                        updated, expected_etag=group.etag, messages=[answer], request=answered
                    )
                except ConcurrencyConflict:
                    raise LostRace() from None
                return answer

        try:
            return await retry_on_conflict(
                attempt, within_s=ANSWER_COMMIT_PATIENCE_S, clock=self.clock, sleep=self._sleep
            )
        except RetriesExhausted:
            raise _too_busy() from None

    async def page_messages(
        self,
        email: str,
        group_id: str,
        *,
        limit: int,
        after: int | None,
        before: str | None,
    ) -> GroupMessagePage:
        if after is not None and before is not None:
            raise InvalidRequest("Use after or before, not both.")
        group = await self._group_of(group_id, email)
        before_seq = None
        if before is not None:
            parsed = parse_group_message_id(before)
            if parsed is None or parsed[0] != group.id:
                raise InvalidRequest("before must be a message id of this group.")
            before_seq = parsed[1]
        messages, more = await self.store.group_messages(
            group.id, limit=limit, before_seq=before_seq, after_seq=after
        )
        return GroupMessagePage(messages=[m.to_api() for m in messages], has_more=more)

    # ---- real time ----------------------------------------------------------------------------

    async def join(self, email: str) -> None:
        """Add the caller's open connections to the channel of every group they belong to (the
        group items decide, never the index alone nor the client). 503 when the real-time
        service cannot be reached."""
        uid = self._uid(email)
        for group in await self.my_groups(email):
            await self.realtime.add_user_to_group(uid, group.id)

    def _uid(self, email: str) -> str:
        return realtime_user_id(email, self._key)

    async def _realtime(self, operation: str, call: Awaitable[None]) -> None:
        """A real-time call after a stored write: a failure is logged (no text, no address)
        and never fails or undoes the write."""
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await call
        except Exception as exc:  # any failure (a timeout too): the write stands
            code = "unavailable" if isinstance(exc, RealtimeUnavailable) else type(exc).__name__
            log.warning("realtime_failed", extra={"operation": operation, "code": code})

    async def _publish_message(self, group_id: str, message: GroupMessageRecord) -> None:
        event = {
            "type": "group.message",
            "groupId": group_id,
            "message": message.to_api().model_dump(by_alias=True),
        }
        await self._realtime("publish", self.realtime.publish(group_id, event))

    async def _publish_updated(self, group: GroupRecord, actor: str) -> None:
        event = {
            "type": "group.updated",
            "groupId": group.id,
            "group": summary_of(group, actor).model_dump(by_alias=True),
        }
        await self._realtime("publish", self.realtime.publish(group.id, event))

    # ---- shapes -------------------------------------------------------------------------------

    @staticmethod
    def detail(
        group: GroupRecord, email: str, messages: Sequence[GroupMessageRecord], more: bool
    ) -> GroupOut:
        summary = summary_of(group, email)
        return GroupOut(
            **summary.model_dump(),
            members=[member_out(m) for m in group.members],
            messages=[m.to_api() for m in messages],
            has_more_messages=more,
        )

    # ---- data rights --------------------------------------------------------------------------

    async def erase(self, email: str) -> int:
        """A user's erasure, for groups: they leave every group they belong to (ownership
        passes on; a group they were the last member of is deleted), and their messages in
        the groups that live on keep their seq but lose content and sender. How many groups."""
        groups = await self.my_groups(email)
        for group in groups:
            await self._redact(group.id, email)
            with contextlib.suppress(NotFound):  # gone meanwhile
                await self.remove_member(email, group.id, email)
        return len(groups)

    async def _redact(self, group_id: str, email: str) -> None:
        """Empty every message ``email`` sent to the group, a batch per write, each write
        conditional on the group item (a redaction is a change of the group like any other)."""
        while True:
            mine = await self.store.messages_of_sender(group_id, email, limit=REDACT_BATCH)
            if not mine:
                return
            redacted = [
                m.model_copy(
                    update={
                        "content": "",
                        "sender_email": None,
                        "sender_name": None,
                        "client_message_id": None,
                        "removed": True,
                    }
                )
                for m in mine
            ]

            def redact(group: GroupRecord, redacted: list[GroupMessageRecord] = redacted) -> Change:
                return Change(
                    group.model_copy(update={"updated_at": group.updated_at}), rewrite=redacted
                )

            try:
                await self._write(group_id, email, redact)
            except NotFound:
                return


__all__ = ["GroupRulesStore", "GroupService", "Line", "with_owner"]
