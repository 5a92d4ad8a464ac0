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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple, Protocol

from pydantic import BaseModel

from shared.auth.claims import Account
from shared.groups.models import GroupMessageRecord, GroupRecord, GroupRequestRecord
from shared.models import (
    ContextMessage,
    Feedback,
    MessageRecord,
    RequestRecord,
    SessionRecord,
    ShareRecord,
    ShareView,
    ViewedShare,
)

Where = Literal["active", "archive"]
WHERES: tuple[Where, Where] = ("active", "archive")

MAX_BATCH_OPERATIONS = 100  # Cosmos' limit for one transactional batch; SQLite follows it too


def other(where: Where) -> Where:
    return "archive" if where == "active" else "active"


@dataclass(frozen=True)
class Spent:
    """Tokens (and answered turns) of one user in one period, or of one model call: what a
    store keeps per period (``shared/usage/`` holds the rules that read and add it)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, those the model's prompt cache served
    turns: int = 0

    @property
    def tokens(self) -> int:
        """What budgets count: prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.turns + other.turns,
        )


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


class Checkpoint(enum.Enum):
    """What writing a streaming answer's text so far (``checkpoint_answer``) found."""

    WRITTEN = "written"  # stored: the answer goes on
    STOPPED = "stopped"  # nothing written: a stop was asked for (``request_stop``)
    GONE = "gone"  # nothing written: not streaming any more here (finished, deleted, moved)


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
    where: Where = "archive"  # the container the scan found it in (retention scans both)


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


