"""Sharing a conversation (``docs/http.md``, "Sharing"; ``docs/design.md``, "Sharing").

A share is a snapshot: creating one copies the session's messages as they are then (never
their feedback, client ids or token counts). It has an owner, an audience and an expiry:

- ``signed_in``: any caller the deployment authenticates;
- ``people``: the owner and the listed addresses only (normalised as identities are, so a
  look-alike of a listed address is someone else).

Anyone else, and everyone once it has expired or been revoked, gets 404: the same answer, from
the same code path, as for an id that never existed, so a share's existence is not revealed.
Expiry is decided here by ``expiresAt`` against this service's clock; the store's time-to-live
(Cosmos deletes expired items in the background, some time later) only reclaims the space.

Every view by someone other than the owner is logged (who, when); the owner reads the log
(its newest ``MAX_SHARE_VIEWS`` entries). A viewer can copy a share into a new conversation of
their own. Deleting a session revokes its shares; erasing a user revokes their shares and
removes them from every view log they appear in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Protocol

from shared.audit import user_hash
from shared.auth.claims import normalise_email
from shared.backoff import Sleep
from shared.clock import Clock, iso
from shared.errors import Conflict, InvalidRequest, NotFound, StorageUnavailable
from shared.events import emit
from shared.ids import SEQ_WIDTH, is_session_id, new_session_id
from shared.models import (
    MessageOut,
    MessageRecord,
    SessionRecord,
    SessionSummary,
    ShareCreateRequest,
    SharedBy,
    SharedConversation,
    ShareList,
    ShareOut,
    ShareRecord,
    ShareViewOut,
    ShareViews,
)
from shared.paging import decode_page_token, encode_page_token, listing_scope
from shared.storage.base import WHERES, ConversationStore, GroupStore, ShareStore, Where
from shared.titles import make_preview

log = logging.getLogger("parley.sharing")

# 'sh_' + 48 lowercase hex characters: 192 random bits, unguessable, URL-safe, fixed shape.
SHARE_ID_RE = re.compile(r"^sh_[0-9a-f]{48}$")
SHARE_ID_BYTES = 24
PEOPLE_MAX = 50
SHARES_LIMIT_DEFAULT, SHARES_LIMIT_MAX = 20, 100
MESSAGES_PAGE = 200  # messages read per query when copying or showing a share
# A snapshot read that met a move or a new turn is read again, at most this many times.
SNAPSHOT_ATTEMPTS = 8
SNAPSHOT_PAUSE_S = 0.05
# A continued conversation is written in batches of at most this many messages and characters
# (each batch one atomic write of the store: Cosmos' limits are 100 operations and 2 MB).
CONTINUE_BATCH_MESSAGES = 90
CONTINUE_BATCH_CHARS = 140_000  # 12 bytes each at worst (escaped): under 2 MB
ERASE_PAGE = 100


class SharingStore(ConversationStore, ShareStore, GroupStore, Protocol):
    """What sharing needs of a store: sessions to copy from and into, and shares; and, for
    the conversation rules that hold this store too, a user's groups (export, erasure)."""


def new_share_id() -> str:
    return "sh_" + secrets.token_hex(SHARE_ID_BYTES)


def is_share_id(value: str) -> bool:
    """Ids of any other shape cannot exist: 404 without a read."""
    return bool(SHARE_ID_RE.match(value))


def audience_of(request: ShareCreateRequest) -> list[str]:
    """The normalised, de-duplicated people of a request (empty for ``signed_in``); 400 for
    anything the contract does not allow."""
    if request.audience == "signed_in":
        if request.people:
            raise InvalidRequest('people is only for the audience "people".')
        return []
    raw = request.people
    if not 1 <= len(raw) <= PEOPLE_MAX:
        raise InvalidRequest(f"people must list 1 to {PEOPLE_MAX} email addresses.")
    people: dict[str, None] = {}
    for value in raw:
        email = normalise_email(value)
        if email is None:
            raise InvalidRequest("people must be email addresses.")
        people[email] = None
    return list(people)


def admits(share: ShareRecord, caller: str) -> bool:
    """Whether ``caller`` (an authenticated, normalised identity) may read ``share``."""
    if caller == share.owner or share.audience == "signed_in":
        return True
    return caller in share.people


def display_name(email: str) -> str:
    """The name shown for a sharer: identities carry no name, so the address's local part."""
    return email.partition("@")[0]


def shared_message(share_id: str, message: MessageRecord) -> MessageOut:
    # Ids of the share's own: the original session's id is the owner's business.
    return MessageOut(
        id=f"{share_id}:{message.seq:0{SEQ_WIDTH}d}",
        role=message.role,
        content=message.content,
        timestamp=iso(message.timestamp),
    )


def snapshot_copy(message: MessageRecord) -> MessageRecord:
    """What a share keeps of a message: who said what, when. Never its feedback."""
    return MessageRecord(
        session_id=message.session_id,
        seq=message.seq,
        role=message.role,
        content=message.content,
        timestamp=message.timestamp,
    )


