"""Clients that go away: the local host (a real process) and raw sockets that drop the
connection half-way through a request body or an answer's stream."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.conftest import dev_headers
from tests.support.host import RunningHost

ALICE = dev_headers("alice@example.com")
T = TypeVar("T")


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
