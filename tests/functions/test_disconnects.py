"""Clients that go away: the local host (a real process) and raw sockets that drop the
connection half-way through a request body or an answer's stream."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import httpx
import pytest

from tools.local.host import RunningHost, dev_headers

ALICE = dev_headers("alice@example.com")
T = TypeVar("T")
# asyncio's warning for a write to a connection it already knows is lost.
SEND_WARNING = "socket.send() raised exception."


def poll(check: Callable[[], T | None], timeout_s: float = 20.0) -> T:
    """Wait for a result (not for time): ask until ``check`` answers, within a bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(0.02)
    raise AssertionError("no result within the bound")


def connect(host: RunningHost) -> socket.socket:
    port = int(host.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def chat_head(content_length: int, *, stream: bool = False) -> bytes:
    lines = [
        "POST /api/chat HTTP/1.1",
        "Host: parley.test",
        "Content-Type: application/json",
        f"Content-Length: {content_length}",
        *(f"{name}: {value}" for name, value in ALICE.items()),
        *(["Accept: text/event-stream"] if stream else []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def drop(sock: socket.socket) -> None:
    """Close at once with a reset, as a client that is killed or loses its network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def request_lines(log: str) -> list[tuple[str, dict[str, Any]]]:
    """The request log lines: (level, fields)."""
    found = []
    for line in log.splitlines():
        parts = line.split(" ", 4)
        if len(parts) == 5 and parts[3] == "parley.http" and parts[4].startswith("request {"):
            found.append((parts[2], json.loads(parts[4][len("request ") :])))
    return found


# ---- a body left half-way ------------------------------------------------------------------


def test_client_gone_mid_body_is_a_499_not_an_error(host: RunningHost) -> None:
    body = json.dumps({"message": "never finished"}).encode()
    with connect(host) as sock:
        sock.sendall(chat_head(len(body)) + body[:10])
        drop(sock)

    def logged() -> list[tuple[str, dict[str, Any]]] | None:
        lines = [line for line in request_lines(host.log()) if line[1]["route"] == "/api/chat"]
        return lines or None

    [(level, fields)] = poll(logged)
    assert fields["status"] == 499
    assert level == "INFO"
    assert fields["requestBytes"] == 10  # what did arrive, not the text
    log = host.log()
    assert "ClientDisconnect" not in log and "Traceback" not in log
    assert " ERROR " not in log
    assert "never finished" not in log


# ---- a stream dropped half-way -------------------------------------------------------------

STREAMS = 20
WORDS = 200  # one SSE event each: a backlog of events once the echo model has answered


@pytest.fixture
def alice(host: RunningHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.base_url, headers=ALICE, timeout=30) as client:
        yield client


def start_and_drop_a_stream(host: RunningHost, message: str) -> str:
    """Ask for a streamed answer, read until its first piece, drop the connection; the
    session's id."""
    body = json.dumps({"message": message}).encode()
    with connect(host) as sock:
        sock.sendall(chat_head(len(body), stream=True) + body)
        received = b""
        while b"event: delta" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        drop(sock)
    session = received.split(b"event: session\ndata: ", 1)[1].split(b"\n", 1)[0]
    return str(json.loads(session)["sessionId"])


def test_dropped_streams_log_no_send_warnings_and_every_answer_is_stored(
    host: RunningHost, alice: httpx.Client
) -> None:
    messages = {
        start_and_drop_a_stream(host, text): text
        for text in (" ".join(f"s{s}w{w}" for w in range(WORDS)) for s in range(STREAMS))
    }
    assert len(messages) == STREAMS

    def stored(sid: str) -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = alice.get(f"/api/sessions/{sid}").json()["messages"]
        return found if len(found) == 2 else None

    for sid, text in messages.items():
        user, answer = poll(partial(stored, sid))
        assert (user["content"], answer["content"]) == (text, f"echo[0]:\n{text}")
    # The echo model's pieces are all streamed (or dropped) before its answer is stored.
    assert host.log().count(SEND_WARNING) == 0
