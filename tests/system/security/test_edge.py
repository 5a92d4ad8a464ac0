"""Limits and validation at the edge (functions/http.py, functions/sessions.py), and CORS."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from devhost.app import build_app
from functions.http import body_limit
from shared import runtime as runtime_module
from shared.config import ConfigError, load_settings
from shared.paging import listing_scope
from shared.turns import Turns
from tools.local.host import RunningHost, dev_headers, free_port, run_host

# Enough characters that the message, not the room left for the other fields, decides the
# body limit (a maximal message of escaped emoji is then larger than 6 bytes a character).
MAX_CHARS = 2000
BODY_LIMIT = body_limit(MAX_CHARS)
ALICE = dev_headers("alice@example.com")
UNKNOWN_ID = "s_" + "0" * 32
MALFORMED_IDS = [
    "abc",
    "s_" + "A" * 32,  # upper-case hex
    "s_" + "0" * 31,
    "s_" + "0" * 33,
    "S_" + "0" * 32,
    "s_" + "g" * 32,
    "alice@example.com",
    "s_" + "0" * 32 + " ",
    "%00",
]


@pytest.fixture(scope="module")
def edge_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    path = tmp_path_factory.mktemp("edge")
    env = {
        "AUTH_MODE": "dev",
        "SQLITE_PATH": str(path / "c.db"),
        "MAX_MESSAGE_CHARS": str(MAX_CHARS),
        "CORS_ALLOWED_ORIGINS": "https://app.example.com, https://admin.example.com",
    }
    with run_host(env, path / "host.log") as running:
        yield running


@pytest.fixture
def client(edge_host: RunningHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=edge_host.base_url, headers=ALICE, timeout=10) as http:
        yield http


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {
        "error": {"code": code, "message": response.json()["error"]["message"]}
    }
    assert response.headers["content-type"].startswith("application/json")


# ---- sizes -------------------------------------------------------------------------------------


def test_message_at_the_limit_is_accepted_and_over_it_is_413(client: httpx.Client) -> None:
    assert client.post("/api/chat", json={"message": "x" * MAX_CHARS}).status_code == 200
    assert_error(
        client.post("/api/chat", json={"message": "x" * (MAX_CHARS + 1)}), 413, "payload_too_large"
    )


EMOJI = "\U0001f600"  # outside the BMP: 4 bytes of UTF-8, 12 escaped (\ud83d\ude00)
# A maximal message, as a client's JSON library may send it: (text, ASCII escapes or raw UTF-8).
MAXIMAL_MESSAGES: dict[str, tuple[str, bool]] = {
    "emoji_escaped": (EMOJI * MAX_CHARS, True),  # what json.dumps sends by default
    "emoji_raw": (EMOJI * MAX_CHARS, False),
    "control_escaped": ("\x00" * MAX_CHARS, True),  # \u0000 whatever the library
    "bmp_escaped": ("\u00e9" * MAX_CHARS, True),
}


def json_body(message: str, ascii_escapes: bool) -> bytes:
    return json.dumps({"message": message}, ensure_ascii=ascii_escapes).encode()


@pytest.mark.parametrize("case", sorted(MAXIMAL_MESSAGES))
def test_a_maximal_message_fits_whatever_its_encoding(client: httpx.Client, case: str) -> None:
    text, ascii_escapes = MAXIMAL_MESSAGES[case]
    body = json_body(text, ascii_escapes)
    response = client.post("/api/chat", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, (len(body), response.text)
    assert response.json()["messages"][0]["content"] == text


@pytest.mark.parametrize("ascii_escapes", [True, False])
def test_one_character_more_is_413_by_the_message_rule(
    client: httpx.Client, ascii_escapes: bool
) -> None:
    body = json_body(EMOJI * (MAX_CHARS + 1), ascii_escapes)
    response = client.post("/api/chat", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")
    # The message's rule, which names the limit, not the body's size check.
    assert f"{MAX_CHARS} characters" in response.json()["error"]["message"]


def test_oversized_body_is_413_before_it_is_parsed(client: httpx.Client) -> None:
    # Not JSON at all: a 400 would mean the body was parsed first.
    headers = {"Content-Type": "application/json"}
    garbage = b"{" * (BODY_LIMIT + 1)
    assert_error(
        client.post("/api/chat", content=garbage, headers=headers), 413, "payload_too_large"
    )
    # The control: one byte less is within the limit, so it is parsed (and is not JSON).
    within = client.post("/api/chat", content=garbage[:-1], headers=headers)
    assert_error(within, 400, "invalid_request")


def test_body_declared_far_over_the_limit_is_413_before_it_is_sent(
    edge_host: RunningHost,
) -> None:
    """Refused on its Content-Length alone: the answer comes without one byte of the body."""
    port = int(edge_host.base_url.rsplit(":", 1)[1])
    head = (
        "POST /api/chat HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
        f"X-MS-CLIENT-PRINCIPAL-NAME: alice@example.com\r\nContent-Length: {BODY_LIMIT * 100}"
        "\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer


def test_oversized_chunked_body_is_413(client: httpx.Client) -> None:
    # No Content-Length to trust: the limit applies while the body streams in.
    def chunks() -> Iterator[bytes]:
        for _ in range(BODY_LIMIT // 1000 + 2):
            yield b" " * 1000

    response = client.post(
        "/api/chat", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


# ---- media type and shape ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
def test_only_json_bodies_are_accepted(client: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/chat", content=b'{"message": "hi"}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")


def test_json_with_charset_is_json(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert (
        client.post("/api/chat", content=b'{"message": "hi"}', headers=headers).status_code == 200
    )


def test_unknown_fields_are_ignored(client: httpx.Client) -> None:
    body = {"message": "hi", "email": "mallory@example.com", "role": "assistant", "extra": [1]}
    response = client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    assert [m["role"] for m in response.json()["messages"]] == ["user", "assistant"]


BAD_BODIES: dict[str, bytes] = {
    "message_number": b'{"message": 5}',
    "message_null": b'{"message": null}',
    "message_list": b'{"message": ["hi"]}',
    "message_missing": b'{"sessionId": null}',
    "session_number": b'{"message": "hi", "sessionId": 7}',
    "client_id_empty": b'{"message": "hi", "clientMessageId": ""}',
    "client_id_long": b'{"message": "hi", "clientMessageId": "' + b"c" * 101 + b'"}',
    "not_an_object": b'["message"]',
    "not_json": b'{"message": ',
    "not_utf8": b'{"message": "\xff"}',
    "deeply_nested": b"[" * 5000,
    "lone_surrogate": b'{"message": "\\ud800"}',
    "empty": b"",
    "whitespace_message": b'{"message": "  \\n\\t "}',
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_bodies_are_400(client: httpx.Client, case: str) -> None:
    headers = {"Content-Type": "application/json"}
    assert_error(
        client.post("/api/chat", content=BAD_BODIES[case], headers=headers), 400, "invalid_request"
    )


# ---- query -------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", "²", "1e2", " 5"])
def test_limit_out_of_range_is_400(client: httpx.Client, limit: str) -> None:
    assert_error(client.get("/api/sessions", params={"limit": limit}), 400, "invalid_request")


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_in_range_is_accepted(client: httpx.Client, limit: str) -> None:
    assert client.get("/api/sessions", params={"limit": limit}).status_code == 200


@pytest.mark.parametrize("token", ["garbage", "eyJ3IjoiYWN0aXZlIiwidCI6MX0", "%%%"])
def test_bad_continuation_token_is_400(client: httpx.Client, token: str) -> None:
    assert_error(
        client.get("/api/sessions", params={"continuationToken": token}), 400, "invalid_request"
    )


def _minted_token(scope: str, position: str, email: str) -> str:
    """A token in the shape the server used before tokens were sealed: an unkeyed owner digest
    anyone could compute, around a position of the minter's choosing."""
    owner = hashlib.sha256(f"page-token\n{email}".encode()).hexdigest()[:16]
    raw = json.dumps({"w": scope, "u": owner, "t": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A keyset position whose value holds a lone surrogate: once answered 500 on SQLite.
_SURROGATE_POSITION = base64.urlsafe_b64encode(b'["\\ud800","s_1"]').decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "scope"),
    [
        ("/api/sessions", {}, listing_scope("list:active")),
        ("/api/sessions", {"archived": "true"}, listing_scope("list:archive")),
        ("/api/search", {"q": "hello"}, listing_scope("search:active", "hello")),
    ],
)
def test_a_minted_continuation_token_is_400_before_it_is_decoded(
    client: httpx.Client, path: str, params: dict[str, str], scope: str
) -> None:
    """Only tokens the server sealed with its key are accepted: one minted by a client for its
    own address, with a position crafted to break the store, is refused with 400 (never 500)."""
    for position in (_SURROGATE_POSITION, '["2026-01-01", "s_1"]'):
        token = _minted_token(scope, position, "alice@example.com")
        assert_error(
            client.get(path, params={**params, "continuationToken": token}),
            400,
            "invalid_request",
        )


