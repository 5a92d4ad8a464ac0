"""A streamed answer's invocation, and its keep-alives, through the local host (a real process)
and the scripted model server.

- A client that hangs up mid-stream leaves an invocation open until the answer is stored: the
  host's in-flight list shows it (its client gone), and a host shutdown waits for it. In Azure
  an instance may be shut down once its invocations have ended; the local host counts them as
  Azure's does (``devhost/app.py``, ``Invocations``).
- While the model is silent, the stream carries SSE comments (``: keep-alive``) every
  ``SSE_KEEPALIVE_S``; the events around them are untouched.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.shared.llm.support import host_env
from tests.support.fake_openai import FakeOpenAI, Stream
from tools.local.host import RunningHost, dev_headers, run_host

ALICE = dev_headers("alice@example.com")
T = TypeVar("T")


def poll(check: Callable[[], T | None], timeout_s: float = 20.0) -> T:
    """Ask until ``check`` answers (a state, not the passing of time), within a bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(0.02)
    raise AssertionError("no result within the bound")


def env(fake: FakeOpenAI, db: Path, **extra: str) -> dict[str, str]:
    # A model held by the test must not time out first: 20 s per read, no retries.
    return {**host_env(fake, db), "LLM_TIMEOUT_S": "20", **extra}


def stored(db: Path, session_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT body FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
        ).fetchall()
    return [(body["role"], body["content"]) for body in (json.loads(row[0]) for row in rows)]


def start_stream_and_hang_up(host: RunningHost, message: str) -> str:
    """Ask for a streamed answer, read its first piece, reset the connection; the session id."""
    body = json.dumps({"message": message}).encode()
    head = [
        "POST /api/chat HTTP/1.1",
        "Host: parley.test",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in ALICE.items()),
    ]
    port = int(host.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        received = b""
        while b"event: delta" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        # A reset, as a client that is killed or loses its network.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    session = received.split(b"event: session\ndata: ", 1)[1].split(b"\n", 1)[0]
    return str(json.loads(session)["sessionId"])


def in_flight(host: RunningHost) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(host.base_url + "/admin/invocations").json()["inFlight"]
    return found


def refused(host: RunningHost) -> bool:
    try:
        httpx.get(host.base_url + "/api/health", timeout=1)
    except httpx.TransportError:
        return True
    return False


def test_a_hung_up_stream_keeps_its_invocation_until_the_answer_is_stored(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    held = Stream(("first", " second", " third"), pause_after=1)
    fake.script(held)
    with run_host(env(fake, db), tmp_path / "host.log") as host:
        sid = start_stream_and_hang_up(host, "tell me three things")

        # The host saw the client go; the invocation goes on, the model still holding the rest.
        def gone() -> list[dict[str, Any]] | None:
            running = in_flight(host)
            return running if any(i["clientGone"] for i in running) else None

        assert poll(gone) == [{"function": "chat", "clientGone": True}]
        assert stored(db, sid) == [("user", "tell me three things")]

        # A shutdown (scale-in, a deployment) waits for the invocation: the host stops taking
        # requests but does not exit while the answer is unwritten.
        host.process.send_signal(signal.SIGTERM)
        poll(lambda: True if refused(host) else None)
        assert host.process.poll() is None
        assert stored(db, sid) == [("user", "tell me three things")]

        held.gate.set()
        # uvicorn re-raises the signal it handled once it has shut down.
        assert host.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert stored(db, sid) == [
        ("user", "tell me three things"),
        ("assistant", "first second third"),
    ]
    log = (tmp_path / "host.log").read_text()
    assert "answer_unfinished" not in log
    assert "Traceback" not in log and "never retrieved" not in log, log


def test_settle_answers_once_the_hung_up_streams_answer_is_stored(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    held = Stream(("one", " two"), pause_after=1)
    fake.script(held)
    with run_host(env(fake, db), tmp_path / "host.log") as host:
        sid = start_stream_and_hang_up(host, "count to two")
        poll(lambda: in_flight(host) if any(i["clientGone"] for i in in_flight(host)) else None)
        held.gate.set()
        assert httpx.post(host.base_url + "/admin/turns/settle", timeout=30).status_code == 204
        assert in_flight(host) == []
        assert stored(db, sid) == [("user", "count to two"), ("assistant", "one two")]


# ---- keep-alive comments ------------------------------------------------------------------

KEEPALIVE_S = "0.05"


@pytest.fixture(scope="module")
def keepalive_host(
    fake_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHost]:
    root = tmp_path_factory.mktemp("keepalive-host")
    with run_host(
        env(fake_server, root / "c.db", SSE_KEEPALIVE_S=KEEPALIVE_S), root / "h.log"
    ) as h:
        yield h


def test_a_silent_model_is_covered_by_keepalive_comments(
    keepalive_host: RunningHost, fake: FakeOpenAI
) -> None:
    held = Stream(("first", " second"), pause_after=1)
    fake.script(held)
    lines: list[str] = []
    with (
        httpx.Client(base_url=keepalive_host.base_url, headers=ALICE, timeout=30) as client,
        client.stream(
            "POST",
            "/api/chat",
            json={"message": "take your time"},
            headers={"Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200
        source = response.iter_lines()
        # The first piece, then comments while the model holds the rest. (Comments may come
        # before the first piece too, on a loaded machine: only those after it are counted.)
        first = 'data: {"content":"first"}'
        while first not in lines or lines[lines.index(first) :].count(": keep-alive") < 2:
            lines.append(next(source))
        held.gate.set()
        lines.extend(source)
    text = "\n".join(lines) + "\n"
    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
        for block in text.split("\n\n")
        if block.strip() and not block.startswith(":")
    ]
    assert [name for name, _ in events] == ["session", "delta", "delta", "done"]
    assert events[-1][1]["messages"][1]["content"] == "first second"
    # Each comment is a block of its own: never inside an event.
    assert "\n: keep-alive\n\n" in text
    for block in text.split("\n\n"):
        assert block.strip() == ": keep-alive" or ": keep-alive" not in block
