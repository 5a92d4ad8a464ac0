"""Faults found under attack, through the real host on both stores.

- A first message retried (same clientMessageId, no sessionId) after its session was archived
  lands in that session: no second copy beside the archived one, no wedged session later.
- A delete that stopped half-way is finished by the next request that meets it, never a 500.
- One busy session: sixteen streamed turns at once, half of their clients gone after the first
  piece, are all stored with their answers, none refused as "too busy".

The archival pass runs in the test process against the host's own store, with a clock forty
days ahead (everything is stale to it); everything else goes through HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.archive import ArchivePolicy, run_archive
from shared.config import load_settings
from shared.storage import make_store
from shared.storage.base import Store
from tests.support.cosmos import COSMOS_MODE_FIXTURES, account_for
from tools.local.host import RunningHost, dev_headers, run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


@dataclass
class Stack:
    host: RunningHost
    env: dict[str, str]

    def store(self) -> Store:
        return make_store(load_settings(self.env))


class AheadClock:
    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(days=40)


def archive_everything(stack: Stack) -> int:
    async def run() -> int:
        store = stack.store()
        try:
            policy = ArchivePolicy(after_days=30, time_budget_s=120)
            return (await run_archive(store, policy, clock=AheadClock())).archived
        finally:
            await store.close()

    return asyncio.run(run())


@pytest.fixture(params=["sqlite", *COSMOS_MODE_FIXTURES])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(request, request.param, tmp_path)


@pytest.fixture
def cosmos_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(request, "cosmos", tmp_path)


def _stack(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Stack]:
    env = {"AUTH_MODE": "dev", "LLM_PROVIDER": "echo"}
    if backend == "sqlite":
        env |= {"STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(tmp_path / "c.db")}
        with run_host(env, tmp_path / "host.log") as host:
            yield Stack(host, env)
        return
    from tests.support.databases import cosmos_database

    account = account_for(request, backend)
    with cosmos_database(account) as database:
        env |= {
            "STORAGE_BACKEND": "cosmos",
            "COSMOS_ENDPOINT": account.endpoint,
            "COSMOS_KEY": account.key,
            "COSMOS_VERIFY_TLS": "true" if account.verify_tls else "false",
            "COSMOS_DATABASE": database.name,
        }
        with run_host(env, tmp_path / "host.log") as host:
            yield Stack(host, env)


@contextmanager
def client(stack: Stack, email: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.host.base_url, headers=dev_headers(email), timeout=60) as http:
        yield http


def chat(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.cross_instance
def test_a_first_message_retried_after_archival_lands_in_its_session(stack: Stack) -> None:
    email = f"carol-{uuid.uuid4().hex[:8]}@example.com"
    with client(stack, email) as http:
        first = chat(http, message="first words", clientMessageId="first-1")
        session_id = first["sessionId"]
        chat(http, message="second words", sessionId=session_id)
        assert archive_everything(stack) >= 1
        assert http.get("/api/sessions").json()["sessions"] == []

        retried = chat(http, message="first words", clientMessageId="first-1")

        assert retried["sessionId"] == session_id
        assert retried["messages"] == first["messages"]  # the same answer, nothing stored twice
        assert http.get("/api/sessions?archived=true").json()["sessions"] == []
        [listed] = http.get("/api/sessions").json()["sessions"]
        assert (listed["sessionId"], listed["messageCount"]) == (session_id, 4)
        # And it is not wedged: it goes on, through another archival and back.
        chat(http, message="third words", sessionId=session_id)
        assert archive_everything(stack) >= 1
        chat(http, message="fourth words", sessionId=session_id)
        detail = http.get(f"/api/sessions/{session_id}").json()
        assert detail["messageCount"] == 8 and not detail["archived"]
        assert [m["content"] for m in detail["messages"] if m["role"] == "user"] == [
            "first words",
            "second words",
            "third words",
            "fourth words",
        ]


def test_sixteen_streamed_turns_at_once_into_one_session_are_all_stored(stack: Stack) -> None:
    email = f"dora-{uuid.uuid4().hex[:8]}@example.com"
    with client(stack, email) as http:
        session_id = chat(http, message="start")["sessionId"]

    def streamed(n: int) -> int:
        """One client's turn; odd ones hang up after the first piece of the answer."""
        body = {"message": f"question {n}", "sessionId": session_id}
        with (
            httpx.Client(base_url=stack.host.base_url, timeout=60) as http,
            http.stream(
                "POST",
                "/api/chat",
                json=body,
                headers={**dev_headers(email), "Accept": "text/event-stream"},
            ) as response,
        ):
            if n % 2:
                for line in response.iter_lines():
                    if line.startswith("event: delta"):
                        return response.status_code  # gone half-way
            response.read()
            assert "event: done" in response.text, response.text
            return response.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(streamed, range(16)))
    assert statuses == [200] * 16

    with client(stack, email) as http:
        # The dropped streams' answers are written by tasks of their own: the host answers
        # this once every one of them has ended.
        assert http.post("/admin/turns/settle").status_code == 204
        detail = http.get(f"/api/sessions/{session_id}").json()
        messages = [(m["role"], m["content"]) for m in detail["messages"]]
    questions = [c for r, c in messages if r == "user"]
    answers = [c for r, c in messages if r == "assistant"]
    assert sorted(questions) == sorted(["start", *(f"question {n}" for n in range(16))])
    for n in range(16):
        # Each question answered exactly once (the echo repeats it).
        assert sum(a.endswith(f":\nquestion {n}") for a in answers) == 1, (n, answers)
    assert "commit_gave_up" not in stack.host.log()


def test_an_interrupted_delete_is_finished_by_the_next_request(cosmos_stack: Stack) -> None:
    """A delete stopped after marking the session (a crash, as kill -9 would leave it; on
    SQLite a delete is one transaction and cannot stop half-way): reading it is 404, retrying
    its first message starts the conversation again (finishing the delete first), nothing
    answers 500, and no item of the old conversation is left."""
    stack = cosmos_stack
    email = f"erin-{uuid.uuid4().hex[:8]}@example.com"
    with client(stack, email) as http:
        first = chat(http, message="hello", clientMessageId="c-first")
        session_id = first["sessionId"]
        for n in range(60):  # more items than one batch
            chat(http, message=f"more {n}", sessionId=session_id)

    class Crash(Exception):
        pass

    async def crash(step: str, _: str) -> None:
        if step == "delete:marked":
            raise Crash()

    async def crash_while_deleting() -> None:
        store = stack.store()
        try:
            store.moves.checkpoint = crash  # type: ignore[attr-defined]
            with pytest.raises(Crash):
                await store.delete_session(email, session_id)
        finally:
            await store.close()

    asyncio.run(crash_while_deleting())
    with client(stack, email) as http:
        assert http.get(f"/api/sessions/{session_id}").status_code == 404
        retried = http.post("/api/chat", json={"message": "hello", "clientMessageId": "c-first"})
        assert retried.status_code == 200, retried.text
        assert retried.json()["sessionId"] == session_id  # the same derived id, begun again
        detail = http.get(f"/api/sessions/{session_id}").json()
        assert [m["content"] for m in detail["messages"]] == ["hello", "echo[0]:\nhello"]

    async def raw_count() -> int:
        store = stack.store()
        try:
            _, messages = await store.usage(email)
            return messages
        finally:
            await store.close()

    assert asyncio.run(raw_count()) == 2
    assert "unhandled" not in stack.host.log()