class MatchedSession(NamedTuple):
    """One session a search's index lookup found: what orders it, and which of its messages
    matched. Found once, on a search's first page, and carried to the next pages in the page
    token (``shared.search_state``), so no later page looks the words up again."""

    session_id: str
    updated_at: str  # ``stored_time``: the newest-first order
    score: int  # ``shared.search.relevance``
    seqs: list[int]  # its first matching messages, in order (at most the hits per session)


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

    async def checkpoint_answer(
        self, email: str, session_id: str, seq: int, content: str | None, *, at: datetime
    ) -> Checkpoint:
        """Write an answer's text so far (``None``: unchanged, only the time) and ``at``, its
        checkpoint time, into its message item in the active container, in one conditional
        write of that item alone, applied only while the message is ``"streaming"`` and no stop
        was asked for. Nothing is written otherwise: ``STOPPED`` when a stop was asked for,
        ``GONE`` when it no longer streams here (finished, deleted or moved). It does not move
        the session's ETag: the one exception to the rule above, safe because the answer's
        final write (``finish_answer``) is fenced and carries the whole text
        (``docs/design.md``, "Streaming checkpoints")."""
        ...

    async def request_stop(self, email: str, session_id: str, seq: int) -> bool:
        """Mark a ``"streaming"`` answer of the active container as to be stopped, with one
        conditional write of its message item alone (the session's ETag is left alone, as by a
        checkpoint); False (nothing written) when it is not streaming there."""
        ...

    async def finish_answer(
        self, session: SessionRecord, message: MessageRecord, *, expected_etag: str
    ) -> SessionRecord:
        """Atomically replace an existing answer's item with ``message`` (its final text and
        status) and write ``session``, only if the session's ETag still matches; else
        ``ConcurrencyConflict`` and nothing is written."""
        ...

    async def replace_answer(
        self,
        session: SessionRecord,
        answer: MessageRecord,
        previous: MessageRecord,
        *,
        expected_etag: str,
        request: RequestRecord | None = None,
    ) -> SessionRecord:
        """A regenerate's write, as atomic as ``append``: keep ``previous`` (the message at
        ``answer.seq`` as it is now) as its earlier version number ``previous.versions or 1``,
        replace the message with ``answer``, write ``session`` only if its ETag still matches,
        and create ``request``. ``ConcurrencyConflict`` when another writer got there first,
        ``DuplicateRequest`` when ``request`` is recorded already; nothing is written then.
        Earlier versions live with their session: moved, copied, exported and deleted with it."""
        ...

    async def message_versions(
        self, email: str, session_id: str, seq: int, *, where: Where, count: int
    ) -> list[MessageRecord]:
        """The earlier versions of a message (numbers 1 to ``count - 1``) that are stored in
        ``where``, oldest first."""
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

    async def search_matches(
        self, email: str, phrase: str, *, where: Where, hits_per_session: int
    ) -> list[MatchedSession]:
        """The index lookup of a search: the caller's readable sessions whose title or messages
        hold every word of ``phrase`` (``shared.search``), each with its score and first
        ``hits_per_session`` matching messages, reading at most ``SEARCH_SCAN_LIMIT``
        matching messages. Its cost follows the matches, never the rest of the history."""
        ...

    async def search_page(
        self, email: str, *, where: Where, matches: list[MatchedSession]
    ) -> list[tuple[SessionRecord, list[SearchHit]]]:
        """The sessions of ``matches`` readable here now (any other is left out), each with
        its messages of ``seqs`` (any no longer there left out): one page of a search, read by
        id, whatever the history around it."""
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

    async def import_session(self, session: SessionRecord, messages: list[MessageRecord]) -> bool:
        """Create an imported session with all of its messages, whole or not at all as readers
        see it: nothing of it is listed, read, searched or exported until every message is
        stored. False (and nothing written) when a session of that id exists already, in
        either container (a re-import); an import that stopped half-way is finished."""
        ...

    async def session_ids(self, email: str, *, limit: int) -> list[str]:
        """Ids of any of the caller's sessions in either container, in any state (for erasing
        everything); empty when nothing of the caller is left."""
        ...

    # ---- token usage (shared/usage/) -------------------------------------------------------

    async def add_usage(self, email: str, periods: Sequence[str], spent: Spent) -> None:
        """Add ``spent`` to each of the caller's ``periods`` (``shared.usage.period_key``),
        creating a period's record at its first use. Each period's record is changed by one
        atomic increment: concurrent adds are all counted, none is lost."""
        ...

    async def read_usage(
        self, email: str, periods: Sequence[str] | None = None
    ) -> dict[str, Spent]:
        """The caller's totals for ``periods`` (every period recorded, when None), by period;
        a period with nothing recorded is absent."""
        ...

    async def clear_usage(self, email: str) -> int:
        """Delete every usage record of the caller (erasure; an operator's reset); how many
        there were."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ArchiveRun:
    """What the store keeps of one archival pass, for the operators' report: counts and a
    time, never a user (shared/archive/sweep.py records it; shared/report/ reads it)."""

    run_id: str
    at: datetime
    moved: int
    failed: int


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
        """Delete a session (everything of it, in both containers) if it has not changed in
        ``ref.where`` since the scan saw it: retention, for active and archived sessions."""
        ...

    async def scan_unfinished(
        self, *, older_than: datetime, limit: int, after: str | None
    ) -> tuple[list[Unfinished], str | None]:
        """Moves and deletes that stopped half-way before ``older_than``."""
        ...

    async def finish(self, item: Unfinished) -> bool:
        """Finish (or safely undo) one interrupted move or delete; True if it did anything."""
        ...

    async def record_archive_run(self, run: ArchiveRun) -> None:
        """Keep one pass's counts where no user's data is (the report reads them in pages)."""
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


class ShareStore(Protocol):
    """Shares (``shared/sharing.py``): snapshots readable by id, an index of them in the
    owner's data, a bounded view log per share and, in each viewer's data, the shares they
    viewed. The store keeps records; expiry and admission are the rules' (a store may keep an
    expired share until its time-to-live removes it)."""

    async def create_share(self, share: ShareRecord, messages: list[MessageRecord]) -> None:
        """Store the share and its messages; readable (``get_share``) only once all of it is
        stored, so a share interrupted half-way is never read."""
        ...

    async def get_share(self, share_id: str) -> ShareRecord | None:
        """The share if it exists and is whole; None otherwise. A plain read: on another
        instance it may lag a revocation a moment, so only a refusal is decided by it."""
        ...

    async def open_share(
        self, share: ShareRecord, viewer: str | None, at: datetime
    ) -> ShareRecord | None:
        """Confirm the share by a write, which every instance sees against the latest state
        (a revoked share is None here at once, wherever it was revoked), and return it as it
        is now. With a ``viewer`` (never the owner) the view is logged in the same step: the
        share's count goes up, its log keeps the newest ``MAX_SHARE_VIEWS``, and the viewer's
        own data notes the share."""
        ...

    async def share_messages(
        self, share_id: str, *, after_seq: int, limit: int
    ) -> tuple[list[MessageRecord], bool]:
        """Up to ``limit`` messages of the share after ``after_seq``, oldest first, and whether
        more follow."""
        ...

    async def list_shares(
        self, email: str, *, limit: int, after: str | None
    ) -> tuple[list[ShareRecord], str | None]:
        """The owner's whole shares, newest first, from the index in the owner's data (one
        partition); index entries whose share is gone are cleaned up as they are met."""
        ...

    async def owned_share_ids(self, email: str, *, limit: int) -> list[str]:
        """Ids of up to ``limit`` shares the owner has, whole or not (one interrupted while it
        was made included): what an erasure revokes."""
        ...

    async def delete_share(self, email: str, share_id: str) -> bool:
        """Revoke the owner's share: unreadable when this returns, then its messages, view log
        and index entry go. True if the owner had it."""
        ...

    async def share_views(self, share_id: str) -> list[ShareView]:
        """The share's view log, in any order."""
        ...

    async def viewed_shares(self, email: str) -> list[ViewedShare]:
        """The shares ``email`` viewed (their export, their erasure)."""
        ...

    async def forget_viewer(self, email: str) -> None:
        """Remove ``email`` from every view log they appear in, and their note of them."""
        ...


