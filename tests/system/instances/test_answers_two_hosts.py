"""Answers that survive their instance, end to end (docs/http.md, "Answers as they grow"): two
local hosts (real processes) on one store (SQLite, or Cosmos in each of its modes) and a
scripted slow model. An answer started on host A is read growing on host B (GET and GET
.../stream), stopped from host B, and, when host A is killed (SIGKILL) in the middle of
another, shown "interrupted" by host B once its time budget has passed (host B's clock is moved
forward: nothing waits for time)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.support.cosmos import COSMOS_MODE_FIXTURES, account_for
from tests.support.databases import CosmosDatabase, cosmos_database
from tests.support.deployments import cosmos_env
from tests.support.fake_openai import FakeOpenAI, Stream
from tests.support.sse import sse_events
from tools.local.host import dev_headers, run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

T = TypeVar("T")
LLM_TIMEOUT_S = 20  # with no retries, the model's whole budget: 20 s
CHECKPOINT_MS = 50


@pytest.fixture(params=["sqlite", *COSMOS_MODE_FIXTURES])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Both hosts' store: one SQLite file, or one Cosmos database (default, lagging replicas,
    throttled)."""
    if request.param == "sqlite":
        yield {
            "AUTH_MODE": "dev",
            "STORAGE_BACKEND": "sqlite",
            "SQLITE_PATH": str(tmp_path / "c.db"),
        }
        return
    database: CosmosDatabase
    with cosmos_database(account_for(request, request.param)) as database:
        yield cosmos_env(database)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI().running() as server:
        yield server


