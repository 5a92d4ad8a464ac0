"""Counting what the Cosmos SDK puts on the wire, at the transport (not the store's bookkeeping).

``CountingTransport`` wraps azure-core's aiohttp transport (the async client Parley uses) and
``SyncCountingTransport`` its requests transport (the sync client LangChain's history uses).
Both log every HTTP request the SDK sends (retries and metadata reads included): its kind, when
it started and ended, its request line, headers and body, its response's status line, headers
and body, and the request charge the server put in ``x-ms-request-charge``. TLS framing is not
counted: it is the same per request for every design and says nothing about the data model.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# The modules themselves: the package exports these lazily, which type checkers see as Any.
from azure.core.pipeline.transport._aiohttp import AioHttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransport

from shared.storage.cosmos.client import transport_options

# Item paths: /dbs/<db>/colls/<coll>/docs[/<id>]
_DOCS = re.compile(r"/dbs/[^/]+/colls/[^/]+/docs(/[^/?]+)?/?$")

# What a kind does to the data, which is all the phase breakdown relies on: the store may move
# from a point read to a query, or split a batch, without the report changing.
READ_KINDS = frozenset({"point_read", "query", "query_plan"})
WRITE_KINDS = frozenset({"batch", "upsert", "create", "replace", "delete", "patch"})

CHARGE_HEADER = "x-ms-request-charge"


def role(kind: str) -> str:
    """``read``, ``write`` or ``meta`` (account, database, container, partition key ranges)."""
    if kind in READ_KINDS:
        return "read"
    return "write" if kind in WRITE_KINDS else "meta"


@dataclass(frozen=True)
class Request:
    """One HTTP exchange as the transport saw it. Times are ``time.perf_counter()`` seconds."""

    kind: str
    started: float
    ended: float
    sent: int
    received: int
    charge: float | None  # request units from x-ms-request-charge; None when absent

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Tally:
    requests: int = 0
    sent: int = 0
    received: int = 0
    request_units: float = 0.0
    charged: int = 0  # responses that carried a request charge
    kinds: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, requests: Iterable[Request]) -> Tally:
        tally = cls()
        for request in requests:
            tally.add(request)
        return tally

    def add(self, request: Request) -> None:
        self.requests += 1
        self.sent += request.sent
        self.received += request.received
        self.kinds[request.kind] += 1
        if request.charge is not None:
            self.request_units += request.charge
            self.charged += 1

    @property
    def bytes(self) -> int:
        return self.sent + self.received

    def ru(self) -> float | None:
        """Request units summed over the requests, or None when no response carried a charge."""
        return round(self.request_units, 2) if self.charged else None


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
    if _header(headers, "x-ms-cosmos-is-query-plan-request").lower() == "true":
        # The SDK asks the gateway how to run a query before some queries: a request of its
        # own, which a turn's request budget must see.
        return "query_plan"
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


def _charge(headers: Any) -> float | None:
    value = _header(headers, CHARGE_HEADER)
    try:
        return float(value) if value else None
    except ValueError:  # a malformed charge is reported as absent, not as a broken run
        return None


class _Recorder:
    """What both transports share: sizing a request, classifying it, logging the exchange."""

    def _start_log(self) -> None:
        self.tally = Tally()
        self.log: list[Request] = []

    @staticmethod
    def _outgoing(request: Any) -> tuple[str, int]:
        method = request.method.upper()
        path = request.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        request_line = len(f"{method} /{path} HTTP/1.1\r\n")
        sent = request_line + _headers_size(request.headers) + 2 + _body_size(request.data)
        return classify(method, "/" + path, request.headers), sent

    def _record(self, kind: str, sent: int, started: float, response: Any | None) -> None:
        received, charge = 0, None
        if response is not None:  # None: the exchange failed, what was sent still counts
            # The SDK sends stream=False, so the body is already loaded.
            body = response.body() or b""
            received = 17 + _headers_size(response.headers) + 2 + len(body)
            charge = _charge(response.headers)
        entry = Request(kind, started, time.perf_counter(), sent, received, charge)
        self.log.append(entry)
        self.tally.add(entry)


class CountingTransport(AioHttpTransport, _Recorder):
    """An aiohttp transport that logs every request and response passing through it,
    configured as the store configures its own."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**transport_options(), **kwargs})
        self._start_log()

    async def send(self, request: Any, **kwargs: Any) -> Any:
        kind, sent = self._outgoing(request)
        started = time.perf_counter()
        response = None
        try:
            response = await super().send(request, **kwargs)
            return response
        finally:
            self._record(kind, sent, started, response)


class SyncCountingTransport(RequestsTransport, _Recorder):
    """The same for the sync client (requests), with the same tally and classification."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._start_log()

    def send(self, request: Any, **kwargs: Any) -> Any:
        kind, sent = self._outgoing(request)
        started = time.perf_counter()
        response = None
        try:
            response = super().send(request, **kwargs)
            return response
        finally:
            self._record(kind, sent, started, response)
