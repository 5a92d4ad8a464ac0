"""Cosmos failures that outlive the SDK's retries become the API's errors, within the request's
storage budget.

Servers of our own on real sockets stand in for a Cosmos account in trouble: a port that
refuses connections; an HTTP server that answers the account read (the SDK's first call) and
then a fixed error status for every request, or a transactional batch whose operation failed
that way (207); and one that accepts connections and never answers (a hung account, as a
SIGSTOPped server is). The 413 case runs on the real local server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.errors import PayloadTooLarge, StorageUnavailable
from shared.models import MessageRecord, SessionRecord
from shared.storage.cosmos import CosmosStore
from tests.support.databases import CosmosDatabase
from tools.local.cosmos import EMULATOR_KEY
from tools.local.host import free_port

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

SID = "s_" + "1" * 32
T0 = datetime(2031, 1, 1, tzinfo=UTC)
FAST = {
    "retry_total": 1,
    "retry_backoff_max": 1,
    "retry_throttle_total": 1,
    "connection_timeout": 2,
}


def store_at(endpoint: str, database: str = "chat", *, timeout_s: float = 20.0) -> CosmosStore:
    return CosmosStore(
        endpoint,
        EMULATOR_KEY,
        database=database,
        container="Conversations",
        archive_container="ConversationsArchive",
        verify_tls=False,
        client_options=FAST,
        timeout_s=timeout_s,
    )


def failing_server(
    status: int, headers: dict[str, str], *, as_batch_result: bool = False
) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if self.command == "GET" and self.path == "/":
                endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/"
                body: dict[str, Any] = {
                    "id": "fake",
                    "writableLocations": [{"name": "local", "databaseAccountEndpoint": endpoint}],
                    "readableLocations": [{"name": "local", "databaseAccountEndpoint": endpoint}],
                    "enableMultipleWriteLocations": False,
                    "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
                }
                self._send(200, body, {})
            elif as_batch_result:
                # A batch whose one operation failed: 207 with that operation's status.
                results = [{"statusCode": status, "requestCharge": 0}]
                self._send(207, results, headers)
            else:
                self._send(status, {"code": "Busy", "message": "try later"}, headers)

        def _send(self, code: int, body: Any, extra: dict[str, str]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def read_session(endpoint: str, *, timeout_s: float = 20.0) -> None:
    async def main() -> None:
        store = store_at(endpoint, timeout_s=timeout_s)
        try:
            # A guard against a hang in this test, not a timing assertion.
            await asyncio.wait_for(
                store.get_session("a@example.com", SID, where="active"), timeout=120
            )
        finally:
            await store.close()

    asyncio.run(main())


def write_session(endpoint: str) -> None:
    async def main() -> None:
        store = store_at(endpoint)
        try:
            await store.append(session_record(), [], expected_etag=None)
        finally:
            await store.close()

    asyncio.run(main())


def session_record(email: str = "a@example.com") -> SessionRecord:
    return SessionRecord(
        id=SID,
        email=email,
        title="t",
        preview="p",
        created_at=T0,
        updated_at=T0,
        message_count=1,
        last_seq=1,
    )


def test_refused_connections_are_storage_unavailable() -> None:
    endpoint = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StorageUnavailable) as caught:
        read_session(endpoint)
    assert caught.value.retry_after_s and caught.value.retry_after_s > 0


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (429, {"x-ms-retry-after-ms": "1500", "x-ms-substatus": "3200"}, 2),
        (503, {}, 5),
        (408, {}, 5),
    ],
)
def test_busy_or_unreachable_answers_are_storage_unavailable(
    status: int, headers: dict[str, str], retry_after: int
) -> None:
    for endpoint, seen in failing_server(status, headers):
        with pytest.raises(StorageUnavailable) as caught:
            read_session(endpoint)
        assert caught.value.retry_after_s == retry_after
        # It got past the account read to the data requests, which the SDK retried.
        assert len([line for line in seen if "/dbs/" in line]) >= 2, seen


@pytest.mark.parametrize(("status", "retry_after"), [(429, 2), (503, 2), (408, 2), (449, 2)])
def test_a_batch_failing_that_way_is_storage_unavailable_too(status: int, retry_after: int) -> None:
    """The SDK raises CosmosBatchOperationError (not a CosmosHttpResponseError) for a batch
    whose operation failed; it must map like every other Cosmos error, not surface as a 500."""
    for endpoint, _ in failing_server(
        status, {"x-ms-retry-after-ms": "1200"}, as_batch_result=True
    ):
        with pytest.raises(StorageUnavailable) as caught:
            write_session(endpoint)
        assert caught.value.retry_after_s == retry_after


def test_a_hung_account_is_storage_unavailable_within_the_budget() -> None:
    """A server that accepts and never answers: the request's storage budget (SDK retries
    included) ends it with a 503 and Retry-After, instead of the SDK's 65 s per read."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        endpoint = f"https://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(StorageUnavailable) as caught:
            read_session(endpoint, timeout_s=0.5)
    assert caught.value.retry_after_s and caught.value.retry_after_s > 0


def test_an_item_over_2mb_is_payload_too_large(local_cosmos_database: CosmosDatabase) -> None:
    async def main() -> None:
        store = local_cosmos_database.store()
        big = MessageRecord(
            session_id=SID, seq=1, role="user", content="x" * (2100 * 1024), timestamp=T0
        )
        try:
            with pytest.raises(PayloadTooLarge):
                await store.append(session_record("big@example.com"), [big], expected_etag=None)
            assert await store.get_session("big@example.com", SID, where="active") is None
        finally:
            await store.close()

    asyncio.run(main())