async def all_share_messages(store: ShareStore, share_id: str) -> list[MessageRecord]:
    messages: list[MessageRecord] = []
    after = 0
    while True:
        page, more = await store.share_messages(share_id, after_seq=after, limit=MESSAGES_PAGE)
        messages += page
        if not more or not page:
            return messages
        after = page[-1].seq


async def owned_shares(store: ShareStore, email: str) -> AsyncIterator[ShareRecord]:
    """Every share of the owner, expired ones included, newest first."""
    after: str | None = None
    while True:
        shares, after = await store.list_shares(email, limit=ERASE_PAGE, after=after)
        for share in shares:
            yield share
        if after is None:
            return


async def revoke_session_shares(store: ShareStore, email: str, session_id: str) -> int:
    """Revoke every share of one session (the session is being deleted); how many."""
    doomed = [
        share.id async for share in owned_shares(store, email) if share.session_id == session_id
    ]
    for share_id in doomed:
        await store.delete_share(email, share_id)
    return len(doomed)


async def erase_shares(store: ShareStore, email: str) -> None:
    """A user's erasure, for shares: every share they made (with its messages and view log),
    and every view log entry of theirs in anyone's share."""
    while True:
        # By the owner's index, whole or not: a share whose making was interrupted goes too.
        doomed = await store.owned_share_ids(email, limit=ERASE_PAGE)
        if not doomed:
            break
        for share_id in doomed:
            await store.delete_share(email, share_id)
    await store.forget_viewer(email)


async def export_shares(store: ShareStore, email: str) -> AsyncIterator[str]:
    """The export's ``"shares"`` and ``"sharesViewed"`` members (JSON text, each with a
    leading comma): every share of the owner with its view log and messages, and the shares
    they viewed."""
    yield ',"shares":['
    first = True
    async for share in owned_shares(store, email):
        body = share.to_api().model_dump(by_alias=True)
        views = sorted(await store.share_views(share.id), key=lambda v: v.viewed_at, reverse=True)
        body["viewLog"] = [{"email": v.email, "viewedAt": iso(v.viewed_at)} for v in views]
        messages = await all_share_messages(store, share.id)
        body["messages"] = [shared_message(share.id, m).model_dump(by_alias=True) for m in messages]
        yield ("" if first else ",") + json.dumps(body, separators=(",", ":"))
        first = False
    viewed = await store.viewed_shares(email)
    noted = [
        {"shareId": v.share_id, "sharedBy": v.owner, "title": v.title, "viewedAt": iso(v.viewed_at)}
        for v in sorted(viewed, key=lambda v: v.viewed_at, reverse=True)
    ]
    yield '],"sharesViewed":' + json.dumps(noted, separators=(",", ":"))


