"""The store protocols: everything the service and the archival pass need from a database.

A store persists what the service decides; it knows no rule of the API. Every call names the
caller's email, the partition key, except the archival scans. ``where`` (always a keyword)
picks the container: ``"active"`` (Conversations) or ``"archive"`` (ConversationsArchive).

Three protocols, for three audiences:

- ``ConversationStore``: the request path (turns, reads, rename, feedback, search, deletes,
  and the restore a turn starts when its session is archived);
- ``ArchiveStore``: the archival pass (scans across users, moves, finishing interrupted work);
- ``IdentityStore``: which account an address is bound to (``shared.identity``), kept with the
  user's data: one record in the user's own partition of the active container.

What every store guarantees (``docs/design.md``, "Concurrency" and "Moving a session"):

- each write is atomic and guarded by the session item's ETag, and any change to any item of a
  session changes that ETag in the same atomic write;
- a session id names at most one session of a user, across both containers;
- a move, a delete or an erase interrupted at any point loses nothing acknowledged, hides
  nothing half-done from readers, and is finished by the next call that meets it or by the
  archival pass's housekeeping.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel

from shared.auth.claims import Account
from shared.models import ContextMessage, Feedback, MessageRecord, RequestRecord, SessionRecord
from shared.search import SearchOrder

Where = Literal["active", "archive"]
WHERES: tuple[Where, Where] = ("active", "archive")

MAX_BATCH_OPERATIONS = 100  # Cosmos' limit for one transactional batch; SQLite follows it too


def other(where: Where) -> Where:
    return "archive" if where == "active" else "active"


class Presence(enum.Enum):
    """Where a session is, as a turn sees it."""

    LIVE = "live"  # in the active container: a turn can continue it
    ARCHIVED = "archived"  # in the archive (or on its way back): restore it, then continue
    MISSING = "missing"  # never existed, deleted, or being deleted


@dataclass(frozen=True)
class TurnView:
    """What a turn reads in one round trip: the session item and its newest messages."""

    presence: Presence
    session: SessionRecord | None = None  # set when LIVE
    window: tuple[ContextMessage, ...] = ()  # the newest messages, oldest first


class MoveOutcome(enum.Enum):
    MOVED = "moved"
    CHANGED = "changed"  # the session changed since it was read: the source is untouched
    BUSY = "busy"  # another move of this session is under way: try again later
    GONE = "gone"  # not in the source (deleted, or already moved)


class RehomeOutcome(enum.Enum):
    """What moving one session to another address (``IdentityStore.rehome_session``) did."""

    MOVED = "moved"  # it is under the new address now (or was already)
    GONE = "gone"  # nothing of it is under the old address (deleted meanwhile, or moved)
    CHANGED = "changed"  # it changed while it was copied: nothing committed, try again
    BUSY = "busy"  # another move or delete of it is under way: try again later
    TAKEN = "taken"  # the new address has a session with this id already: left as it is


@dataclass(frozen=True)
class SessionRef:
    """A session found by an archival scan: just enough to move or expire it safely."""

    email: str
    session_id: str
    updated_at: datetime
    etag: str


@dataclass(frozen=True)
class Unfinished:
    """A move or delete that stopped half-way (a crash, a timeout), for housekeeping."""

    where: Where
    email: str
    session_id: str
    state: str


@dataclass(frozen=True)
class Binding:
    """An address bound to the account that first used it (``shared.identity``)."""

    email: str
    account: Account
    bound_at: datetime


class SearchHit(BaseModel):
    """One message of a session that contains the phrase."""

    seq: int
    role: Literal["user", "assistant"]
    text: str


# One page of search results: each matching session with its hits, and the next position.
# Each result: the session, its first matching messages, and its relevance score
# (``shared.search.relevance``).
SearchPage = tuple[list[tuple[SessionRecord, list[SearchHit], int]], str | None]


class ConversationStore(Protocol):
    # ---- a turn --------------------------------------------------------------------------------

    async def read_turn(self, email: str, session_id: str, *, history: int) -> TurnView:
        """Where the session is and, when it is live, its item and newest ``history`` messages:
        one round trip."""
        ...

    async def append(
        self,
        session: SessionRecord,
        messages: list[MessageRecord],
        *,
        expected_etag: str | None,
        request: RequestRecord | None = None,
    ) -> SessionRecord:
        """Atomically create ``messages`` in the active container, write ``session`` (created
        when ``expected_etag`` is None, else replaced only if its ETag still matches) and
        create or update ``request``. Raises ``ConcurrencyConflict`` when another writer got
        there first, ``DuplicateRequest`` when a new ``request`` (``assistant_seq`` None) is
        already recorded; nothing is written then. Returns the session with its new ETag."""
        ...

    async def restore(self, email: str, session_id: str) -> MoveOutcome:
        """Bring an archived session back to the active container (or finish doing so)."""
        ...

    # ---- reads ---------------------------------------------------------------------------------

    async def get_session(
        self, email: str, session_id: str, *, where: Where
    ) -> SessionRecord | None:
        """One point read; None unless the session is readable there."""
        ...

    async def locate(self, email: str, session_id: str) -> tuple[SessionRecord, Where] | None:
        """The session and the container it is readable in now; None only when it does not
        exist. A move in flight is followed (or finished), never reported as missing; if it
        cannot be followed in a few reads, ``StorageUnavailable`` (503), never None."""
        ...

    async def get_message(
        self, email: str, session_id: str, seq: int, *, where: Where
    ) -> MessageRecord | None: ...

    async def get_request(
        self, email: str, session_id: str, client_message_id: str, *, where: Where
    ) -> RequestRecord | None: ...

    async def page_messages(
        self,
        email: str,
        session_id: str,
        *,
        where: Where,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[MessageRecord], bool]:
        """Up to ``limit`` messages, oldest first: the newest before ``before_seq`` (or the
        newest of all), or the oldest after ``after_seq``; and whether more lie beyond the page
        in that direction. One indexed query, whatever the conversation's length."""
        ...

    async def list_sessions(
        self, email: str, *, where: Where, limit: int, after: str | None
    ) -> tuple[list[SessionRecord], str | None]:
        """Readable session items only, newest ``updated_at`` first (ties by id), and the next
        page's position (None on the last page: never a position that leads to nothing)."""
        ...

    async def search(
        self,
        email: str,
        phrase: str,
        *,
        where: Where,
        limit: int,
        after: str | None,
        hits_per_session: int,
        order: SearchOrder = "recent",
    ) -> SearchPage:
        """The caller's readable sessions whose title or messages hold every word of ``phrase``
        (``shared.search``), newest first like ``list_sessions`` or, by ``relevance``, best
        first (``keyset.ranked_page``), each with its first ``hits_per_session`` matching
        messages in order and its score; and the next page's position."""
        ...

    async def all_sessions(
        self, email: str, *, limit: int, after: str | None
    ) -> tuple[list[SessionRecord], str | None]:
        """Every readable session of the caller, active and archived (``archived`` says
        which), each once, oldest ``updated_at`` first (ties by id): a session that moves
        between the containers meanwhile keeps its place in this order (exports)."""
        ...

    async def usage(self, email: str) -> tuple[int, int]:
        """How many sessions and messages the caller has in all (an erasure's count)."""
        ...

    # ---- other writes --------------------------------------------------------------------------

    async def save_session(
        self, session: SessionRecord, *, where: Where, expected_etag: str
    ) -> SessionRecord:
        """Replace the session item (title changes) if its ETag still matches."""
        ...

    async def set_feedback(
        self,
        email: str,
        session_id: str,
        seq: int,
        feedback: Feedback | None,
        *,
        where: Where,
        expected_etag: str,
    ) -> MessageRecord | None:
        """Set (or clear) a message's feedback, in one atomic write that also moves the
        session's ETag; None when the message does not exist."""
        ...

    async def delete_session(self, email: str, session_id: str) -> bool:
        """Delete the session and everything of it in both containers (or finish a delete that
        stopped half-way). True if there was anything to delete."""
        ...

    async def session_ids(self, email: str, *, limit: int) -> list[str]:
        """Ids of any of the caller's sessions in either container, in any state (for erasing
        everything); empty when nothing of the caller is left."""
        ...

    async def close(self) -> None: ...


