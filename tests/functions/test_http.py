"""The walking skeleton end to end: the real local host on a real socket, a real HTTP client,
the embedded store on a real file, the echo model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.deployments import chat
from tools.local.host import RunningHost, dev_headers, run_host

ALICE = dev_headers("Alice@Example.com")
BOB = dev_headers("bob@example.com")


def test_three_turn_conversation_sees_its_history(alice: httpx.Client) -> None:
    first = chat(alice, "hello there")
    sid = first["sessionId"]
    assert first["title"] == "hello there"
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][1]["content"] == "echo[0]:\nhello there"

    second = chat(alice, "how are you", sid)
    third = chat(alice, "bye", sid)
    assert second["messages"][1]["content"] == "echo[2]:\nhow are you"
    assert third["messages"][1]["content"] == "echo[4]:\nbye"
    assert second["sessionId"] == third["sessionId"] == sid

    listing = alice.get("/api/sessions").json()
    assert [s["sessionId"] for s in listing["sessions"]] == [sid]
    summary = listing["sessions"][0]
    assert summary["messageCount"] == 6
    assert summary["preview"] == "hello there"
    assert summary["archived"] is False
    assert summary["updatedAt"].endswith("Z") and summary["createdAt"].endswith("Z")

    detail = alice.get(f"/api/sessions/{sid}").json()
    assert [m["content"] for m in detail["messages"]] == [
        "hello there",
        "echo[0]:\nhello there",
        "how are you",
        "echo[2]:\nhow are you",
        "bye",
        "echo[4]:\nbye",
    ]
    assert len({m["id"] for m in detail["messages"]}) == 6

    assert alice.delete(f"/api/sessions/{sid}").status_code == 204
    gone = alice.get(f"/api/sessions/{sid}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    assert alice.get("/api/sessions").json()["sessions"] == []
    assert chat_status(alice, {"message": "again", "sessionId": sid}) == 404


def chat_status(client: httpx.Client, body: object) -> int:
    return client.post("/api/chat", json=body).status_code


def test_title_is_cut_at_a_word(alice: httpx.Client) -> None:
    text = "Plan a three day walking trip through the Scottish Highlands in late May please"
    result = chat(alice, text)
    assert result["title"] == "Plan a three day walking trip through the Scottish"
    assert len(result["title"]) <= 50


def test_45_sessions_page_by_20_newest_first(alice: httpx.Client) -> None:
    made = [chat(alice, f"session {i}")["sessionId"] for i in range(45)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": "20", **({"continuationToken": token} if token else {})}
        page = alice.get("/api/sessions", params=params).json()
        pages += 1
        seen += [s["sessionId"] for s in page["sessions"]]
        token = page["continuationToken"]
        if token is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))  # newest updatedAt first, none missing or doubled


def test_idempotent_retry_stores_nothing_twice(alice: httpx.Client) -> None:
    first = chat(alice, "once", clientMessageId="c-1")
    again = chat(alice, "once", clientMessageId="c-1")
    assert again == first
    sid = first["sessionId"]
    follow = chat(alice, "twice", sid, clientMessageId="c-2")
    assert chat(alice, "twice", sid, clientMessageId="c-2") == follow
    assert alice.get(f"/api/sessions/{sid}").json()["messageCount"] == 4


def assert_conflict(response: httpx.Response, text: str) -> None:
    """409 with the documented error object, which does not quote the message."""
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert list(body) == ["error"] and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == "conflict"
    assert body["error"]["message"] and text not in body["error"]["message"]


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
def test_a_client_message_id_reused_for_another_message_is_409(
    alice: httpx.Client, accept: str
) -> None:
    first = chat(alice, "first of all", clientMessageId="c-0")
    sid = first["sessionId"]
    turn = chat(alice, "the real question", sid, clientMessageId="c-1")
    before = alice.get(f"/api/sessions/{sid}").json()

    reused = {"message": "something else", "sessionId": sid, "clientMessageId": "c-1"}
    # A streamed request is refused before its stream starts: a plain JSON error.
    assert_conflict(alice.post("/api/chat", json=reused, headers={"Accept": accept}), "something")
    # The same id without a sessionId names the session it began: a conflict there too.
    new_first = {"message": "not the first", "clientMessageId": "c-0"}
    assert_conflict(alice.post("/api/chat", json=new_first, headers={"Accept": accept}), "first")

    # Nothing of either is stored, and the id still replays its own message.
    assert alice.get(f"/api/sessions/{sid}").json() == before
    assert [s["sessionId"] for s in alice.get("/api/sessions").json()["sessions"]] == [sid]
    assert chat(alice, "the real question", sid, clientMessageId="c-1") == turn


def test_restart_keeps_the_conversation(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    with (
        run_host(sqlite_env, tmp_path / "a.log") as host,
        httpx.Client(base_url=host.base_url, headers=ALICE, timeout=30) as client,
    ):
        sid = chat(client, "remember me")["sessionId"]
        chat(client, "still there?", sid)
    with (
        run_host(sqlite_env, tmp_path / "b.log") as host,
        httpx.Client(base_url=host.base_url, headers=ALICE, timeout=30) as client,
    ):
        assert client.get(f"/api/sessions/{sid}").json()["messageCount"] == 4
        # The new process's model got the whole stored history: 4 earlier messages.
        assert chat(client, "and now?", sid)["messages"][1]["content"] == "echo[4]:\nand now?"


def test_another_user_sees_nothing(host: RunningHost, alice: httpx.Client) -> None:
    sid = chat(alice, "private")["sessionId"]
    with httpx.Client(base_url=host.base_url, headers=BOB, timeout=30) as bob:
        assert bob.get("/api/sessions").json() == {"sessions": [], "continuationToken": None}
        for response in (
            bob.get(f"/api/sessions/{sid}"),
            bob.delete(f"/api/sessions/{sid}"),
            bob.post("/api/chat", json={"message": "hi", "sessionId": sid}),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
    assert alice.get(f"/api/sessions/{sid}").json()["messageCount"] == 2


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({**JSON}, b'{"message": "hi"}', 401, "unauthenticated"),
        ({**ALICE, **JSON}, b'{"message": "   \\n "}', 400, "invalid_request"),
        ({**ALICE, **JSON}, b'{"message": "' + b"x" * 16001 + b'"}', 413, "payload_too_large"),
        ({**ALICE, **JSON}, b"{not json", 400, "invalid_request"),
        ({**ALICE, **JSON}, b'["message"]', 400, "invalid_request"),
        ({**ALICE, **JSON}, b'{"message": 5}', 400, "invalid_request"),
        ({**ALICE, "content-type": "text/plain"}, b"message=hi", 415, "unsupported_media_type"),
        ({**ALICE}, b'{"message": "hi"}', 415, "unsupported_media_type"),
        (
            {**ALICE, **JSON},
            b'{"message": "hi", "sessionId": "s_' + b"0" * 32 + b'"}',
            404,
            "not_found",
        ),
        ({**ALICE, **JSON}, b'{"message": "hi", "sessionId": "../etc/passwd"}', 404, "not_found"),
    ],
)
def test_bad_chat_input(
    host: RunningHost, headers: dict[str, str], body: bytes, status: int, code: str
) -> None:
    with httpx.Client(base_url=host.base_url, timeout=30) as client:
        response = client.post("/api/chat", headers=headers, content=body)
        listed = client.get("/api/sessions", headers=ALICE).json()
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and "x" * 100 not in error["message"]  # never quotes the input
    # Refused before anything was stored: alice has no session, not even an empty one.
    assert listed == {"sessions": [], "continuationToken": None}


def test_unknown_fields_are_ignored(alice: httpx.Client) -> None:
    result = chat(alice, "hi", extra="ignored")
    assert result["messages"][1]["content"] == "echo[0]:\nhi"


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "2.5"])
def test_limit_out_of_range(alice: httpx.Client, limit: str) -> None:
    response = alice.get("/api/sessions", params={"limit": limit})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "limit" in error["message"]


def test_bad_continuation_token(alice: httpx.Client) -> None:
    response = alice.get("/api/sessions", params={"continuationToken": "garbage!"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "continuationToken" in error["message"]
    assert "garbage" not in error["message"]


def test_twenty_simultaneous_turns_in_one_session(host: RunningHost, alice: httpx.Client) -> None:
    sid = chat(alice, "start")["sessionId"]

    def turn(i: int) -> int:
        with httpx.Client(base_url=host.base_url, headers=ALICE, timeout=60) as client:
            return client.post("/api/chat", json={"message": f"m{i}", "sessionId": sid}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(turn, range(20)))
    assert statuses == [200] * 20
    messages = alice.get(f"/api/sessions/{sid}").json()["messages"]
    assert len(messages) == 42  # 2 from the start plus 40 new
    seqs = [int(m["id"].rsplit(":", 1)[1]) for m in messages]
    assert seqs == list(range(1, 43))
    users = sorted(m["content"] for m in messages if m["role"] == "user")
    assert users == sorted(["start", *(f"m{i}" for i in range(20))])
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    assert len(replies) == 21
    for i in range(20):  # each turn answered once
        assert sum(r.endswith(f":\nm{i}") for r in replies) == 1


def test_two_processes_share_one_file(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    """Several instances on one SQLite file: turns from both interleave without loss."""
    with (
        run_host(sqlite_env, tmp_path / "a.log") as first,
        run_host(sqlite_env, tmp_path / "b.log") as second,
        httpx.Client(base_url=first.base_url, headers=ALICE, timeout=30) as client,
    ):
        sid = chat(client, "start")["sessionId"]

        def turn(i: int) -> int:
            base = (first, second)[i % 2].base_url
            with httpx.Client(base_url=base, headers=ALICE, timeout=60) as c:
                return c.post("/api/chat", json={"message": f"m{i}", "sessionId": sid}).status_code

        with ThreadPoolExecutor(max_workers=6) as pool:
            assert list(pool.map(turn, range(12))) == [200] * 12
        messages = client.get(f"/api/sessions/{sid}").json()["messages"]
        assert [int(m["id"].rsplit(":", 1)[1]) for m in messages] == list(range(1, 27))


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/nothing"), ("POST", "/api/nothing")])
def test_unknown_routes_are_404_error_objects(alice: httpx.Client, method: str, path: str) -> None:
    response = alice.request(method, path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "allow" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/chat", "POST"),
        ("GET", "/api/chat", "POST"),
        ("POST", "/api/sessions/s_0123456789abcdef0123456789abcdef", "DELETE, GET, HEAD, PATCH"),
        ("DELETE", "/api/health", "GET, HEAD"),
    ],
)
def test_a_method_the_route_does_not_declare_is_405_with_allow(
    alice: httpx.Client, method: str, path: str, allow: str
) -> None:
    # The methods the path's functions declare (the local host serves HEAD for each GET).
    response = alice.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_the_host_says_where_it_serves_once_it_does(host: RunningHost) -> None:
    # make dev's first lines: the address, then "ready" (printed once the socket listens).
    lines = host.log().splitlines()
    assert f"Parley on {host.base_url}/ (the API under /api/)" in lines
    assert (
        lines.index("ready") == lines.index(f"Parley on {host.base_url}/ (the API under /api/)") + 1
    )