class ShareService:
    def __init__(
        self,
        store: SharingStore,
        clock: Clock,
        *,
        token_key: str,
        sleep: Sleep = asyncio.sleep,
        hash_salt: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self._token_key = token_key
        self._sleep = sleep
        # LOG_HASH_SALT, for the share_view event's pseudonymous owner; None: no events.
        self._hash_salt = hash_salt

    # ---- making ---------------------------------------------------------------------------------

    async def create(self, email: str, session_id: str, request: ShareCreateRequest) -> ShareOut:
        people = audience_of(request)
        if not is_session_id(session_id):
            raise NotFound()
        session, messages = await self._snapshot(email, session_id)
        now = self.clock.now()
        share = ShareRecord(
            id=new_share_id(),
            owner=email,
            session_id=session_id,
            title=session.title,
            audience=request.audience,
            people=people,
            created_at=now,
            expires_at=now + timedelta(days=request.expires_in_days),
            message_count=len(messages),
        )
        await self.store.create_share(share, messages)
        # A delete of the session that ran meanwhile could not see this share yet: if the
        # session is gone now, so is the share.
        if await self._locate(email, session_id) is None:
            await self.store.delete_share(email, share.id)
            raise NotFound()
        log.info("share_created", extra={"session_id": session_id})
        return share.to_api()

    async def _locate(self, email: str, session_id: str) -> tuple[SessionRecord, Where] | None:
        for where in WHERES:
            session = await self.store.get_session(email, session_id, where=where)
            if session is not None:
                return session, where
        return None

    async def _snapshot(
        self, email: str, session_id: str
    ) -> tuple[SessionRecord, list[MessageRecord]]:
        """The session and all its messages as of one moment. Messages never change once
        stored (but for feedback, which is not copied), so reading every message up to the
        session's last seq is a snapshot; a read that a move (archive, restore) cut short is
        short of the session's count, and is read again."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            located = await self._locate(email, session_id)
            if located is None:
                raise NotFound()
            session, where = located
            messages: list[MessageRecord] = []
            after = 0
            while True:
                page, more = await self.store.page_messages(
                    email, session_id, where=where, limit=MESSAGES_PAGE, after_seq=after
                )
                messages += [snapshot_copy(m) for m in page if m.seq <= session.last_seq]
                if not more or not page or page[-1].seq >= session.last_seq:
                    break
                after = page[-1].seq
            if len(messages) == session.message_count:
                return session, messages
            await self._sleep(SNAPSHOT_PAUSE_S)
        raise StorageUnavailable("The conversation is being moved; try again.", retry_after_s=1)

    # ---- the owner ------------------------------------------------------------------------------

    async def list(self, email: str, *, limit: int, continuation: str | None) -> ShareList:
        scope = listing_scope("shares")
        after = (
            decode_page_token(self._token_key, continuation, scope, email) if continuation else None
        )
        shares, position = await self.store.list_shares(email, limit=limit, after=after)
        now = self.clock.now()
        return ShareList(
            shares=[share.to_api() for share in shares if share.expires_at > now],
            continuation_token=(
                encode_page_token(self._token_key, scope, position, email) if position else None
            ),
        )

    async def revoke(self, email: str, share_id: str) -> None:
        if not is_share_id(share_id) or not await self.store.delete_share(email, share_id):
            raise NotFound("No such share.")
        log.info("share_revoked")

    async def views(self, email: str, share_id: str) -> ShareViews:
        share = await self._readable(email, share_id)
        if share.owner != email:
            raise NotFound("No such share.")
        views = sorted(
            await self.store.share_views(share.id), key=lambda v: v.viewed_at, reverse=True
        )
        return ShareViews(
            views=[ShareViewOut(email=v.email, viewed_at=iso(v.viewed_at)) for v in views]
        )

    # ---- reading --------------------------------------------------------------------------------

    async def _readable(self, email: str, share_id: str) -> ShareRecord:
        """The share if ``email`` may read it now; else 404, whatever the reason."""
        if not is_share_id(share_id):
            raise NotFound("No such share.")
        share = await self.store.get_share(share_id)
        if share is None or share.expires_at <= self.clock.now() or not admits(share, email):
            raise NotFound("No such share.")
        return share

    async def _open(self, email: str, share_id: str) -> ShareRecord:
        """``_readable``, then confirmed by a write (a revocation anywhere is seen) and, for
        anyone but the owner, logged as a view."""
        share = await self._readable(email, share_id)
        viewer = None if email == share.owner else email
        opened = await self.store.open_share(share, viewer, self.clock.now())
        if opened is None:
            raise NotFound("No such share.")
        if viewer is not None and self._hash_salt is not None:
            emit("share_view", owner=user_hash(share.owner, self._hash_salt))
        return opened

    async def read(self, email: str, share_id: str) -> SharedConversation:
        share = await self._open(email, share_id)
        messages = await all_share_messages(self.store, share.id)
        return SharedConversation(
            share_id=share.id,
            title=share.title,
            shared_by=SharedBy(email=share.owner, name=display_name(share.owner)),
            created_at=iso(share.created_at),
            expires_at=iso(share.expires_at),
            messages=[shared_message(share.id, m) for m in messages],
        )

    async def continue_share(self, email: str, share_id: str) -> SessionSummary:
        """A new session of the caller's own holding a copy of the shared messages."""
        share = await self._open(email, share_id)
        source = await all_share_messages(self.store, share.id)
        if not source:
            raise Conflict("This share holds no messages.")
        session_id = new_session_id()
        now = self.clock.now()
        copies = [
            MessageRecord(
                session_id=session_id,
                seq=seq,
                role=m.role,
                content=m.content,
                timestamp=m.timestamp,
            )
            for seq, m in enumerate(source, start=1)
        ]
        first_user = next((m.content for m in copies if m.role == "user"), copies[0].content)
        session = SessionRecord(
            id=session_id,
            email=email,
            title=share.title,
            preview=make_preview(first_user),
            created_at=now,
            updated_at=now,
        )
        etag: str | None = None
        for batch in _batches(copies):
            session = session.model_copy(
                update={
                    "message_count": session.message_count + len(batch),
                    "last_seq": batch[-1].seq,
                    "updated_at": now,
                }
            )
            stored = await self.store.append(session, batch, expected_etag=etag)
            etag = stored.etag
            session = stored
        log.info("share_continued", extra={"session_id": session_id})
        return session.to_summary()


def _batches(messages: list[MessageRecord]) -> list[list[MessageRecord]]:
    batches: list[list[MessageRecord]] = []
    current: list[MessageRecord] = []
    size = 0
    for message in messages:
        if current and (
            len(current) >= CONTINUE_BATCH_MESSAGES
            or size + len(message.content) > CONTINUE_BATCH_CHARS
        ):
            batches.append(current)
            current, size = [], 0
        current.append(message)
        size += len(message.content)
    if current:
        batches.append(current)
    return batches
