"""Importing a ChatGPT data export and a Parley export, on every store (``openapi.yaml``: POST
/api/import; ``shared/importer/``), with the sample export in ``tests/data`` (written for
these tests in ChatGPT's documented ``conversations.json`` shape: a branched tree, a hidden
system message, a tool message, an image attachment, and a broken conversation)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidRequest, NotFound, StorageUnavailable
from shared.importer import CHATGPT_FILE, import_session_id
from shared.models import FeedbackRequest
from shared.storage.base import Store
from shared.storage.cosmos import CosmosStore
from tests.support.conversations import Conversations
from tests.support.scenarios import START, chat_request, make_service, seed_session
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "chatgpt-conversations.json"
T = 1717200000.0


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T + seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


async def everything(svc: Conversations, email: str) -> list[dict[str, Any]]:
    text = "".join([piece async for piece in svc.export_json(email, now=START)])
    sessions: list[dict[str, Any]] = json.loads(text)["sessions"]
    return sessions


def test_a_chatgpt_export_imports_the_current_branch_once(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        data = SAMPLE.read_bytes()
        report = await svc.import_conversations(alice, data, "application/json")
        lisbon = import_session_id(alice, "chatgpt", "c0ffee00-0000-4000-8000-000000000001")
        sums = import_session_id(alice, "chatgpt", "c0ffee00-0000-4000-8000-000000000002")
        assert (report.imported, report.skipped, report.left_out) == (2, 0, 2)
        assert report.sessions == [lisbon, sums]
        assert [(f.title, f.reason) for f in report.failed] == [
            ("Broken one", "the message tree names a missing node 'missing'")
        ]
        detail = await svc.get_session(alice, lisbon)
        assert detail.title == "Lisbon trip"
        assert [(m.role, m.content, m.timestamp) for m in detail.messages] == [
            ("user", "Plan a trip to Lisbon, please.", at(10)),
            ("assistant", "Sure: how many days?", at(20)),
            ("user", "[attachment: image]\nFive days, and here is a photo.", at(50)),
            ("assistant", "Five days in Lisbon: day one, Alfama.", at(60)),
        ]
        assert (detail.created_at, detail.updated_at, detail.preview) == (
            at(0),
            at(60),
            "Plan a trip to Lisbon, please.",
        )
        listed = await svc.list_sessions(alice, limit=10, continuation=None, archived=False)
        assert [s.session_id for s in listed.sessions] == [sums, lisbon]  # newest first
        # It continues like any conversation.
        turn = await svc.chat(alice, chat_request("And day two?", lisbon))
        assert turn.assistant.content == "echo[4]:\nAnd day two?"

        # Again, as JSON and as the export's zip: nothing new, nothing changed.
        before = await everything(svc, alice)
        for body, media_type in (
            (data, "application/json"),
            (zipped(f"export-2024/{CHATGPT_FILE}", data), "application/zip"),
        ):
            again = await svc.import_conversations(alice, body, media_type)
            assert (again.imported, again.skipped, len(again.failed)) == (0, 2, 1)
            assert again.sessions == []
        assert await everything(svc, alice) == before
        # Another user's import of the same file is theirs, with ids of their own.
        theirs = await svc.import_conversations(bob, data, "application/json")
        assert theirs.imported == 2 and not set(theirs.sessions) & {lisbon, sums}

    run(scenario)


@pytest.mark.parametrize(
    ("body", "media_type", "says"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b'{"hello": "world"}', "application/json", "neither a ChatGPT export"),
        (b'"text"', "application/json", "neither a ChatGPT export"),
        (b"PK\x03\x04 broken", "application/zip", "not a readable zip"),
        (zipped("notes.txt", b"hi"), "application/zip", "holds no conversations.json"),
        (b'{"sessions": [], "email": "a@b.c"}', "application/json", "incomplete"),
    ],
    ids=["not-json", "an-object", "a-string", "bad-zip", "zip-without", "parley-incomplete"],
)
def test_a_malformed_file_is_refused_with_what_is_wrong(
    run: Runner[None], emails: tuple[str, str], body: bytes, media_type: str, says: str
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        with pytest.raises(InvalidRequest, match=says):
            await svc.import_conversations(alice, body, media_type)
        assert await everything(svc, alice) == []

    run(scenario)


def comparable(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What must survive a round trip: everything but ids, where it is stored (an imported
    conversation is active), and what only a turn records (its request id, model, tokens)."""
    kept = []
    for session in sessions:
        session = {k: v for k, v in session.items() if k not in ("sessionId", "archived")}
        session["messages"] = [
            {k: v for k, v in m.items() if k in ("role", "content", "timestamp", "feedback")}
            for m in session["messages"]
        ]
        kept.append(session)
    return sorted(kept, key=lambda s: (s["updatedAt"], s["title"]))


