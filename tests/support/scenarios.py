"""Helpers of the API suites (managing, data rights, search, their HTTP and command runs):
services on a store, seeding through the store in batches, store wrappers that pause or fail
at a chosen call, and what the database holds of a user.

Nothing here waits for time: a paused call waits for an event the test sets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.clock import FixedClock
from shared.config import load_settings
from shared.ids import new_session_id
from shared.llm.echo import EchoModel
from shared.models import ChatRequest, MessageRecord, SessionRecord
from shared.storage.base import MoveOutcome, SessionRef, Store, Where
from tests.support.conversations import Conversations
from tests.support.faulty import FaultyStore
from tests.support.store_state import raw_items
from tools.local.seeding import append_in_batches, new_session

START = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)


async def no_pause(_: float) -> None:
    return None


def make_service(
    store: Any, *, clock: FixedClock | None = None, model: Any = None, **env: str
) -> Conversations:
    """The service on ``store`` with the echo model, a FixedClock and no backoff pauses."""
    settings = load_settings({"AUTH_MODE": "dev", **env})
    return Conversations(
        store, model or EchoModel(), settings, clock=clock or FixedClock(START), sleep=no_pause
    )


def chat_request(message: str, session_id: str | None = None) -> ChatRequest:
    return ChatRequest.model_validate({"message": message, "sessionId": session_id})


async def seed(
    store: Store,
    email: str,
    updated_at: datetime,
    messages: int = 2,
    *,
    where: Where = "active",
) -> str:
    """A session whose last message (and updatedAt) is ``updated_at``, one second apart;
    moved to the archive when ``where`` says so."""
    session_id = new_session_id()
    records = [
        MessageRecord(
            session_id=session_id,
            seq=seq,
            role="user" if seq % 2 else "assistant",
            content=f"message {seq} of {session_id}",
            timestamp=updated_at - timedelta(seconds=messages - seq),
        )
        for seq in range(1, messages + 1)
    ]
    session = new_session(records, email=email, title="seeded")
    stored = await append_in_batches(store, session, records)
    if where == "archive":
        assert stored is not None and stored.etag
        ref = SessionRef(email, session_id, stored.updated_at, stored.etag)
        assert await store.archive(ref) is MoveOutcome.MOVED
    return session_id


async def seed_session(
    store: Store,
    email: str,
    texts: Sequence[str] | int,
    *,
    at: datetime = START,
    title: str = "seeded",
    archived: bool = False,
) -> SessionRecord:
    """A session whose messages are ``texts`` (or that many generated ones), user and assistant
    in turn, a millisecond apart from ``at``; written in batches through the store, then moved
    to the archive by the store's own ``archive`` when asked. Returns the session as stored."""
    session_id = new_session_id()
    if isinstance(texts, int):
        texts = [f"message {seq} of {session_id}" for seq in range(1, texts + 1)]
    records = [
        MessageRecord(
            session_id=session_id,
            seq=seq,
            role="user" if seq % 2 else "assistant",
            content=text,
            timestamp=at + timedelta(milliseconds=seq),
            model=None if seq % 2 else "echo",
        )
        for seq, text in enumerate(texts, start=1)
    ]
    session = new_session(records, email=email, title=title)
    stored = await append_in_batches(store, session, records)
    if archived:
        await archive(store, stored)
        moved = await store.get_session(email, session_id, where="archive")
        assert moved is not None
        return moved
    return stored


async def archive(store: Store, session: SessionRecord) -> None:
    """Move a session to the archive through the store, as the archival pass does."""
    assert session.etag is not None
    ref = SessionRef(session.email, session.id, session.updated_at, session.etag)
    assert await store.archive(ref) is MoveOutcome.MOVED


async def nothing_of(store: Store, email: str) -> bool:
    """True when the database holds no item of ``email`` in any container."""
    return await raw_items(store, email) == {"active": [], "archive": []}


def without_volatile(items: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Raw items as sorted JSON texts, for before/after comparisons of untouched data."""
    return {
        where: sorted(json.dumps(i, sort_keys=True) for i in found)
        for where, found in items.items()
    }


# ---- pausing and failing a store at a chosen call ----------------------------------------------


@dataclass
class Gate:
    """A paused call: ``reached`` is set when the call gets there, ``release`` lets it go on."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0

    async def reached_by(self, task: asyncio.Task[Any]) -> None:
        """Wait until ``task`` gets to the pause; if it ends first (it failed, or never made
        that call), say so instead of waiting for ever."""
        reached = asyncio.ensure_future(self.reached.wait())
        await asyncio.wait({reached, task}, return_when=asyncio.FIRST_COMPLETED)
        if not self.reached.is_set():
            reached.cancel()
            raise AssertionError(f"the task ended before the pause: {task.exception()!r}")


def pause_at(
    store: FaultyStore,
    method: str,
    *,
    call: int = 1,
    after: bool = False,
    when: Callable[..., bool] | None = None,
) -> Gate:
    """Pause the ``call``-th call of ``method`` (of those ``when`` accepts) before it reaches
    the real store, or after it returned when ``after``; every other call goes straight on."""
    gate = Gate()

    async def hook(real: Any, *args: Any, **kwargs: Any) -> Any:
        if when is not None and not when(*args, **kwargs):
            return await real(*args, **kwargs)
        gate.calls += 1
        if gate.calls != call:
            return await real(*args, **kwargs)
        if after:
            result = await real(*args, **kwargs)
            gate.reached.set()
            await gate.release.wait()
            return result
        gate.reached.set()
        await gate.release.wait()
        return await real(*args, **kwargs)

    store.hooks[method] = hook
    return gate


def messages_of(items: list[dict[str, Any]]) -> int:
    """How many message items raw items of one container hold (SQLite rows, Cosmos items)."""
    return sum(
        1 for item in items if item.get("table") == "messages" or item.get("type") == "message"
    )
