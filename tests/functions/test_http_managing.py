"""Renaming, feedback, message paging, export, erasure and search end to end: the real local
host (``python -m devhost``) on a real socket, httpx, the embedded store on a real file; export,
erasure and search also on the Cosmos store (the local server, or COSMOS_ENDPOINT's account).

Data that would take thousands of requests to make is seeded through the store, in this
process, into the database the host uses.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shared.storage.base import Store
from shared.storage.sqlite import SqliteStore
from tests.support.databases import cosmos_database
from tests.support.deployments import (
    HOST_ENV,
    MAX_SESSION_MESSAGES,
    Deployment,
    assert_error,
    chat,
    cosmos_env,
)
from tests.support.faulty import FAIL_ENV, run_faulty_host
from tests.support.scenarios import START, nothing_of, seed_session, without_volatile
from tests.support.store_state import raw_items
from tools.local.cosmos import CosmosAccount
from tools.local.host import RunningHost, dev_headers, run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

T = TypeVar("T")
FEEDBACK_LINE = re.compile(r"feedback_changed (\{.*\})")


@pytest.fixture(scope="module")
def sqlite_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("http-additions")
    path = folder / "c.db"
    env = {**HOST_ENV, "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(path)}
    with run_host(env, folder / "host.log") as host:
        yield Deployment("sqlite", host, env, lambda: SqliteStore(path))


def _cosmos_deployment(
    account: CosmosAccount, mode: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp(f"http-additions-{mode}")
    with cosmos_database(account) as database:
        env = cosmos_env(database, HOST_ENV)
        with run_host(env, folder / "host.log") as host:
            yield Deployment(mode, host, env, database.store)


@pytest.fixture(scope="module")
def cosmos_deployment(
    cosmos_account: CosmosAccount, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    yield from _cosmos_deployment(cosmos_account, "cosmos", tmp_path_factory)


@pytest.fixture(scope="module")
def cosmos_lagging_deployment(
    cosmos_account_lagging: CosmosAccount, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    yield from _cosmos_deployment(cosmos_account_lagging, "cosmos-lagging", tmp_path_factory)


@pytest.fixture(scope="module")
def cosmos_throttled_deployment(
    cosmos_account_throttled: CosmosAccount, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    yield from _cosmos_deployment(cosmos_account_throttled, "cosmos-throttled", tmp_path_factory)


@pytest.fixture(params=["sqlite", "cosmos", "cosmos-lagging", "cosmos-throttled"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """Each store (and the local Cosmos server's lagging and throttled modes), for what
    depends on it (export, erasure, search)."""
    name = request.param.replace("-", "_")
    found: Deployment = request.getfixturevalue(f"{name}_deployment")
    return found


def every_message(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    """A session's messages, oldest first, paged backwards through the API."""
    messages: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        params = {"limit": "200", **({"before": before} if before else {})}
        page = client.get(f"/api/sessions/{session_id}/messages", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        messages = body["messages"] + messages
        if not body["hasMore"]:
            return messages
        before = body["messages"][0]["id"]


def listed(client: httpx.Client, *, archived: bool = False) -> list[dict[str, Any]]:
    response = client.get("/api/sessions", params={"archived": str(archived).lower()})
    assert response.status_code == 200, response.text
    sessions: list[dict[str, Any]] = response.json()["sessions"]
    return sessions


# ---- rename and pin ------------------------------------------------------------------------------


def test_pin(sqlite_deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails
    with sqlite_deployment.client(alice) as client, sqlite_deployment.client(bob) as other:
        older = chat(client, "older")["sessionId"]
        newer = chat(client, "newer")["sessionId"]
        assert [s["sessionId"] for s in listed(client)] == [newer, older]
        pinned = client.patch(f"/api/sessions/{older}", json={"pinned": True})
        assert pinned.status_code == 200, pinned.text
        assert (pinned.json()["pinned"], pinned.json()["title"]) == (True, "older")
        assert [(s["sessionId"], s["pinned"]) for s in listed(client)] == [
            (older, True),
            (newer, False),
        ]
        assert client.get(f"/api/sessions/{older}").json()["pinned"] is True
        both = client.patch(f"/api/sessions/{newer}", json={"title": "Named", "pinned": True})
        assert (both.json()["title"], both.json()["pinned"]) == ("Named", True)
        for body in ({"pinned": "yes"}, {"pinned": 1}, {"pinned": None}, {"title": None}):
            assert_error(client.patch(f"/api/sessions/{older}", json=body), 400, "invalid_request")
        assert_error(
            other.patch(f"/api/sessions/{older}", json={"pinned": False}), 404, "not_found"
        )
        assert client.get(f"/api/sessions/{older}").json()["pinned"] is True


def test_rename(sqlite_deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails
    with sqlite_deployment.client(alice) as client, sqlite_deployment.client(bob) as other:
        sid = chat(client, "original words")["sessionId"]
        renamed = client.patch(f"/api/sessions/{sid}", json={"title": "  Holiday plans \t"})
        assert renamed.status_code == 200, renamed.text
        summary = renamed.json()
        assert (summary["sessionId"], summary["title"], summary["archived"]) == (
            sid,
            "Holiday plans",
            False,
        )
        assert set(summary) == {
            "sessionId",
            "title",
            "createdAt",
            "updatedAt",
            "messageCount",
            "preview",
            "archived",
            "pinned",
        }
        assert client.get(f"/api/sessions/{sid}").json()["title"] == "Holiday plans"
        assert [s["title"] for s in listed(client)] == ["Holiday plans"]

        for body in (
            {"title": ""},
            {"title": "   "},
            {"title": "x" * 101},
            {"title": "two\nlines"},
            {"title": "a\rb"},
            {"title": 5},
            {"title": None},
            {},
            ["title"],
        ):
            assert_error(client.patch(f"/api/sessions/{sid}", json=body), 400, "invalid_request")
        assert_error(
            client.patch(
                f"/api/sessions/{sid}", content=b"title=x", headers={"content-type": "text/plain"}
            ),
            415,
            "unsupported_media_type",
        )
        assert client.patch(f"/api/sessions/{sid}", json={"title": "y" * 100}).status_code == 200
        assert (
            client.patch(f"/api/sessions/{sid}", json={"title": "Holiday plans"}).status_code == 200
        )

        before = client.get(f"/api/sessions/{sid}").json()
        for target in (sid, "s_" + "0" * 32, "nope"):
            assert_error(
                other.patch(f"/api/sessions/{target}", json={"title": "mine"}), 404, "not_found"
            )
        assert client.get(f"/api/sessions/{sid}").json() == before


def test_rename_an_archived_session(sqlite_deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, _ = emails
    session = sqlite_deployment.with_store(
        lambda store: seed_session(store, alice, 4, title="archived one", archived=True)
    )
    with sqlite_deployment.client(alice) as client:
        response = client.patch(f"/api/sessions/{session.id}", json={"title": "Still archived"})
        assert response.status_code == 200, response.text
        assert (response.json()["title"], response.json()["archived"]) == ("Still archived", True)
        assert [(s["sessionId"], s["title"]) for s in listed(client, archived=True)] == [
            (session.id, "Still archived")
        ]
        assert listed(client) == []
        detail = client.get(f"/api/sessions/{session.id}").json()
        assert (detail["title"], detail["archived"], detail["messageCount"]) == (
            "Still archived",
            True,
            4,
        )


# ---- feedback ------------------------------------------------------------------------------------


def feedback_lines(host: RunningHost, session_id: str) -> list[dict[str, Any]]:
    found = []
    for line in host.log().splitlines():
        match = FEEDBACK_LINE.search(line)
        if match:
            fields = json.loads(match.group(1))
            if fields["sessionId"] == session_id:
                found.append(fields)
    return found


def test_feedback(sqlite_deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails
    comment = "Lovely answer, thank you " + uuid.uuid4().hex
    with sqlite_deployment.client(alice) as client, sqlite_deployment.client(bob) as other:
        turn = chat(client, "rate me please")
        sid = turn["sessionId"]
        user_id, answer_id = (m["id"] for m in turn["messages"])
        other_sid = chat(client, "another conversation")["sessionId"]
        url = f"/api/sessions/{sid}/messages/{answer_id}/feedback"

        rated = client.put(url, json={"rating": "up", "comment": comment})
        assert rated.status_code == 200, rated.text
        body = rated.json()
        assert (body["id"], body["role"], body["content"]) == (
            answer_id,
            "assistant",
            turn["messages"][1]["content"],
        )
        assert (body["feedback"]["rating"], body["feedback"]["comment"]) == ("up", comment)
        assert body["feedback"]["updatedAt"].endswith("Z")

        def shown() -> list[Any]:
            detail = client.get(f"/api/sessions/{sid}").json()["messages"]
            page = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
            exported = client.get("/api/export").json()
            [session] = [s for s in exported["sessions"] if s["sessionId"] == sid]
            views = [detail, page, session["messages"]]
            assert all("feedback" not in view[0] for view in views)
            return [view[1].get("feedback") for view in views]

        assert shown() == [body["feedback"]] * 3

        replaced = client.put(url, json={"rating": "down", "ignored": True})
        assert replaced.status_code == 200, replaced.text
        assert (replaced.json()["feedback"]["rating"], replaced.json()["feedback"]["comment"]) == (
            "down",
            None,
        )
        assert shown() == [replaced.json()["feedback"]] * 3

        assert client.put(url, json={"rating": "up", "comment": "z" * 2000}).status_code == 200
        for bad in (
            {"rating": "up", "comment": "z" * 2001},
            {"rating": "meh"},
            {"rating": None},
            {"comment": "no rating"},
            {"rating": "up", "comment": 5},
        ):
            assert_error(client.put(url, json=bad), 400, "invalid_request")
        user_url = f"/api/sessions/{sid}/messages/{user_id}/feedback"
        assert_error(client.put(user_url, json={"rating": "up"}), 400, "invalid_request")
        assert_error(client.delete(user_url), 400, "invalid_request")

        before = shown()
        elsewhere = [
            f"/api/sessions/{other_sid}/messages/{answer_id}/feedback",  # another session's
            f"/api/sessions/{sid}/messages/{sid}:00000099/feedback",
            f"/api/sessions/{sid}/messages/garbage/feedback",
            f"/api/sessions/{sid}/messages/{sid}:2/feedback",
            f"/api/sessions/s_{'0' * 32}/messages/s_{'0' * 32}:00000002/feedback",
        ]
        for path in elsewhere:
            assert_error(client.put(path, json={"rating": "down"}), 404, "not_found")
            assert_error(client.delete(path), 404, "not_found")
        assert_error(other.put(url, json={"rating": "down", "comment": "bob"}), 404, "not_found")
        assert_error(other.delete(url), 404, "not_found")
        assert shown() == before

        assert client.delete(url).status_code == 204
        assert shown() == [None] * 3
        cleared_again = client.delete(url)
        assert cleared_again.status_code == 204 and cleared_again.content == b""

    lines = feedback_lines(sqlite_deployment.host, sid)
    expected = {"sessionId": sid, "messageId": answer_id, "model": "echo"}
    assert lines == [{**expected, "rating": r} for r in ("up", "down", "up", None, None)]
    log = sqlite_deployment.host.log()
    assert comment not in log and "z" * 2000 not in log
    assert alice not in log and bob not in log


def test_feedback_on_an_archived_session(
    sqlite_deployment: Deployment, emails: tuple[str, str]
) -> None:
    alice, _ = emails
    session = sqlite_deployment.with_store(
        lambda store: seed_session(store, alice, 2, archived=True)
    )
    url = f"/api/sessions/{session.id}/messages/{session.id}:00000002/feedback"
    with sqlite_deployment.client(alice) as client:
        rated = client.put(url, json={"rating": "down", "comment": "stale"})
        assert rated.status_code == 200, rated.text
        detail = client.get(f"/api/sessions/{session.id}").json()
        assert detail["archived"] is True
        assert detail["messages"][1]["feedback"]["rating"] == "down"
        assert [s["sessionId"] for s in listed(client, archived=True)] == [session.id]
        assert listed(client) == []
        assert client.delete(url).status_code == 204
        assert "feedback" not in client.get(f"/api/sessions/{session.id}").json()["messages"][1]
        assert [s["sessionId"] for s in listed(client, archived=True)] == [session.id]


# ---- message paging ----------------------------------------------------------------------------


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [int(m["id"].rsplit(":", 1)[1]) for m in messages]


def test_message_paging(sqlite_deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails
    session, other = sqlite_deployment.with_store(
        lambda store: asyncio.gather(seed_session(store, alice, 12), seed_session(store, alice, 3))
    )
    sid = session.id
    url = f"/api/sessions/{sid}/messages"
    with sqlite_deployment.client(alice) as client, sqlite_deployment.client(bob) as stranger:
        detail = client.get(f"/api/sessions/{sid}").json()
        assert seqs(detail["messages"]) == list(range(12 - MAX_SESSION_MESSAGES + 1, 13))
        assert (detail["hasMoreMessages"], detail["messageCount"]) == (True, 12)
        first = client.get(url).json()  # no `before`: the newest, default limit 50
        assert (seqs(first["messages"]), first["hasMore"]) == (list(range(1, 13)), False)
        oldest_shown = detail["messages"][0]["id"]
        rest = client.get(url, params={"before": oldest_shown, "limit": "200"}).json()
        assert (seqs(rest["messages"]), rest["hasMore"]) == (list(range(1, 8)), False)
        assert client.get(url, params={"limit": "4"}).json()["hasMore"] is True
        page = client.get(url, params={"limit": "6"}).json()
        assert (seqs(page["messages"]), page["hasMore"]) == (list(range(7, 13)), True)
        page = client.get(url, params={"limit": "6", "before": page["messages"][0]["id"]}).json()
        assert (seqs(page["messages"]), page["hasMore"]) == (list(range(1, 7)), False)
        at_start = client.get(url, params={"before": f"{sid}:00000001"}).json()
        assert at_start == {"messages": [], "hasMore": False}
        assert seqs(client.get(url, params={"limit": "1"}).json()["messages"]) == [12]
        assert len(client.get(url, params={"limit": "200"}).json()["messages"]) == 12

        for limit in ("0", "201", "-1", "abc", "2.5", "1e2", "²"):
            assert_error(client.get(url, params={"limit": limit}), 400, "invalid_request")
        for before in (f"{other.id}:00000002", "garbage", f"{sid}:1"):
            assert_error(client.get(url, params={"before": before}), 404, "not_found")
        assert_error(stranger.get(url), 404, "not_found")
        assert_error(client.get("/api/sessions/nope/messages"), 404, "not_found")

        small = client.get(f"/api/sessions/{other.id}").json()
        assert (seqs(small["messages"]), small["hasMoreMessages"]) == ([1, 2, 3], False)


def test_paging_2000_messages_back_over_http(
    sqlite_deployment: Deployment, emails: tuple[str, str]
) -> None:
    alice, _ = emails
    session = sqlite_deployment.with_store(lambda store: seed_session(store, alice, 2000))
    with sqlite_deployment.client(alice) as client:
        messages = every_message(client, session.id)
        assert [m["id"] for m in messages] == [f"{session.id}:{seq:08d}" for seq in range(1, 2001)]
        assert [m["content"] for m in messages] == [
            f"message {seq} of {session.id}" for seq in range(1, 2001)
        ]
        detail = client.get(f"/api/sessions/{session.id}").json()
        assert len(detail["messages"]) == MAX_SESSION_MESSAGES and detail["hasMoreMessages"]


# ---- export --------------------------------------------------------------------------------------


def test_export_formats(sqlite_deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, _ = emails
    with sqlite_deployment.client(alice) as client:
        chat(client, 'hello, "world"')
        for export_format, media_type, extension in (
            ("json", "application/json", "json"),
            ("markdown", "application/zip", "zip"),
            ("csv", "text/csv", "csv"),
        ):
            response = client.get("/api/export", params={"format": export_format})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(media_type)
            disposition = response.headers["content-disposition"]
            assert disposition.startswith('attachment; filename="parley-export-')
            assert disposition.endswith(f'.{extension}"')
            assert response.headers["cache-control"] == "no-store"
        for bad in ("JSON", "xml", "md"):
            assert_error(client.get("/api/export", params={"format": bad}), 400, "invalid_request")


@pytest.mark.cross_instance
def test_export(deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails
    with deployment.client(alice) as client, deployment.client(bob) as other:
        rated = chat(client, "export me")
        sid = rated["sessionId"]
        chat(client, "and this too", sid)
        answer = rated["messages"][1]["id"]
        client.put(
            f"/api/sessions/{sid}/messages/{answer}/feedback",
            json={"rating": "up", "comment": "ok"},
        )
        gone = chat(client, "delete me")["sessionId"]
        assert client.delete(f"/api/sessions/{gone}").status_code == 204
        bobs = chat(other, "bob's own")["sessionId"]
        archived = deployment.with_store(
            lambda store: seed_session(store, alice, 210, at=START, archived=True)
        )

        response = client.get("/api/export")
        assert response.status_code == 200
        disposition = response.headers["content-disposition"]
        assert re.fullmatch(r'attachment; filename="parley-export-\d{8}-\d{6}\.json"', disposition)
        assert response.headers["content-type"].startswith("application/json")
        assert response.text.endswith('"complete":true}')
        document = response.json()
        assert (document["email"], document["complete"]) == (alice, True)
        by_id = {s["sessionId"]: s for s in document["sessions"]}
        assert len(by_id) == len(document["sessions"]) == 2
        assert set(by_id) == {sid, archived.id}
        assert gone not in by_id and bobs not in by_id
        assert (by_id[sid]["archived"], by_id[archived.id]["archived"]) == (False, True)
        for session_id, session in by_id.items():
            # The API's message fields, the same; the export adds what else is stored.
            api = every_message(client, session_id)
            assert [
                {k: m[k] for k in a} for m, a in zip(session["messages"], api, strict=True)
            ] == api
            assert len(session["messages"]) == session["messageCount"]
        assert by_id[sid]["messages"][1]["model"] == "echo"
        assert by_id[sid]["titleSource"] == "first-message"
        assert by_id[sid]["messages"][1]["feedback"]["comment"] == "ok"
        assert [m["content"] for m in by_id[sid]["messages"]] == [
            "export me",
            "echo[0]:\nexport me",
            "and this too",
            "echo[2]:\nand this too",
        ]
        bob_document = other.get("/api/export").json()
        assert [s["sessionId"] for s in bob_document["sessions"]] == [bobs]
        assert_error(httpx.get(deployment.host.base_url + "/api/export"), 401, "unauthenticated")


@pytest.mark.parametrize("fail", ["page_messages:4", "all_sessions:2"])
def test_an_export_cut_off_by_storage_is_never_complete(
    deployment: Deployment, emails: tuple[str, str], tmp_path: Path, fail: str
) -> None:
    alice, _ = emails

    async def prepare(store: Store) -> None:
        for i in range(60):  # more than one page of the export's session reads
            await seed_session(store, alice, 3, at=START + timedelta(seconds=i))

    env = dict(deployment.env)
    if deployment.name == "sqlite":  # a file of its own, beside the shared host's
        env["SQLITE_PATH"] = str(tmp_path / "faulty.db")
        asyncio.run(prepare(SqliteStore(tmp_path / "faulty.db")))
    else:
        deployment.with_store(prepare)
    received = bytearray()
    with (
        run_faulty_host({**env, FAIL_ENV: fail}, tmp_path / "faulty.log") as host,
        httpx.Client(base_url=host.base_url, headers=dev_headers(alice), timeout=60) as client,
        client.stream("GET", "/api/export") as response,
    ):
        assert response.status_code == 200  # the status went out before the failure
        assert response.headers["content-disposition"].startswith("attachment;")
        cut = False
        try:
            for chunk in response.iter_bytes():
                received += chunk
        except httpx.HTTPError:
            cut = True
    assert received.startswith(b'{"exportedAt"')
    assert b'"complete":' not in received  # the document's marker (a key), not a status
    with pytest.raises(ValueError):
        json.loads(received)
    assert cut or not received.rstrip().endswith(b"}")


# ---- erasure -----------------------------------------------------------------------------------


@pytest.mark.cross_instance
@pytest.mark.volume
def test_erasure_in_rounds(deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails

    async def prepare(store: Store) -> None:
        for i in range(16):  # 1,600 messages, half of them in the archive
            await seed_session(
                store, alice, 100, at=START + timedelta(minutes=i), archived=i % 2 == 1
            )
        await seed_session(store, bob, 4, archived=True)

    deployment.with_store(prepare)
    with deployment.client(alice) as client, deployment.client(bob) as other:
        chat(client, "one more, live")
        chat(other, "bob stays")
        bob_before = deployment.with_store(lambda store: raw_items(store, bob))
        bob_listed = (listed(other), listed(other, archived=True))
        rounds = 0
        while True:
            rounds += 1
            assert rounds < 200, "the erasure does not progress"
            response = client.delete("/api/sessions")
            if response.status_code == 204:
                assert response.content == b""
                break
            assert response.status_code == 202, response.text
            assert response.json() == {"remaining": True}
            assert int(response.headers["retry-after"]) >= 0
            assert response.headers["content-type"].startswith("application/json")
        assert rounds >= 3, rounds  # a budget far below one delete: many rounds
        assert deployment.with_store(lambda store: nothing_of(store, alice))
        assert listed(client) == [] and listed(client, archived=True) == []
        assert client.get("/api/export").json()["sessions"] == []
        bob_after = deployment.with_store(lambda store: raw_items(store, bob))
        assert without_volatile(bob_after) == without_volatile(bob_before)
        assert (listed(other), listed(other, archived=True)) == bob_listed
        assert client.delete("/api/sessions").status_code == 204  # nothing left: done at once
        assert_error(
            httpx.delete(deployment.host.base_url + "/api/sessions"), 401, "unauthenticated"
        )


# ---- search --------------------------------------------------------------------------------------

# Phrases with characters that mean something in a URL, in SQL, in Cosmos SQL or in FTS5; each
# in one message, with decoys that an interpreting search would find instead.
PHRASES = {
    "50% off": "prices 50% off now",
    "a+b": "the sum a+b here",
    "x&y=z": "query x&y=z string",
    "#hashtag": "tagged #hashtag post",
    "why?": "but why? said she",
    "a/b/c": "the path a/b/c exists",
    "C:\\temp": "saved in C:\\temp folder",
    "' OR 1=1 --": "sneaky ' OR 1=1 -- text",
    '"quoted phrase"': 'she said "quoted phrase" loudly',
    "NEAR(cat dog)": "fts NEAR(cat dog) syntax",
    "ÉCOLE": "à l'école demain",
    "東京": "東京 trip",
}
SEARCH_DECOYS = ["prices 50 percent off", "a b sum", "cat and dog", "quoted phrase bare", "ab"]
NO_WORDS = ["🎉🎉", "_%", "?!"]  # nothing to look up: 400


def words(text: str) -> set[str]:
    """What a search matches by: runs of letters and digits (docs/design.md,
    "Search, export, erasure")."""
    return set(re.findall(r"[^\W_]+", text.lower()))


def found(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    return {
        r["sessionId"]: [m["messageId"] for m in r["matches"]] for r in response.json()["results"]
    }


@pytest.mark.cross_instance
def test_search(deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails

    async def prepare(store: Store) -> dict[str, str]:
        made = {}
        for index, text in enumerate([*PHRASES.values(), *SEARCH_DECOYS]):
            session = await seed_session(
                store, alice, [text, "fine"], at=START + timedelta(seconds=index), title=f"n{index}"
            )
            made[text] = session.id
        made["archived"] = (
            await seed_session(store, alice, ["an archived kiwi", "fine"], archived=True)
        ).id
        made["bob"] = (await seed_session(store, bob, ["bob's kiwi", "fine"])).id
        return made

    made = deployment.with_store(prepare)
    with deployment.client(alice) as client, deployment.client(bob) as other:
        texts = [*PHRASES.values(), *SEARCH_DECOYS]
        for q, text in PHRASES.items():
            sid = made[text]
            response = client.get("/api/search", params={"q": q})
            # Every text holding all of the phrase's words, whatever else it holds.
            want = {made[t]: [f"{made[t]}:00000001"] for t in texts if words(q) <= words(t)}
            assert found(response) == want and sid in want, q
            result = next(r for r in response.json()["results"] if r["sessionId"] == sid)
            assert (result["title"], result["archived"]) == (f"n{list(made).index(text)}", False)
            assert result["matches"][0]["role"] == "user"
            assert min(words(q)) in result["matches"][0]["snippet"].lower()
        for q in NO_WORDS:
            assert client.get("/api/search", params={"q": q}).status_code == 400, q

        kiwi = chat(client, "a live kiwi")["sessionId"]
        assert set(found(client.get("/api/search", params={"q": "KIWI"}))) == {kiwi}
        archived = client.get("/api/search", params={"q": "kiwi", "archived": "true"})
        assert found(archived) == {made["archived"]: [f"{made['archived']}:00000001"]}
        assert archived.json()["results"][0]["archived"] is True
        # Both in one list, and by relevance with a score (absent otherwise).
        everywhere = client.get(
            "/api/search", params={"q": "kiwi", "archived": "all", "order": "relevance"}
        )
        assert set(found(everywhere)) == {kiwi, made["archived"]}
        scores = [r["score"] for r in everywhere.json()["results"]]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 1, scores
        assert "score" not in archived.json()["results"][0]
        for bad in ({"archived": "both"}, {"order": "best"}):
            response = client.get("/api/search", params={"q": "kiwi", **bad})
            assert response.status_code == 400, bad
        assert set(found(other.get("/api/search", params={"q": "kiwi"}))) == {made["bob"]}
        assert client.delete(f"/api/sessions/{kiwi}").status_code == 204
        assert found(client.get("/api/search", params={"q": "kiwi"})) == {}

        # Pages, newest first, with tokens bound to the caller and the query.
        pages: list[str] = []
        params = {"q": "fine", "limit": "4"}
        token = None
        first_token = None
        while True:
            response = client.get(
                "/api/search", params={**params, **({"continuationToken": token} if token else {})}
            )
            assert response.status_code == 200, response.text
            pages += [r["sessionId"] for r in response.json()["results"]]
            token = response.json()["continuationToken"]
            first_token = first_token or token
            if token is None:
                break
        ordered = [made[t] for t in [*PHRASES.values(), *SEARCH_DECOYS]][::-1]
        assert pages == ordered
        assert first_token is not None
        for client_, q in ((other, "fine"), (client, "fines"), (client, "FINE")):
            assert_error(
                client_.get(
                    "/api/search", params={"q": q, "limit": "4", "continuationToken": first_token}
                ),
                400,
                "invalid_request",
            )

        for bad in (
            {},
            {"q": ""},
            {"q": "a"},
            {"q": " b "},
            {"q": "x" * 201},
            {"q": "ok", "limit": "0"},
            {"q": "ok", "limit": "51"},
            {"q": "ok", "archived": "maybe"},
            {"q": "ok", "continuationToken": "garbage"},
        ):
            assert_error(client.get("/api/search", params=bad), 400, "invalid_request")
        assert client.get("/api/search", params={"q": "x" * 200}).status_code == 200
        assert_error(
            httpx.get(deployment.host.base_url + "/api/search?q=kiwi"), 401, "unauthenticated"
        )
