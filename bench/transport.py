"""Counting what the Cosmos SDK puts on the wire, at the transport (not the store's bookkeeping).

``CountingTransport`` wraps azure-core's aiohttp transport: every HTTP request the SDK sends
(retries and metadata reads included) is counted with its request line, headers and body, and
its response's status line, headers and body. TLS framing is not counted: it is the same per
request for both designs and says nothing about the data model.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from azure.core.pipeline.transport import AioHttpTransport

# Item paths: /dbs/<db>/colls/<coll>/docs[/<id>]
_DOCS = re.compile(r"/dbs/[^/]+/colls/[^/]+/docs(/[^/?]+)?/?$")

# Operation kinds the DESIGN budget speaks of, plus the rest.
KINDS = ("point_read", "batch", "query", "upsert", "create", "replace", "delete", "patch", "meta")


@dataclass
class Tally:
    requests: int = 0
    sent: int = 0
    received: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def minus(self, earlier: Tally) -> Tally:
        return Tally(
            self.requests - earlier.requests,
            self.sent - earlier.sent,
            self.received - earlier.received,
            self.kinds - earlier.kinds,
        )

    def copy(self) -> Tally:
        return Tally(self.requests, self.sent, self.received, Counter(self.kinds))


def _header(headers: Any, name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return ""


def classify(method: str, path: str, headers: Any) -> str:
    """The Cosmos operation a request is, from its method, path and headers."""
    match = _DOCS.search(path)
    if match is None:
        return "meta"  # account, database, container, partition key ranges
    if _header(headers, "x-ms-cosmos-is-batch-request").lower() == "true":
        return "batch"
    if _header(headers, "x-ms-documentdb-isquery").lower() == "true":
        return "query"
    has_id = match.group(1) is not None
    if method == "GET":
        return "point_read" if has_id else "query"  # read-feed counts as a query
    if method == "POST":
        upsert = _header(headers, "x-ms-documentdb-is-upsert").lower() == "true"
        return "upsert" if upsert else "create"
    return {"PUT": "replace", "DELETE": "delete", "PATCH": "patch"}.get(method, "meta")


def _headers_size(headers: Any) -> int:
    # "Name: value\r\n" per header, as HTTP/1.1 sends them.
    return sum(len(str(k)) + len(str(v)) + 4 for k, v in headers.items())


def _body_size(body: Any) -> int:
    if body is None:
        return 0
    if isinstance(body, str):
        return len(body.encode())
    if isinstance(body, bytes | bytearray):
        return len(body)
    return 0  # streams: the SDK never sends one for these operations


class CountingTransport(AioHttpTransport):
    """An aiohttp transport that tallies every request and response passing through it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tally = Tally()

    async def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        method = request.method.upper()
        path = request.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        request_line = len(f"{method} /{path} HTTP/1.1\r\n")
        sent = request_line + _headers_size(request.headers) + 2 + _body_size(request.data)
        self.tally.kinds[classify(method, "/" + path, request.headers)] += 1
        response = await super().send(request, **kwargs)
        # The SDK sends stream=False, so the body is already loaded.
        received = 17 + _headers_size(response.headers) + 2 + len(response.body() or b"")
        self.tally.requests += 1
        self.tally.sent += sent
        self.tally.received += received
        return response
