"""A property-based fuzz of the whole API from openapi.yaml (schemathesis) against the real local
host: no 5xx, and every response (status, content type, headers, body) is what the document says.

Bounded: ``MAX_EXAMPLES`` cases per operation and generation mode (valid and invalid data), no
per-case deadline, no example database (every run starts fresh and is reproducible from its
printed seed). The number of cases sent is printed and must reach ``MIN_CASES``, so a generator
that quietly produced nothing fails the test.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import INVALID_HEADER_CHARS

from shared.groups.models import GroupMessageOut, GroupMessages
from shared.models import ChatResponse, ErrorResponse
from tools.local.host import RunningHost, dev_headers, run_host

MAX_EXAMPLES = 60
MIN_CASES = 2400
FUZZER = dev_headers("fuzzer@example.com")
# DELETE /api/sessions erases everything of its caller: it runs as a user of its own, so the
# fuzzer's session stays for the operations that need one that exists.
ERASER = dev_headers("eraser@example.com")
OPERATIONS = {
    "POST /api/chat",
    "GET /api/sessions",
    "DELETE /api/sessions",
    "GET /api/sessions/{sessionId}",
    "PATCH /api/sessions/{sessionId}",
    "DELETE /api/sessions/{sessionId}",
    "GET /api/sessions/{sessionId}/messages",
    "PUT /api/sessions/{sessionId}/messages/{messageId}/feedback",
    "DELETE /api/sessions/{sessionId}/messages/{messageId}/feedback",
    "GET /api/sessions/{sessionId}/stream",
    "POST /api/sessions/{sessionId}/stop",
    "GET /api/search",
    "GET /api/export",
    "GET /api/usage",
    "POST /api/import",
    "GET /api/health",
    "POST /api/sessions/{sessionId}/shares",
    "GET /api/shares",
    "GET /api/shares/{shareId}",
    "DELETE /api/shares/{shareId}",
    "GET /api/shares/{shareId}/views",
    "POST /api/shares/{shareId}/continue",
    "POST /api/sessions/{sessionId}/regenerate",
    "GET /api/sessions/{sessionId}/messages/{messageId}/versions",
    "POST /api/sessions/{sessionId}/fork",
    "POST /api/groups",
    "GET /api/groups",
    "GET /api/groups/{groupId}",
    "PATCH /api/groups/{groupId}",
    "DELETE /api/groups/{groupId}",
    "POST /api/groups/{groupId}/members",
    "DELETE /api/groups/{groupId}/members/{email}",
    "GET /api/groups/{groupId}/messages",
    "POST /api/groups/{groupId}/messages",
    "POST /api/realtime/join",
    "GET /api/realtime/negotiate",
}
NO_INPUT = {
    "GET /api/health",
    "GET /api/export",
    "GET /api/usage",
    "GET /api/realtime/negotiate",
}
# Operations also fuzzed on a group of the fuzzer's own (its owner); the deletes each on a
# group of their own, so the others keep theirs.
ON_EXISTING_GROUP = {
    "GET /api/groups/{groupId}",
    "PATCH /api/groups/{groupId}",
    "POST /api/groups/{groupId}/members",
    "GET /api/groups/{groupId}/messages",
    "POST /api/groups/{groupId}/messages",
    "DELETE /api/groups/{groupId}",
    "DELETE /api/groups/{groupId}/members/{email}",
}
# Operations also fuzzed on the fuzzer's own session (and its answer), so that their 200
# answers are checked too, not only their 404s.
ON_EXISTING = {
    "GET /api/sessions/{sessionId}",
    "PATCH /api/sessions/{sessionId}",
    "GET /api/sessions/{sessionId}/messages",
    "PUT /api/sessions/{sessionId}/messages/{messageId}/feedback",
    "DELETE /api/sessions/{sessionId}/messages/{messageId}/feedback",
    "GET /api/sessions/{sessionId}/stream",
    "POST /api/sessions/{sessionId}/stop",
    "POST /api/sessions/{sessionId}/shares",
    "POST /api/sessions/{sessionId}/regenerate",
    "GET /api/sessions/{sessionId}/messages/{messageId}/versions",
    "POST /api/sessions/{sessionId}/fork",
}
# Operations also fuzzed on a share of the fuzzer's session; the revoke on one of its own.
ON_EXISTING_SHARE = {
    "GET /api/shares/{shareId}",
    "GET /api/shares/{shareId}/views",
    "POST /api/shares/{shareId}/continue",
    "DELETE /api/shares/{shareId}",
}


def sse_stream_conforms(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """The document can only say what one event looks like (its ``data`` is JSON text, which
    schemathesis does not parse): check the order of the events and the JSON in each."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("text/event-stream"):
        return None
    events = [
        dict(line.split(": ", 1) for line in block.splitlines())
        for block in response.content.decode("utf-8").split("\n\n")
        if block.strip()
    ]
    names = [event["event"] for event in events]
    if names[0] == "message":  # a group question: the stored message, deltas, then the end
        assert names[-1] in ("done", "error") and set(names[1:-1]) <= {"delta"}, names
        GroupMessageOut.model_validate(json.loads(events[0]["data"])["message"])
        last = json.loads(events[-1]["data"])
        if names[-1] == "done":
            GroupMessages.model_validate(last)
        else:
            ErrorResponse.model_validate(last)
        return True
    if case.path.endswith("/stream"):
        # A followed answer: resume, deltas, then done or error; or done alone.
        assert names[-1] in ("done", "error"), names
        assert names == ["done"] or (names[0] == "resume" and set(names[1:-1]) <= {"delta"})
        last = json.loads(events[-1]["data"])
        if names[-1] == "done":
            assert isinstance(last["messages"], list) and len(last["messages"]) <= 1
        else:
            ErrorResponse.model_validate(last)
        return True
    assert names[0] == "session" and names[-1] in ("done", "error"), names
    assert set(names[1:-1]) <= {"delta", "title"}, names
    assert "title" not in names or names.index("title") == len(names) - 2, names
    first = json.loads(events[0]["data"])
    last = json.loads(events[-1]["data"])
    if names[-1] == "done":
        ChatResponse.model_validate({**first, **last})
    else:
        ErrorResponse.model_validate(last)
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    sse_stream_conforms,
]


