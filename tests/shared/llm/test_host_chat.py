"""A real model service end to end: the local host (a real process) configured with
OPENAI_BASE_URL pointing at the scripted server, through the real ``openai`` client.

Host settings: system prompt "Be brief." (7 estimated tokens), MAX_HISTORY_MESSAGES=4,
MAX_CONTEXT_TOKENS=100 (93 left for history), no SDK retries, a 1 s model timeout.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.shared.llm.support import host_env
from tests.support.fake_openai import FakeOpenAI, Hang, Status, Stream
from tests.support.sse import strict_sse_events
from tools.local.host import RunningHost, dev_headers, run_host

SYSTEM = {"role": "system", "content": "Be brief."}
ALICE = dev_headers("alice@example.com")


@pytest.fixture(scope="module")
def llm_host(fake_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("llm-host")
    env = host_env(fake_server, root / "c.db")
    with run_host(env, root / "host.log") as running:
        yield running, root / "c.db"


@pytest.fixture
def client(llm_host: tuple[RunningHost, Path], fake: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llm_host[0].base_url, headers=ALICE, timeout=30) as http:
        yield http


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def answer(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def post(client: httpx.Client, message: str, sid: str | None = None) -> httpx.Response:
    return client.post(
        "/api/chat", json={"message": message, **({"sessionId": sid} if sid else {})}
    )


def turn(client: httpx.Client, message: str, sid: str | None = None) -> dict[str, Any]:
    response = post(client, message, sid)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def contents(client: httpx.Client, sid: str) -> list[tuple[str, str]]:
    detail = client.get(f"/api/sessions/{sid}").json()
    return [(m["role"], m["content"]) for m in detail["messages"]]


def stream_turn(client: httpx.Client, message: str, sid: str | None = None) -> httpx.Response:
    body = {"message": message, **({"sessionId": sid} if sid else {})}
    response = client.post("/api/chat", json=body, headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return response


# ---- what the model sees -----------------------------------------------------------------


def test_each_turn_sends_system_prompt_trimmed_history_and_new_message(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    sid = turn(client, "q1")["sessionId"]
    turn(client, "q2", sid)
    turn(client, "q3", sid)
    turn(client, "q4", sid)
    assert [r.messages for r in fake.requests] == [
        [SYSTEM, user("q1")],
        [SYSTEM, user("q1"), answer("re: q1"), user("q2")],
        # MAX_HISTORY_MESSAGES=4 keeps re: q1, q2, re: q2, q3; the answer whose question
        # fell out is dropped too.
        [SYSTEM, user("q2"), answer("re: q2"), user("q3")],
        [SYSTEM, user("q3"), answer("re: q3"), user("q4")],
    ]
    assert all(r.body["model"] == "local-model" and r.body["stream"] for r in fake.requests)


def test_token_limit_trims_whole_messages(client: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Stream(("ok",)), Stream(("ok",)), Stream(("ok",)))
    long_b, long_c = "b" * 150, "c" * 93  # estimated 54 and 35 tokens; "ok" and "hi" 5
    sid = turn(client, "hi")["sessionId"]
    turn(client, long_b, sid)
    turn(client, long_c, sid)
    assert fake.requests[1].messages == [SYSTEM, user("hi"), answer("ok"), user(long_b)]
    # 35 + 5 + 54 = 94 > 93: the long message goes whole (and its answer with it), though
    # MAX_HISTORY_MESSAGES alone would have kept it.
    assert fake.requests[2].messages == [SYSTEM, user(long_c)]


def test_history_survives_a_host_restart(fake: FakeOpenAI, tmp_path: Path) -> None:
    env = host_env(fake, tmp_path / "restart.db")
    with (
        run_host(env, tmp_path / "first.log") as first,
        httpx.Client(base_url=first.base_url, headers=ALICE, timeout=30) as http,
    ):
        sid = turn(http, "remember the number 42")["sessionId"]
    with (
        run_host(env, tmp_path / "second.log") as second,
        httpx.Client(base_url=second.base_url, headers=ALICE, timeout=30) as http,
    ):
        turn(http, "what was the number?", sid)
    assert fake.requests[-1].messages == [
        SYSTEM,
        user("remember the number 42"),
        answer("re: remember the number 42"),
        user("what was the number?"),
    ]


# ---- streaming -------------------------------------------------------------------------------


def test_stream_events_in_order_and_the_answer_stored_with_usage(
    client: httpx.Client, fake: FakeOpenAI, llm_host: tuple[RunningHost, Path]
) -> None:
    fake.script(Stream(("Hel", "lo", " world"), model="served-model", usage=(30, 3)))
    events = strict_sse_events(stream_turn(client, "greet me").text)
    names = [name for name, _ in events]
    assert names == ["session", "delta", "delta", "delta", "done"]
    session = events[0][1]
    assert set(session) == {"sessionId", "title"} and session["title"] == "greet me"
    assert [data for name, data in events if name == "delta"] == [
        {"content": "Hel"},
        {"content": "lo"},
        {"content": " world"},
    ]
    done = events[-1][1]["messages"]
    assert [(m["role"], m["content"]) for m in done] == [
        ("user", "greet me"),
        ("assistant", "Hello world"),
    ]
    # Usage and the model's name are kept on the stored item, not in the API object.
    assert set(done[0]) == {"id", "role", "content", "timestamp"}
    assert set(done[1]) == {"id", "role", "content", "timestamp", "status"}
    stored = stored_message(llm_host[1], session["sessionId"], seq=2)
    assert (stored["model"], stored["prompt_tokens"], stored["completion_tokens"]) == (
        "served-model",
        30,
        3,
    )
    assert contents(client, session["sessionId"]) == [
        ("user", "greet me"),
        ("assistant", "Hello world"),
    ]


def stored_message(db: Path, session_id: str, seq: int) -> dict[str, Any]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT body FROM messages WHERE session_id = ? AND seq = ?", (session_id, seq)
        ).fetchone()
    found: dict[str, Any] = json.loads(row[0])
    return found


def test_client_disconnect_mid_stream_still_stores_the_full_answer(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    held = Stream(("first", " second", " third"), pause_after=1)
    fake.script(held)
    body = {"message": "tell me three things"}
    with client.stream(
        "POST", "/api/chat", json=body, headers={"Accept": "text/event-stream"}
    ) as response:
        lines = response.iter_lines()
        assert next(lines) == "event: session"
        sid = json.loads(next(lines)[len("data: ") :])["sessionId"]
        assert next(lines) == ""
        assert next(lines) == "event: delta"
        assert json.loads(next(lines)[len("data: ") :]) == {"content": "first"}
    # The connection is closed with the model still holding the rest of the answer.
    assert contents(client, sid) == [("user", "tell me three things")]
    held.gate.set()
    # The answer's task outlives the request: the host answers once it has ended.
    assert client.post("/admin/turns/settle").status_code == 204
    assert contents(client, sid) == [
        ("user", "tell me three things"),
        ("assistant", "first second third"),
    ]


def test_model_failure_mid_stream_sends_error_and_invents_nothing(
    client: httpx.Client, fake: FakeOpenAI, llm_host: tuple[RunningHost, Path]
) -> None:
    fake.script(Stream(("partial", " more"), fail_after=1))
    events = strict_sse_events(stream_turn(client, "this will break").text)
    # The log follows the failure by session, without the conversation or upstream text.
    log = llm_host[0].log()
    assert "model_call_failed" in log
    assert "this will break" not in log and "upstream secret detail" not in log
    assert [name for name, _ in events] == ["session", "delta", "error"]
    error = events[-1][1]
    assert error["error"]["code"] == "model_error"
    assert "secret" not in json.dumps(error)
    sid = events[0][1]["sessionId"]
    assert contents(client, sid) == [("user", "this will break")]


def test_model_stall_mid_stream_times_out_into_an_error_event(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    fake.script(Stream(("partial", " never"), pause_after=1))
    events = strict_sse_events(stream_turn(client, "slow one").text)
    assert [name for name, _ in events] == ["session", "delta", "error"]
    assert events[-1][1] == {
        "error": {"code": "model_error", "message": "The model did not answer in time."}
    }
    assert contents(client, events[0][1]["sessionId"]) == [("user", "slow one")]


# ---- failures without streaming --------------------------------------------------------------


def test_model_error_is_502_user_message_kept_and_next_turn_sees_it(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    sid = turn(client, "first")["sessionId"]
    fake.script(Status(500, {"error": {"message": "upstream secret detail"}}))
    response = post(client, "second", sid)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "model_error"
    assert "secret" not in response.text
    assert len(fake.requests) == 2  # LLM_MAX_RETRIES=0
    assert contents(client, sid) == [
        ("user", "first"),
        ("assistant", "re: first"),
        ("user", "second"),
    ]
    # Nothing was invented: the next turn's model sees the unanswered message as it is.
    turn(client, "third", sid)
    assert fake.requests[-1].messages == [
        SYSTEM,
        user("first"),
        answer("re: first"),
        user("second"),
        user("third"),
    ]


def test_model_rate_limit_is_429_with_retry_after(client: httpx.Client, fake: FakeOpenAI) -> None:
    sid = turn(client, "first")["sessionId"]
    fake.script(Status(429, {"error": {"message": "quota"}}, {"retry-after": "17"}))
    response = post(client, "second", sid)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "17"
    assert response.json()["error"]["code"] == "rate_limited"
    assert contents(client, sid)[-1] == ("user", "second")
    assert len(contents(client, sid)) == 3


def test_model_timeout_is_502_within_the_timeout(client: httpx.Client, fake: FakeOpenAI) -> None:
    sid = turn(client, "first")["sessionId"]
    fake.script(Hang())
    started = time.monotonic()
    response = post(client, "second", sid)
    assert response.status_code == 502
    assert response.json()["error"] == {
        "code": "model_error",
        "message": "The model did not answer in time.",
    }
    assert time.monotonic() - started < 10  # LLM_TIMEOUT_S=1, not the SDK's default
    assert contents(client, sid) == [
        ("user", "first"),
        ("assistant", "re: first"),
        ("user", "second"),
    ]