def poll(check: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    """Wait for a result (not for time): ask until ``check`` answers, within a bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(0.02)
    raise AssertionError("no result within the bound")


class Turn(threading.Thread):
    """A turn posted to a host in a thread of its own (the answer takes as long as the model)."""

    def __init__(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.body = url, headers, body
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.start()

    def run(self) -> None:
        try:
            self.response = httpx.post(
                self.url + "/api/chat", json=self.body, headers=self.headers, timeout=60
            )
        except httpx.HTTPError as error:
            self.error = error


class Follow(threading.Thread):
    """GET .../stream read as its events arrive; ``resumed`` is set once the first has."""

    def __init__(self, client: httpx.Client, path: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.client, self.path, self.headers = client, path, headers
        self.events: list[tuple[str, Any]] = []
        self.resumed = threading.Event()
        self.start()

    def run(self) -> None:
        name = None
        with self.client.stream("GET", self.path, headers=self.headers, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: ") and name is not None:
                    self.events.append((name, json.loads(line[len("data: ") :])))
                    self.resumed.set()


def test_an_answer_followed_stopped_and_orphaned_across_two_hosts(
    store_env: dict[str, str], fake: FakeOpenAI, tmp_path: Path
) -> None:
    alice = dev_headers(f"alice-{uuid.uuid4().hex[:8]}@example.com")
    bob = dev_headers(f"bob-{uuid.uuid4().hex[:8]}@example.com")
    env = {
        **store_env,
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.url + "/v1",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_MODEL": "slow-model",
        "LLM_MAX_RETRIES": "0",
        "LLM_TIMEOUT_S": str(LLM_TIMEOUT_S),
        "TITLE_MODE": "first-message",
        "STREAM_CHECKPOINT_MS": str(CHECKPOINT_MS),
    }
    with (
        run_host(env, tmp_path / "a.log") as host_a,
        run_host(env, tmp_path / "b.log") as host_b,
        httpx.Client(base_url=host_b.base_url, timeout=30) as b,
    ):
        first = httpx.post(
            host_a.base_url + "/api/chat", json={"message": "hi"}, headers=alice, timeout=30
        )
        assert first.status_code == 200, first.text
        sid = first.json()["sessionId"]

        def last_on_b(status: str, content: str) -> dict[str, Any] | None:
            response = b.get(f"/api/sessions/{sid}", headers=alice)
            assert response.status_code == 200, response.text
            message: dict[str, Any] = response.json()["messages"][-1]
            shown = (message["role"], message.get("status"), message["content"])
            return message if shown == ("assistant", status, content) else None

        # 1. Started on A, read growing on B (GET, then the stream), ended on A.
        growing = Stream(("Once", " upon", " a time."), pause_after=1)
        fake.script(growing)
        turn = Turn(host_a.base_url, alice, {"message": "a story", "sessionId": sid})
        poll(lambda: last_on_b("streaming", "Once"))
        assert b.get(f"/api/sessions/{sid}/stream", headers=bob).status_code == 404
        follow = Follow(b, f"/api/sessions/{sid}/stream", alice)
        assert follow.resumed.wait(30)  # the answer as it was, before it goes on
        growing.gate.set()
        turn.join(60)
        follow.join(60)
        assert turn.response is not None and turn.response.status_code == 200
        assert turn.response.json()["messages"][1]["status"] == "complete"
        seen = follow.events
        assert seen[0][0] == "resume" and seen[0][1]["message"]["content"].startswith("Once")
        assert seen[-1][0] == "done"
        assert {name for name, _ in seen[1:-1]} <= {"delta"}
        text = seen[0][1]["message"]["content"] + "".join(d["content"] for _, d in seen[1:-1])
        [done] = seen[-1][1]["messages"]
        assert (done["status"], done["content"], text) == ("complete", "Once upon a time.", text)
        assert text == "Once upon a time."
        # Nothing generated now: done at once, empty; a stop is nothing to do.
        now = b.get(f"/api/sessions/{sid}/stream", headers=alice)
        assert sse_events(now.text) == [("done", {"messages": []})]
        assert b.post(f"/api/sessions/{sid}/stop", headers=alice).status_code == 204

        # 2. Started on A, stopped from B: the model call is cancelled, the text so far kept.
        runaway = Stream(("Stop", " never said"), pause_after=1)
        fake.script(runaway)
        turn = Turn(host_a.base_url, alice, {"message": "go on", "sessionId": sid})
        poll(lambda: last_on_b("streaming", "Stop"))
        assert b.post(f"/api/sessions/{sid}/stop", headers=bob).status_code == 404
        assert b.post(f"/api/sessions/{sid}/stop", headers=alice).status_code == 202
        turn.join(30)
        assert turn.response is not None and turn.response.status_code == 200, turn.error
        answer = turn.response.json()["messages"][1]
        assert (answer["status"], answer["content"]) == ("stopped", "Stop")
        poll(lambda: last_on_b("stopped", "Stop"))

        # 3. Host A killed in the middle of an answer: B shows it "interrupted" once its last
        # checkpoint is older than the model's budget, and the session goes on.
        orphan = Stream(("Half", " lost"), pause_after=1)
        fake.script(orphan)
        turn = Turn(host_a.base_url, alice, {"message": "once more", "sessionId": sid})
        poll(lambda: last_on_b("streaming", "Half"))
        host_a.process.kill()
        host_a.process.wait(10)
        assert last_on_b("streaming", "Half") is not None  # within its budget: still live
        moved = b.post("/admin/clock", json={"advanceS": LLM_TIMEOUT_S + 1})
        assert moved.status_code == 200
        assert last_on_b("interrupted", "Half") is not None
        page = b.get(f"/api/sessions/{sid}/messages", headers=alice).json()["messages"]
        assert (page[-1]["status"], page[-1]["content"]) == ("interrupted", "Half")
        exported = b.get("/api/export", headers=alice).text
        assert '"status":"interrupted"' in exported and '"status":"streaming"' not in exported
        assert sse_events(b.get(f"/api/sessions/{sid}/stream", headers=alice).text) == [
            ("done", {"messages": []})
        ]
        nxt = b.post("/api/chat", json={"message": "still there?", "sessionId": sid}, headers=alice)
        assert nxt.status_code == 200, nxt.text
        assert nxt.json()["messages"][1]["status"] == "complete"
        statuses = [
            m.get("status") for m in b.get(f"/api/sessions/{sid}", headers=alice).json()["messages"]
        ]
        assert statuses == [None, "complete"] * 2 + [None, "stopped", None, "interrupted"] + [
            None,
            "complete",
        ]
        fake.release_all()