def test_a_parley_export_round_trips(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        rated = await svc.chat(alice, chat_request('Rate this, "please" \u2014 ünïcode'))
        await svc.set_feedback(
            alice,
            rated.session_id,
            rated.assistant.id,
            FeedbackRequest.model_validate({"rating": "up", "comment": "good"}),
        )
        await svc.update_session(alice, rated.session_id, title="Renamed", pinned=True)
        await seed_session(store, alice, 250, title="long and archived", archived=True)
        await seed_session(store, alice, ["short", "answer"], title="short")
        exported = "".join([p async for p in svc.export_json(alice, now=START)])
        before = comparable(json.loads(exported)["sessions"])
        assert len(before) == 3
        assert await svc.erase_everything(alice, budget_s=60)
        assert await everything(svc, alice) == []

        report = await svc.import_conversations(alice, exported.encode(), "application/json")
        assert (report.imported, report.skipped, report.failed) == (3, 0, [])
        assert comparable(await everything(svc, alice)) == before
        again = await svc.import_conversations(alice, exported.encode(), "application/json")
        assert (again.imported, again.skipped) == (0, 3)

    run(scenario)


def test_a_large_conversation_is_never_visible_half_imported(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    """Cosmos: a conversation larger than one batch goes in size-cut batches under a session
    item no reader shows; stopped after its second batch, nothing of it is listed, read,
    searched or exported; the same import again finishes it, whole. (SQLite writes each
    conversation in one transaction.)"""
    alice, _ = emails

    async def scenario(store: Store) -> None:
        if not isinstance(store, CosmosStore):
            pytest.skip("SQLite imports each conversation in one transaction")
        svc = make_service(store)
        body = [
            {
                "title": "Huge",
                "create_time": T,
                "update_time": T + 400,
                "conversation_id": "huge-1",
                "current_node": "n399",
                "mapping": {
                    f"n{i}": {
                        "id": f"n{i}",
                        "parent": f"n{i - 1}" if i else None,
                        "children": [f"n{i + 1}"] if i < 399 else [],
                        "message": {
                            "author": {"role": "user" if i % 2 == 0 else "assistant"},
                            "create_time": T + i,
                            "content": {"content_type": "text", "parts": [f"{i} " + "x" * 20_000]},
                        },
                    }
                    for i in range(400)
                },
            }
        ]
        data = json.dumps(body).encode()
        real_batch = store.conn.batch
        calls = 0

        async def failing_batch(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 4:  # the item, two batches of messages, then the store fails once
                raise StorageUnavailable()
            return await real_batch(*args, **kwargs)

        store.conn.batch = failing_batch  # type: ignore[method-assign]
        with pytest.raises(StorageUnavailable):
            await svc.import_conversations(alice, data, "application/json")
        sid = import_session_id(alice, "chatgpt", "huge-1")
        listed = await svc.list_sessions(alice, limit=10, continuation=None, archived=False)
        assert listed.sessions == []
        assert await everything(svc, alice) == []
        found = await svc.search(alice, "399 xxx", limit=10, continuation=None, archived=False)
        assert found.results == []
        with pytest.raises(NotFound):
            await svc.get_session(alice, sid)

        report = await svc.import_conversations(alice, data, "application/json")
        assert (report.imported, report.sessions) == (1, [sid])
        [exported] = await everything(svc, alice)
        assert exported["messageCount"] == 400 and len(exported["messages"]) == 400
        assert calls > 8  # the item, messages in several batches, the item again

    run(scenario)


def test_an_import_cut_off_half_way_is_erased_with_everything_else(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    """Cosmos: what an import left half-way (its hidden session item and some messages) goes
    with an erasure, like everything else of the user."""
    alice, _ = emails

    async def scenario(store: Store) -> None:
        if not isinstance(store, CosmosStore):
            pytest.skip("SQLite imports each conversation in one transaction")
        svc = make_service(store)
        exported = {
            "exportedAt": "2031-06-01T09:00:00.000Z",
            "email": alice,
            "complete": True,
            "sessions": [
                {
                    "sessionId": "s_" + "1" * 32,
                    "title": "Cut off",
                    "createdAt": "2031-06-01T09:00:00.000Z",
                    "updatedAt": "2031-06-01T09:00:00.150Z",
                    "messages": [
                        {
                            "role": "user" if i % 2 == 0 else "assistant",
                            "content": f"message {i}",
                            "timestamp": "2031-06-01T09:00:00.000Z",
                        }
                        for i in range(150)
                    ],
                }
            ],
        }
        real_batch = store.conn.batch
        calls = 0

        async def failing_batch(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 3:  # the hidden item and one batch of messages are in
                raise StorageUnavailable()
            return await real_batch(*args, **kwargs)

        store.conn.batch = failing_batch  # type: ignore[method-assign]
        with pytest.raises(StorageUnavailable):
            await svc.import_conversations(alice, json.dumps(exported).encode(), "application/json")
        store.conn.batch = real_batch  # type: ignore[method-assign]
        assert await store.session_ids(alice, limit=10) != []  # something was left, hidden
        assert await svc.erase_everything(alice, budget_s=60)
        assert await store.session_ids(alice, limit=10) == []
        assert await store.usage(alice) == (0, 0)

    run(scenario)
