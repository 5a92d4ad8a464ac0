"""What a conversation leaves in the Cosmos container, read raw with the SDK.

After conversations through the service (CosmosStore, echo model), the container holds exactly
one session item, one item per message and one per clientMessageId, every item under the
caller's email, and no item grows with the conversation: the session item is small (the
model's window is read from the message items) and each message is an item of its own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.cosmos import ContainerProxy, CosmosClient

from shared.clock import FixedClock, stored_time
from shared.config import load_settings
from shared.ids import message_item_id
from shared.llm.echo import EchoModel
from shared.models import ChatRequest
from shared.storage.cosmos import CosmosStore
from tests.support.conversations import Conversations
from tests.support.databases import ACTIVE, CosmosDatabase, cosmos_database
from tests.support.scenarios import seed
from tools.local.cosmos import CosmosAccount

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

START = datetime(2031, 7, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def database(cosmos_account: CosmosAccount) -> Iterator[CosmosDatabase]:
    with cosmos_database(cosmos_account) as db:
        yield db


@pytest.fixture(scope="module")
def container(database: CosmosDatabase) -> ContainerProxy:
    account = database.account
    client = CosmosClient(account.endpoint, account.key, **account.client_kwargs())
    return client.get_database_client(database.name).get_container_client(ACTIVE)


def converse(database: CosmosDatabase, email: str, turns: int, **env: str) -> tuple[str, list[int]]:
    """Runs ``turns`` turns in one new session; returns its id and the session item's size (in
    bytes of JSON, as stored) after each turn."""
    settings = load_settings({"MAX_HISTORY_MESSAGES": "4", **env})
    clock = FixedClock(START)

    async def main() -> tuple[str, list[int]]:
        store = database.store()
        service = Conversations(store, EchoModel(), settings, clock=clock)
        sizes: list[int] = []
        sid: str | None = None
        try:
            for turn in range(turns):
                clock.advance(seconds=1)
                request = ChatRequest.model_validate(
                    {
                        "message": f"message number {turn} " + "x" * 200,
                        "sessionId": sid,
                        "clientMessageId": f"c-{turn}",
                    }
                )
                result = await service.chat(email, request)
                sid = result.session_id
                raw = await store.conn.read("active", sid, email)  # the session item, raw
                assert raw is not None
                sizes.append(len(json.dumps(raw)))
        finally:
            await store.close()
        assert sid is not None
        return sid, sizes

    return asyncio.run(main())


def items_of(container: ContainerProxy, email: str) -> list[dict[str, Any]]:
    return list(container.query_items("SELECT * FROM c", partition_key=email))


def test_one_session_item_and_one_item_per_message(
    database: CosmosDatabase, container: ContainerProxy
) -> None:
    # The service is given the email normalised (auth lower-cases it; the HTTP e2e checks that).
    email = f"carol-{uuid.uuid4().hex[:8]}@example.com"
    sid, _ = converse(database, email, turns=5)
    everything = items_of(container, email)
    # What the user's model calls cost: one item per period, in no session (shared/usage/).
    usage = sorted((i for i in everything if i["type"] == "usage"), key=lambda i: i["id"])
    assert [(u["period"].split("-")[0], u["turns"]) for u in usage] == [("day", 5), ("month", 5)]
    assert all(u["id"] == "usage-" + u["period"] and "sessionId" not in u for u in usage)
    items = [i for i in everything if i["type"] != "usage"]
    sessions = [i for i in items if i["type"] == "session"]
    messages = sorted((i for i in items if i["type"] == "message"), key=lambda i: i["seq"])
    requests = [i for i in items if i["type"] == "request"]
    assert len(items) == 1 + 10 + 5 == len(sessions) + len(messages) + len(requests)
    assert [s["id"] for s in sessions] == [sid]
    assert [m["id"] for m in messages] == [message_item_id(sid, seq) for seq in range(1, 11)]
    assert {i["EmailID"] for i in items} == {email}
    assert all(i["sessionId"] == sid for i in items)
    assert sorted((r["clientMessageId"], r["userSeq"], r["assistantSeq"]) for r in requests) == [
        (f"c-{turn}", 2 * turn + 1, 2 * turn + 2) for turn in range(5)
    ]
    session = sessions[0]
    assert (session["messageCount"], session["lastSeq"]) == (10, 10)
    assert "state" not in session  # live: no move or delete under way
    # Text-sortable times: fixed width, microseconds, Z.
    assert len(session["updatedAt"]) == len("2031-07-01T08:00:05.000000Z")
    assert session["updatedAt"].endswith("Z")


def test_no_item_grows_with_the_conversation(
    database: CosmosDatabase, container: ContainerProxy
) -> None:
    email = f"dave-{uuid.uuid4().hex[:8]}@example.com"
    _, sizes = converse(database, email, turns=60)
    # Turn 1 and turn 60: the same size, give or take digits of counters and times; no window
    # or clientMessageIds on it, so it is small.
    assert abs(sizes[59] - sizes[0]) <= 32, (sizes[0], sizes[59])
    assert sizes[59] < 800, sizes[59]
    items = items_of(container, email)
    message_sizes = [len(json.dumps(i)) for i in items if i["type"] == "message"]
    assert len(message_sizes) == 120
    assert max(message_sizes) < 1024  # one message each, whatever came before
    session = next(i for i in items if i["type"] == "session")
    assert "context" not in session and "clientRequests" not in session


def test_listing_reads_session_items_only(database: CosmosDatabase) -> None:
    """The list query projects summary fields of session items, and agrees with a point read."""
    email = f"erin-{uuid.uuid4().hex[:8]}@example.com"
    sid, _ = converse(database, email, turns=3)

    async def main() -> None:
        store = database.store()
        try:
            [listed], _ = await store.list_sessions(email, where="active", limit=5, after=None)
            full = await store.get_session(email, sid, where="active")
        finally:
            await store.close()
        assert listed.id == sid
        assert full is not None and listed.to_summary() == full.to_summary()

    asyncio.run(main())


def test_from_settings_uses_the_key_and_bootstraps_only_locally(
    cosmos_account: CosmosAccount,
) -> None:
    if not cosmos_account.is_local:
        pytest.skip("bootstrapping is only for the local server; COSMOS_ENDPOINT names another")
    name = f"boot-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        {
            "STORAGE_BACKEND": "cosmos",
            "COSMOS_ENDPOINT": cosmos_account.endpoint,
            "COSMOS_KEY": cosmos_account.key,
            "COSMOS_VERIFY_TLS": "false",
            "COSMOS_DATABASE": name,
        }
    )

    async def main() -> None:
        store = CosmosStore.from_settings(settings)
        try:
            # Concurrent first calls: one client, the database and containers made once.
            results = await asyncio.gather(
                *(
                    store.get_session("f@example.com", "s_" + "0" * 32, where="active")
                    for _ in range(5)
                )
            )
            assert results == [None] * 5
        finally:
            await store.close()

    asyncio.run(main())
    client = CosmosClient(cosmos_account.endpoint, cosmos_account.key, connection_verify=False)
    try:
        names = {c["id"] for c in client.get_database_client(name).list_containers()}
        assert names == {"Conversations", "ConversationsArchive", "Shares", "GroupChatHistory"}
    finally:
        client.delete_database(name)


def test_the_archival_scans_offer_neither_stubs_nor_live_items_in_a_state(
    database: CosmosDatabase, container: ContainerProxy
) -> None:
    """The scans' indexed filters (docs/design.md, "Indexing") on the items moves really
    write: a stub lacks the live marker, so the stale scan never reads it, and housekeeping
    reads it only while it still cleans up; a live item a delete's fence moved to ``deleting``
    keeps the marker, yet the stale scan leaves it to housekeeping."""
    email = f"scans-{uuid.uuid4().hex[:8]}@example.com"
    old = datetime(2020, 1, 1, tzinfo=UTC)
    cutoff = datetime.now(UTC)

    async def main() -> None:
        store = database.store()
        try:
            archived = await seed(store, email, old, where="archive")
            fenced, stale = await seed(store, email, old), await seed(store, email, old)
            stub = container.read_item(archived, partition_key=email)
            assert stub["state"] == "archived" and "live" not in stub
            # What a delete's fence patch does to a live session item.
            container.patch_item(
                fenced,
                partition_key=email,
                patch_operations=[
                    {"op": "set", "path": "/state", "value": "deleting"},
                    {"op": "set", "path": "/since", "value": stored_time(old)},
                ],
            )
            assert container.read_item(fenced, partition_key=email)["live"] is True

            async def stale_ids() -> set[str]:
                refs, _ = await store.scan_stale(
                    where="active", updated_before=cutoff, limit=100, after=None
                )
                return {r.session_id for r in refs if r.email == email}

            async def unfinished() -> set[tuple[str, str, str]]:
                found: set[tuple[str, str, str]] = set()
                after: str | None = None
                while True:
                    page, after = await store.scan_unfinished(
                        older_than=cutoff, limit=100, after=after
                    )
                    found |= {(u.where, u.session_id, u.state) for u in page if u.email == email}
                    if after is None:
                        return found

            assert await stale_ids() == {stale}
            assert await unfinished() == {("active", fenced, "deleting")}
            # A stub still removing its old items is housekeeping's until it is done.
            container.patch_item(
                archived,
                partition_key=email,
                patch_operations=[
                    {"op": "set", "path": "/cleanup", "value": True},
                    {"op": "set", "path": "/since", "value": stored_time(old)},
                ],
            )
            assert await unfinished() == {
                ("active", fenced, "deleting"),
                ("active", archived, "archived"),
            }
        finally:
            await store.close()

    asyncio.run(main())
