"""Titles written by the model (TITLE_MODE=model), through the real host and the real openai
client against a scripted OpenAI-compatible server.

The first turn of a new session asks the model, in a short call of its own, for a title; the
turn's answer never waits on it beyond TITLE_TIMEOUT_S, a failure keeps the first-message title
(logged, never the turn's error), a title the user set is never replaced, and a streamed first
turn sends ``event: title`` before ``event: done``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.titles import MODEL_TITLE_MAX_TOKENS, TITLE_INSTRUCTIONS
from tests.support.fake_openai import FakeOpenAI, Hang, Status, Whole
from tests.support.sse import strict_sse_events
from tools.local.host import RunningHost, dev_headers, run_host

ALICE = dev_headers("alice@example.com")
FIRST = "Could you help me plan a three-day trip to Lisbon in spring?"
FIRST_MESSAGE_TITLE = "Could you help me plan a three-day trip to Lisbon"


@pytest.fixture(scope="module")
def titled_host(
    fake_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHost]:
    root = tmp_path_factory.mktemp("titles")
    env = {
        "AUTH_MODE": "dev",
        "STORAGE_BACKEND": "sqlite",
        "SQLITE_PATH": str(root / "c.db"),
        "OPENAI_BASE_URL": fake_server.url + "/v1",
        "OPENAI_MODEL": "local-model",
        "LLM_MAX_RETRIES": "0",
        "LLM_TIMEOUT_S": "5",
        "TITLE_MODE": "model",
        "TITLE_TIMEOUT_S": "1",
    }
    with run_host(env, root / "host.log") as running:
        yield running


@pytest.fixture
def client(titled_host: RunningHost, fake: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=titled_host.base_url, headers=ALICE, timeout=30) as http:
        yield http


def title_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if not r.body.get("stream")]


def test_a_new_session_gets_the_models_title(client: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script_whole(Whole('"Lisbon in spring: a three-day plan."\nSecond line is ignored'))
    response = client.post("/api/chat", json={"message": FIRST})
    assert response.status_code == 200, response.text
    body = response.json()
    # Unwrapped, one line, no trailing full stop, at most 60 characters.
    assert body["title"] == "Lisbon in spring: a three-day plan"
    detail = client.get(f"/api/sessions/{body['sessionId']}").json()
    assert detail["title"] == "Lisbon in spring: a three-day plan"
    [asked] = title_requests(fake)
    assert asked["max_completion_tokens"] == MODEL_TITLE_MAX_TOKENS
    assert asked["messages"] == [
        {"role": "system", "content": TITLE_INSTRUCTIONS},
        {"role": "user", "content": FIRST},
    ]
    # Only the first turn asks.
    client.post("/api/chat", json={"message": "and the food?", "sessionId": body["sessionId"]})
    assert len(title_requests(fake)) == 1


def test_a_long_title_is_cut_at_a_word(client: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script_whole(Whole("Title: " + "word " * 30))
    body = client.post("/api/chat", json={"message": FIRST}).json()
    assert len(body["title"]) <= 60 and body["title"].startswith("word word")
    assert not body["title"].endswith(" ")


def test_a_streamed_first_turn_sends_the_title_before_done(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    fake.script_whole(Whole("Lisbon trip"))
    response = client.post(
        "/api/chat", json={"message": FIRST}, headers={"Accept": "text/event-stream"}
    )
    events = strict_sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "session" and names[-2:] == ["title", "done"], names
    assert events[0][1]["title"] == FIRST_MESSAGE_TITLE  # until the model's arrives
    assert events[-2][1] == {"title": "Lisbon trip"}


@pytest.mark.parametrize("failure", ["error", "timeout", "empty"])
def test_a_failed_title_keeps_the_first_message_title(
    client: httpx.Client, fake: FakeOpenAI, titled_host: RunningHost, failure: str
) -> None:
    hold = Hang()
    replies: dict[str, Any] = {
        "error": Status(500, {"error": {"message": "upstream detail"}}),
        "timeout": hold,  # answers nothing within TITLE_TIMEOUT_S
        "empty": Whole("  \n"),
    }
    fake.script_whole(replies[failure])
    response = client.post(
        "/api/chat", json={"message": FIRST}, headers={"Accept": "text/event-stream"}
    )
    hold.gate.set()
    events = strict_sse_events(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "done" and "title" not in names and "error" not in names
    session_id = events[0][1]["sessionId"]
    assert client.get(f"/api/sessions/{session_id}").json()["title"] == FIRST_MESSAGE_TITLE
    assert "title_failed" in titled_host.log()
    assert "upstream detail" not in titled_host.log()


def test_a_title_the_user_set_is_never_replaced(client: httpx.Client, fake: FakeOpenAI) -> None:
    """The user renames the session while the title call is still out: the model's title,
    arriving after, does not overwrite the user's."""
    gate = threading.Event()
    fake.script_whole(Whole("The model's title", hold=gate))  # answered once renamed

    renamed: dict[str, Any] = {}
    first = "Which museums in Porto open on Mondays?"  # this test's own session

    def rename_when_started() -> None:
        session_id = poll_session(client, first)
        renamed["response"] = client.patch(
            f"/api/sessions/{session_id}", json={"title": "My own title"}
        )
        gate.set()

    worker = threading.Thread(target=rename_when_started)
    worker.start()
    body = client.post("/api/chat", json={"message": first}).json()
    worker.join(timeout=30)
    assert renamed["response"].status_code == 200
    detail = client.get(f"/api/sessions/{body['sessionId']}").json()
    assert detail["title"] == "My own title"


def poll_session(client: httpx.Client, first: str) -> str:
    """The id of the session being created, once it is listed (waiting for a result, not for
    time: each look is a request)."""
    for _ in range(500):
        sessions = client.get("/api/sessions").json()["sessions"]
        fresh = [s for s in sessions if s["preview"] == first]
        if fresh:
            return str(fresh[0]["sessionId"])
    raise AssertionError("the session never appeared")


def test_the_title_rule_with_the_echo_model(tmp_path: Path) -> None:
    """The echo model answers the title call deterministically: ``echo[0]: <message>``."""
    env = {
        "AUTH_MODE": "dev",
        "STORAGE_BACKEND": "sqlite",
        "SQLITE_PATH": str(tmp_path / "c.db"),
        "TITLE_MODE": "model",
    }
    with run_host(env, tmp_path / "host.log") as host:
        response = httpx.post(
            host.base_url + "/api/chat", json={"message": "hello there"}, headers=ALICE
        )
    assert response.json()["title"] == "echo[0]: hello there"