class ArchiveStore(Protocol):
    async def scan_stale(
        self, *, where: Where, updated_before: datetime, limit: int, after: str | None
    ) -> tuple[list[SessionRef], str | None]:
        """One page of readable sessions (all users) not updated since ``updated_before``."""
        ...

    async def archive(self, ref: SessionRef) -> MoveOutcome:
        """Move one session to the archive if it has not changed since the scan saw it."""
        ...

    async def expire(self, ref: SessionRef) -> bool:
        """Delete an archived session if it has not changed since the scan saw it."""
        ...

    async def scan_unfinished(
        self, *, older_than: datetime, limit: int, after: str | None
    ) -> tuple[list[Unfinished], str | None]:
        """Moves and deletes that stopped half-way before ``older_than``."""
        ...

    async def finish(self, item: Unfinished) -> bool:
        """Finish (or safely undo) one interrupted move or delete; True if it did anything."""
        ...

    async def close(self) -> None: ...


class IdentityStore(Protocol):
    async def read_binding(self, email: str) -> Binding | None:
        """The account ``email`` is bound to, or None."""
        ...

    async def bind(self, binding: Binding) -> Binding:
        """Bind ``binding.email`` to ``binding.account`` unless it is bound already, in one
        create that cannot overwrite (two accounts racing for a fresh address: exactly one
        wins); returns the binding that holds now, ours or the one that was there first."""
        ...

    async def release_binding(self, email: str) -> bool:
        """Remove the address's binding; False if there was none."""
        ...

    async def rehome_session(self, old: str, new: str, session_id: str) -> RehomeOutcome:
        """Move one session of ``old`` (active or archived, with its messages, request items
        and feedback) to ``new``: copied under the new address where nobody sees it, verified,
        committed only if the source has not changed since it was copied, then made visible
        and the source removed. Safe to interrupt at any point and to call again: the next
        call finishes a committed move, and redoes one that did not commit."""
        ...

    async def rehome_pending(self, old: str) -> list[str]:
        """Sessions of ``old`` whose move committed but did not finish (their source may be
        gone already): what ``rehome_session`` must be called for again."""
        ...


class Store(ConversationStore, ArchiveStore, IdentityStore, Protocol):
    """What each store implements: every audience's protocol (``shared.storage.make_store``)."""
