"""A user's data, read raw: an export holds all of it, an erasure leaves nothing of it.

docs/privacy.md promises both. Through the service (echo model), a user gets a live session with
retried turns (request items), a rating and a user-set title, and an archived one (on Cosmos, a
stub in the active container and the session in the archive); another user gets a session too.
Then, on every store:

- the export parses, ends with ``"complete": true`` and holds every session and message, and
  what the user's model calls cost (usage records);
- after ``DELETE /api/sessions``'s erasure, nothing with the user's partition key is left in
  either container (Cosmos: every item, read raw with a query of the whole partition; SQLite:
  every row of every table, the full-text index included), and the other user's data is whole.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.clock import FixedClock
from shared.config import load_settings
from shared.export import export_document
from shared.llm.echo import EchoModel
from shared.models import ChatRequest, FeedbackRequest, RegenerateRequest
from shared.storage.base import WHERES, SessionRef, Store
from shared.storage.cosmos import CosmosStore
from shared.storage.sqlite import SqliteStore
from tests.support.conversations import Conversations
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

START = datetime(2031, 7, 1, 8, 0, tzinfo=UTC)


async def raw_items(store: Store, email: str) -> list[Any]:
    """Everything stored under ``email``, read past the store's own API."""
    if isinstance(store, CosmosStore):
        found: list[Any] = []
        for where in WHERES:
            found += await store.conn.query(where, "SELECT * FROM c", [], email=email)
        return found
    assert isinstance(store, SqliteStore)
    with sqlite3.connect(store._path) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if "email" in {row[1] for row in conn.execute(f"PRAGMA table_info('{name}')")}
        ]
        assert {"sessions", "messages", "requests", "message_search"} <= set(tables)
        return [
            (table, *row)
            for table in tables
            for row in conn.execute(f"SELECT * FROM '{table}' WHERE email = ?", (email,))
        ]


async def seed(service: Conversations, clock: FixedClock, alice: str, bob: str) -> int:
    """Alice's two sessions (one archived) and Bob's one; returns Alice's message count."""
    store = service.store
    first = await service.chat(alice, ChatRequest(message="hello", clientMessageId="c-1"))
    sid = first.session_id
    clock.advance(seconds=1)
    await service.chat(alice, ChatRequest(message="again", sessionId=sid, clientMessageId="c-2"))
    # A retry stores nothing twice.
    await service.chat(alice, ChatRequest(message="again", sessionId=sid, clientMessageId="c-2"))
    await service.set_feedback(
        alice, sid, first.assistant.id, FeedbackRequest(rating="up", comment="useful")
    )
    await service.rename(alice, sid, "My title")
    # A regenerated answer: the one it replaced is kept as an earlier version.
    await service.regenerate(alice, sid, RegenerateRequest())
    clock.advance(seconds=1)
    other = await service.chat(alice, ChatRequest(message="to be archived"))
    record = await store.get_session(alice, other.session_id, where="active")
    assert record is not None and record.etag is not None
    ref = SessionRef(alice, record.id, record.updated_at, record.etag)
    assert (await store.archive(ref)).value == "moved"
    await service.chat(bob, ChatRequest(message="bob's own", clientMessageId="b-1"))
    return 6


def test_an_export_holds_everything_and_an_erasure_leaves_nothing(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(START)
        service = Conversations(store, EchoModel(), load_settings({}), clock=clock)
        messages = await seed(service, clock, alice, bob)
        stored = await raw_items(store, alice)
        if isinstance(store, CosmosStore):
            # Both containers hold items of hers: the archived session and its stub.
            sessions = [item for item in stored if item["type"] == "session"]
            assert sorted(item.get("state", "live") for item in sessions) == [
                "archived",
                "live",
                "live",
            ]
            assert {item["type"] for item in stored} == {
                "session",
                "message",
                "version",
                "request",
                "usage",
            }
        else:
            assert {row[0] for row in stored} >= {
                "sessions",
                "messages",
                "message_versions",
                "requests",
                "usage",
            }
            assert any(row[0] == "message_search" for row in stored)
        bob_before = sorted(map(repr, await raw_items(store, bob)))

        pieces = [piece async for piece in export_document(store, alice, now=clock.now())]
        document = json.loads("".join(pieces))
        assert document["complete"] is True and document["email"] == alice
        assert sorted(s["archived"] for s in document["sessions"]) == [False, True]
        assert sum(len(s["messages"]) for s in document["sessions"]) == messages
        rated = [m for s in document["sessions"] for m in s["messages"] if "feedback" in m]
        assert [m["feedback"]["comment"] for m in rated] == ["useful"]
        earlier = [
            v
            for s in document["sessions"]
            for m in s["messages"]
            for v in m.get("earlierVersions", [])
        ]
        assert [v["content"] for v in earlier] == ["echo[2]:\nagain"]
        # What her model calls cost is hers too: the day and the month, her four answers.
        assert [(u["period"], u["turns"]) for u in document["usage"]] == [
            ("day-2031-07-01", 4),
            ("month-2031-07", 4),
        ]

        while not await service.erase_everything(alice, budget_s=30):
            pass
        assert await raw_items(store, alice) == []
        assert sorted(map(repr, await raw_items(store, bob))) == bob_before

    run(scenario)