MAX_SHARE_VIEWS = 1000  # views kept per share: the newest


class GroupStore(Protocol):
    """Group conversations (``shared/groups``): each group's item, messages and request records
    together (on Cosmos one partition of the groups container, ``/groupId``), and in each
    member's own data an index entry per group. The group item is the truth of membership;
    index entries are only where to look (the rules repair ones that disagree)."""

    async def create_group(self, group: GroupRecord) -> GroupRecord:
        """Create the group item (``ConcurrencyConflict`` if the id exists); returns it with
        its ETag."""
        ...

    async def read_group(self, group_id: str, *, latest: bool = False) -> GroupRecord | None:
        """The group, or None when it does not exist or is being deleted. ``latest``: a read
        that sees every write acknowledged anywhere (before the rules act on an absence)."""
        ...

    async def write_group(
        self,
        group: GroupRecord,
        *,
        expected_etag: str,
        messages: Sequence[GroupMessageRecord] = (),
        rewrite: Sequence[GroupMessageRecord] = (),
        request: GroupRequestRecord | None = None,
    ) -> GroupRecord:
        """Atomically create ``messages``, replace the ``rewrite`` messages (they must exist),
        create (or, with ``assistant_seq``, update) ``request``, and replace the group item if
        its ETag is still ``expected_etag``. ``ConcurrencyConflict`` when another writer got
        there first (nothing written), ``DuplicateRequest`` when a new ``request`` is already
        recorded. At most ``MAX_BATCH_OPERATIONS - 2`` messages in all. Returns the group with
        its new ETag."""
        ...

    async def delete_group(self, group_id: str, *, expected_etag: str | None) -> bool:
        """Delete the group and everything of it. Unreadable from the first step (the group
        item is marked first, if-match ``expected_etag`` when given, else unconditionally);
        an interrupted delete is finished by the next call that meets the group. False when
        the ETag no longer matched (nothing deleted)."""
        ...

    async def group_messages(
        self,
        group_id: str,
        *,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[GroupMessageRecord], bool]:
        """Up to ``limit`` messages, oldest first: the newest before ``before_seq`` (or the
        newest of all), or the oldest after ``after_seq``; and whether more lie beyond the
        page in that direction. One indexed query."""
        ...

    async def messages_of_sender(
        self, group_id: str, email: str, *, limit: int
    ) -> list[GroupMessageRecord]:
        """Up to ``limit`` not yet removed messages ``email`` sent to the group (erasure)."""
        ...

    async def get_group_request(self, group_id: str, key: str) -> GroupRequestRecord | None: ...

    async def put_group_ref(self, email: str, group_id: str) -> None:
        """Note in ``email``'s own data that they belong to the group (idempotent)."""
        ...

    async def drop_group_ref(self, email: str, group_id: str) -> None:
        """Remove that note (idempotent)."""
        ...

    async def group_ref_ids(self, email: str, *, limit: int) -> list[str]:
        """The groups ``email``'s index names, at most ``limit``, any order: one
        single-partition read of their own data."""
        ...


@dataclass(frozen=True)
class UsageDay:
    """One user's totals for one UTC day, without the user (``shared.report`` counts, never
    names): ``period`` is ``day-YYYY-MM-DD``."""

    period: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    turns: int


@dataclass(frozen=True)
class AnswerFacts:
    """What the report needs of one stored answer: never its text, its session or its user."""

    model: str | None
    prompt_tokens: int
    completion_tokens: int
    rating: str | None  # "up", "down", or None (not rated)
    # Milliseconds the model took (stored with the answer; None on answers stored before).
    first_token_ms: int | None = None
    total_ms: int | None = None


class AnalyticsStore(Protocol):
    """Cross-user scans for the operators' report (``python -m shared.report``), one page at a
    time: memory is bounded by a page, whatever the store holds. ``after`` is the previous
    page's token (None: the first page); a None token back means there is no more."""

    async def scan_usage_days(
        self, first_day: str, last_day: str, *, limit: int, after: str | None
    ) -> tuple[list[UsageDay], str | None]:
        """Every user's day totals for periods ``first_day``..``last_day`` (inclusive)."""
        ...

    async def scan_answers(
        self, since: datetime, *, where: Where, limit: int, after: str | None
    ) -> tuple[list[AnswerFacts], str | None]:
        """Every assistant message stored at or after ``since`` in ``where``."""
        ...

    async def scan_archive_runs(
        self, since: datetime, *, limit: int, after: str | None
    ) -> tuple[list[ArchiveRun], str | None]:
        """Every archival pass recorded at or after ``since``."""
        ...


class Store(
    ConversationStore, ArchiveStore, IdentityStore, ShareStore, GroupStore, AnalyticsStore, Protocol
):
    """What each store implements: every audience's protocol (``shared.storage.make_store``)."""