# ---- session ids: 404 without touching storage -------------------------------------------------


class CountingStore:
    """The real SQLite store, counting every call made to it (proves what was not called)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name == "close":
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return counted


def fresh_function_app() -> Any:
    """A fresh import of function_app.py: get_functions() may run once per app object, and
    other suites index the shared ``function_app.app``."""
    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location(
        "function_app_edge_test", root / "function_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.fixture(scope="module")
def counting_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CountingStore]]:
    """The local host's app in this process (uvicorn on a real socket) with a counting store:
    the only way to see inside the process that serves the request."""
    settings = load_settings(
        {"AUTH_MODE": "dev", "SQLITE_PATH": str(tmp_path_factory.mktemp("count") / "c.db")}
    )
    built = runtime_module.build_runtime(settings)
    store = CountingStore(built.service.store)
    built.service.store = store  # type: ignore[assignment]
    # The turn holds the store too: built again over the counting one.
    built.turns = Turns.build(store, built.model, settings, clock=built.clock)
    runtime_module._runtime = built
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(fresh_function_app(), run_timers=False), port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # polling a starting server, not waiting for time
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        runtime_module._runtime = None


Call = Callable[[httpx.Client, str], httpx.Response]
ID_CALLS: dict[str, Call] = {
    "get": lambda c, sid: c.get(f"/api/sessions/{sid}"),
    "delete": lambda c, sid: c.delete(f"/api/sessions/{sid}"),
    "chat": lambda c, sid: c.post("/api/chat", json={"message": "hi", "sessionId": sid}),
}


@pytest.mark.parametrize("call", sorted(ID_CALLS))
def test_malformed_session_ids_are_404_without_a_store_call(
    counting_host: tuple[str, CountingStore], call: str
) -> None:
    base_url, store = counting_host
    with httpx.Client(base_url=base_url, headers=ALICE, timeout=10) as client:
        for sid in MALFORMED_IDS:
            store.calls.clear()
            response = ID_CALLS[call](client, sid)
            assert_error(response, 404, "not_found")
            assert store.calls == [], (sid, store.calls)
        # The control: an id of our shape is looked up (so the counter does count).
        store.calls.clear()
        assert_error(ID_CALLS[call](client, UNKNOWN_ID), 404, "not_found")
        assert store.calls, "a well-formed id must reach the store"


def test_identity_is_checked_before_the_id(counting_host: tuple[str, CountingStore]) -> None:
    base_url, _ = counting_host
    assert_error(httpx.get(f"{base_url}/api/sessions/abc", timeout=10), 401, "unauthenticated")


# ---- CORS --------------------------------------------------------------------------------------


def preflight(host: RunningHost, origin: str) -> httpx.Response:
    return httpx.options(
        host.base_url + "/api/chat",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-ms-client-principal-name",
        },
        timeout=10,
    )


@pytest.mark.parametrize("origin", ["https://app.example.com", "https://admin.example.com"])
def test_preflight_from_an_allowed_origin(edge_host: RunningHost, origin: str) -> None:
    response = preflight(edge_host, origin)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_preflight_allows_every_method_the_api_has(edge_host: RunningHost, method: str) -> None:
    response = httpx.options(
        edge_host.base_url + "/api/sessions/s_" + "0" * 32,
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert method in response.headers["access-control-allow-methods"]


def test_a_cross_origin_page_may_read_retry_after(edge_host: RunningHost) -> None:
    """Retry-After (429, 503, a 202 of deleting everything) and an export's file name are
    readable by a page on another origin: the service exposes them itself."""
    response = httpx.get(
        edge_host.base_url + "/api/sessions",
        headers={"Origin": "https://app.example.com"},
        timeout=10,
    )
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"Retry-After", "Content-Disposition"} <= exposed


def test_a_cross_origin_page_may_send_and_read_parley_consistency(edge_host: RunningHost) -> None:
    """The web client on another origin sends the token back and reads the new one."""
    response = httpx.options(
        edge_host.base_url + "/api/sessions",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, parley-consistency",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "parley-consistency" in {h.strip() for h in allowed.split(",")}
    answer = httpx.get(
        edge_host.base_url + "/api/sessions",
        headers={"Origin": "https://app.example.com"},
        timeout=10,
    )
    exposed = {h.strip() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert "Parley-Consistency" in exposed


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "https://app.example.com.evil.test",
        "null",
        "http://app.example.com",
    ],
)
def test_other_origins_get_no_allow_origin(edge_host: RunningHost, origin: str) -> None:
    assert "access-control-allow-origin" not in preflight(edge_host, origin).headers
    response = httpx.get(
        edge_host.base_url + "/api/sessions", headers={**ALICE, "Origin": origin}, timeout=10
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_simple_request_from_an_allowed_origin(edge_host: RunningHost) -> None:
    origin = "https://app.example.com"
    response = httpx.get(
        edge_host.base_url + "/api/sessions", headers={**ALICE, "Origin": origin}, timeout=10
    )
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize("value", ["*", "https://app.example.com, *"])
def test_wildcard_origin_is_refused_by_config(value: str) -> None:
    with pytest.raises(ConfigError, match="CORS_ALLOWED_ORIGINS"):
        load_settings({"CORS_ALLOWED_ORIGINS": value})


def test_host_does_not_start_with_a_wildcard_origin(tmp_path: Path) -> None:
    env = {"AUTH_MODE": "dev", "SQLITE_PATH": str(tmp_path / "c.db"), "CORS_ALLOWED_ORIGINS": "*"}
    with pytest.raises(RuntimeError, match="exited at start"), run_host(env, tmp_path / "h.log"):
        pass