@pytest.fixture(scope="module")
def fuzz_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    path = tmp_path_factory.mktemp("fuzz")
    env = {"AUTH_MODE": "dev", "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(path / "c.db")}
    with run_host(env, path / "host.log") as running:
        yield running


@pytest.fixture(scope="module")
def existing_session(fuzz_host: RunningHost) -> str:
    """A session of the fuzzer's own, so that get and delete also meet ids that exist."""
    response = httpx.post(
        fuzz_host.base_url + "/api/chat", json={"message": "seed"}, headers=FUZZER, timeout=10
    )
    assert response.status_code == 200, response.text
    session_id: str = response.json()["sessionId"]
    return session_id


def _share(host: RunningHost, session_id: str) -> str:
    response = httpx.post(
        f"{host.base_url}/api/sessions/{session_id}/shares",
        json={"audience": "signed_in"},
        headers=FUZZER,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    share_id: str = response.json()["shareId"]
    return share_id


def _group(host: RunningHost) -> str:
    response = httpx.post(
        f"{host.base_url}/api/groups",
        json={"name": "fuzz", "members": ["member@example.com"]},
        headers=FUZZER,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    group_id: str = response.json()["groupId"]
    return group_id


# Headers that frame the HTTP message itself: a case that sets them to anything is a malformed
# request (RFC 9112, section 6) that the server's HTTP parser refuses before any code of the app
# runs (uvicorn here, the front end in Azure), with a plain-text 400 of its own.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host"})


def is_http(headers: Mapping[str, Any] | None) -> bool:
    """Whether a case's headers make an HTTP request at all: no framing header of its own, and
    no value with a control character (RFC 9110, section 5.5). Everything else a client can
    send, unexpected headers and invalid values included, goes to the app."""
    return not any(
        name.lower() in FRAMING_HEADERS
        or (isinstance(value, str) and any(c in INVALID_HEADER_CHARS for c in value))
        for name, value in (headers or {}).items()
    )


def _operations(host: RunningHost) -> list[APIOperation]:
    # Loaded from the host, so the fuzz also proves the served document is usable.
    schema = schemathesis.openapi.from_url(host.base_url + "/api/openapi.yaml")
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(
    operation: APIOperation,
    mode: GenerationMode,
    send: Callable[[Case], None],
    **fixed: Any,
) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def run(case: Case) -> None:
        send(case)

    run()


def test_fuzz_the_whole_api(
    fuzz_host: RunningHost, existing_session: str, capsys: pytest.CaptureFixture[str]
) -> None:
    counts: dict[str, int] = {}
    existing_share = _share(fuzz_host, existing_session)
    existing_group = _group(fuzz_host)

    def sender(label: str, headers: dict[str, str]) -> Callable[[Case], None]:
        def send(case: Case) -> None:
            assume(is_http(case.headers))
            counts[label] = counts.get(label, 0) + 1
            case.call_and_validate(
                base_url=fuzz_host.base_url, headers=headers, checks=CHECKS, timeout=30
            )

        return send

    operations = _operations(fuzz_host)
    assert {op.label for op in operations} == OPERATIONS
    for operation in operations:
        headers = ERASER if operation.label == "DELETE /api/sessions" else FUZZER
        # Health, export, usage and negotiate take no input at all: nothing to make invalid.
        modes = [GenerationMode.POSITIVE]
        if operation.label not in NO_INPUT:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            _fuzz(operation, mode, sender(f"{operation.label} {mode.value}", headers))
        if operation.label == "POST /api/chat":
            # The Server-Sent Events variant of the same operation.
            stream = {**FUZZER, "Accept": "text/event-stream"}
            _fuzz(operation, GenerationMode.POSITIVE, sender("POST /api/chat sse", stream))
        if operation.label in ON_EXISTING:
            path = {"sessionId": existing_session}
            if "{messageId}" in operation.label:
                path["messageId"] = f"{existing_session}:{2:08d}"  # the seed's answer
            label = f"{operation.label} existing"
            _fuzz(
                operation,
                GenerationMode.POSITIVE,
                sender(label, FUZZER),
                path_parameters=path,
            )
            if operation.label == "POST /api/sessions/{sessionId}/regenerate":
                stream = {**FUZZER, "Accept": "text/event-stream"}
                _fuzz(
                    operation,
                    GenerationMode.POSITIVE,
                    sender(f"{label} sse", stream),
                    path_parameters=path,
                )
        if operation.label in ON_EXISTING_SHARE:
            # The revoke gets a share of its own: the others keep reading theirs.
            revoking = operation.label.startswith("DELETE")
            share_id = _share(fuzz_host, existing_session) if revoking else existing_share
            _fuzz(
                operation,
                GenerationMode.POSITIVE,
                sender(f"{operation.label} existing", FUZZER),
                path_parameters={"shareId": share_id},
            )

        if operation.label in ON_EXISTING_GROUP:
            deleting = operation.label.startswith("DELETE")
            group_id = _group(fuzz_host) if deleting else existing_group
            path = {"groupId": group_id}
            if "{email}" in operation.label:
                path["email"] = "member@example.com"
            _fuzz(
                operation,
                GenerationMode.POSITIVE,
                sender(f"{operation.label} existing", FUZZER),
                path_parameters=path,
            )
        if operation.label == "POST /api/groups/{groupId}/messages":
            # The assistant asked, as Server-Sent Events.
            stream = {**FUZZER, "Accept": "text/event-stream"}
            _fuzz(
                operation,
                GenerationMode.POSITIVE,
                sender(f"{operation.label} sse", stream),
                path_parameters={"groupId": existing_group},
            )

    total = sum(counts.values())
    with capsys.disabled():
        print(f"\nschemathesis fuzz: {total} cases sent ({counts})")
    assert total >= MIN_CASES, counts
    # The host survived all of it and logged no unhandled error.
    assert "unhandled" not in fuzz_host.log()


def _raw_post(host: RunningHost, path: str, header: bytes) -> bytes:
    """A request as bytes on a socket of its own: no HTTP client would send these."""
    port = int(host.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: fuzz\r\n"
            b"X-MS-CLIENT-PRINCIPAL-NAME: fuzzer@example.com\r\n"
            + header
            + b"\r\nConnection: close\r\n\r\n"
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("name", "value"),
    [("Content-Length", '"9H|T=G-Qc1'), ("Parley-Consistency", "a\x00b"), ("X-Any", "a\x0bb")],
)
def test_what_the_fuzz_leaves_out_never_reaches_the_app(
    fuzz_host: RunningHost, existing_session: str, name: str, value: str
) -> None:
    # The cases is_http turns away are refused by the server's HTTP parser itself: a plain-text
    # 400, none of the app's headers (no Parley-Consistency) and no JSON error.
    assert not is_http({name: value})
    answer = _raw_post(
        fuzz_host,
        f"/api/sessions/{existing_session}/stop",
        f"{name}: {value}".encode("latin-1"),
    )
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 400 ")
    assert b"parley-consistency" not in head and b"application/json" not in head


def test_the_fuzz_still_sends_what_a_client_can() -> None:
    # Unknown headers, empty values, obs-text and tabs are HTTP: they go to the app.
    assert is_http({"X-Unknown": "", "Parley-Consistency": "caf\xe9\tx", "Authorization": "K"})
    assert is_http(None)
