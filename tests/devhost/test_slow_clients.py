"""Slow clients in the local host (devhost/timeouts.py): a request's headers, and then its
body, must arrive in time, or the request is answered 408 and its connection closed.

The host runs with tiny timeouts (set through the environment); raw sockets send half a
request and then wait, bounded, for the host to close the connection.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.config import ConfigError, load_settings
from tools.local.host import RunningHost, dev_headers, run_host

ALICE = dev_headers("alice@example.com")
TIMEOUT_S = 0.5
# How long a test waits for the host to close a connection: far beyond the timeouts, so only a
# host that never closes it fails.
BOUND_S = 10.0
SLOW_CLIENTS = 8
PRINCIPAL = "".join(f"{name}: {value}\r\n" for name, value in ALICE.items())


@pytest.fixture(scope="module")
def slow_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    path = tmp_path_factory.mktemp("slow")
    env = {
        "AUTH_MODE": "dev",
        "SQLITE_PATH": str(path / "c.db"),
        "DEVHOST_HEADER_TIMEOUT_S": str(TIMEOUT_S),
        "DEVHOST_BODY_TIMEOUT_S": str(TIMEOUT_S),
    }
    with run_host(env, path / "host.log") as running:
        yield running


def open_with(host: RunningHost, data: bytes) -> socket.socket:
    port = int(host.base_url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
    if data:
        sock.sendall(data)
    return sock


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the host sends until it closes the connection; fails if it is still open at
    ``deadline``."""
    received = b""
    with sock:
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"the connection is still open; got {received!r}") from None
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``raw``, all with a Content-Length."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        found.append((status, rest[:length]))
        raw = rest[length:]
    return found


def assert_timed_out(raw: bytes) -> None:
    [(status, body)] = responses(raw)
    assert status == 408
    assert json.loads(body)["error"]["code"] == "request_timeout"


def all_closed(sockets: list[socket.socket]) -> list[bytes]:
    deadline = time.monotonic() + BOUND_S
    return [read_until_closed(sock, deadline) for sock in sockets]


def normal_requests_succeed(host: RunningHost) -> None:
    with httpx.Client(base_url=host.base_url, headers=ALICE, timeout=BOUND_S) as client:
        assert client.get("/api/health").status_code == 200
        assert client.post("/api/chat", json={"message": "still here"}).status_code == 200


def test_slow_headers_are_408_and_closed(slow_host: RunningHost) -> None:
    half = b"GET /api/sessions HTTP/1.1\r\nHost: parley.test\r\nX-MS-CLIENT-"
    slow = [open_with(slow_host, half) for _ in range(SLOW_CLIENTS)]
    normal_requests_succeed(slow_host)  # on other connections, while those wait
    for raw in all_closed(slow):
        assert_timed_out(raw)
    normal_requests_succeed(slow_host)


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    slow_host: RunningHost,
) -> None:
    idle = [open_with(slow_host, b"") for _ in range(SLOW_CLIENTS)]
    normal_requests_succeed(slow_host)
    assert all_closed(idle) == [b""] * SLOW_CLIENTS


def test_slow_body_is_408_and_closed_and_the_function_sees_the_client_leave(
    slow_host: RunningHost,
) -> None:
    body = json.dumps({"message": "half of this never comes"}).encode()
    head = (
        "POST /api/chat HTTP/1.1\r\nHost: parley.test\r\nContent-Type: application/json\r\n"
        f"{PRINCIPAL}Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    slow = [open_with(slow_host, head + body[:10]) for _ in range(SLOW_CLIENTS)]
    normal_requests_succeed(slow_host)
    for raw in all_closed(slow):
        assert_timed_out(raw)
    normal_requests_succeed(slow_host)
    log = slow_host.log()
    # The function stopped reading as if the client had left: a 499, never an error.
    assert log.count('"status":499') >= SLOW_CLIENTS
    assert " ERROR " not in log and "Traceback" not in log


def test_the_next_request_on_a_kept_alive_connection_has_a_header_deadline(
    slow_host: RunningHost,
) -> None:
    first = b"GET /api/health HTTP/1.1\r\nHost: parley.test\r\n\r\n"
    with open_with(slow_host, first) as sock:
        answer = b""
        while b'{"status":"ok"}' not in answer:  # the whole first answer, however it comes
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert responses(answer) == [(200, b'{"status":"ok"}')]
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHo")
        [raw] = all_closed([sock])
    assert_timed_out(raw)


@pytest.mark.parametrize("name", ["DEVHOST_HEADER_TIMEOUT_S", "DEVHOST_BODY_TIMEOUT_S"])
@pytest.mark.parametrize("value", ["0", "-1", "abc", "601"])
def test_timeouts_out_of_range_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_the_host_does_not_start_with_a_bad_timeout(tmp_path: Path) -> None:
    env = {"AUTH_MODE": "dev", "SQLITE_PATH": str(tmp_path / "c.db"), "DEVHOST_BODY_TIMEOUT_S": "0"}
    with pytest.raises(RuntimeError, match="exited at start"), run_host(env, tmp_path / "h.log"):
        pass
