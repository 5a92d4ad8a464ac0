"""The connection to Cosmos DB: one entered client per event loop, bounded calls, mapped errors.

- The client is *entered* (``__aenter__``): that is where the SDK reads the account, learns
  its Session consistency and starts tracking session tokens, so this instance reads its own
  writes (``docs/design.md``, "Consistency").
- Every call is bounded by what is left of the request's storage budget
  (``shared.deadline``), SDK retries included: a hung or throttled account becomes a 503 with
  Retry-After, never a request held near the Functions timeout.
- Failures that outlived the SDK's retries become API errors (408/429/449/503 -> 503 with the
  service's Retry-After, 413 -> payload_too_large), for single operations and batches alike.
- Locally (emulator key, loopback endpoint) the database and containers are created on first
  use, tolerating a concurrent creator, and re-created if the server restarted empty; in Azure
  the Pulumi program owns them and a vanished container is a 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import AioHttpTransport
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient, DatabaseProxy
from azure.cosmos.exceptions import (
    CosmosBatchOperationError,
    CosmosClientTimeoutError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
)

from shared import consistency
from shared.config import proxy_configured
from shared.deadline import remaining
from shared.errors import DEFAULT_RETRY_AFTER_S, InvalidRequest, PayloadTooLarge, StorageUnavailable
from shared.storage.base import MAX_BATCH_OPERATIONS, Where
from shared.storage.containers import ContainerSpec, groups_spec, shares_spec

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

log = logging.getLogger("parley.storage.cosmos")
# The SDK's HTTP logging policy writes request headers at INFO, and the partition key header
# is the caller's email: give it a logger of ours that only passes warnings and worse.
sdk_http_log = logging.getLogger("parley.storage.cosmos.sdk_http")
sdk_http_log.setLevel(logging.WARNING)

T = TypeVar("T")
# Which container a call goes to: the two of conversations, the shares or the groups container.
Target = Where | Literal["shares", "groups"]
BatchOp = tuple[str, tuple[Any, ...]] | tuple[str, tuple[Any, ...], dict[str, Any]]

# Statuses that mean "busy or briefly unreachable": the SDK has already retried them.
UNAVAILABLE_STATUSES = frozenset({408, 429, 449, 503})
# The outcomes of a conditional write that lost a race: the caller re-reads and decides.
RACE_STATUSES = frozenset({404, 409, 412})
OWNER_RESOURCE_NOT_FOUND = 1003  # the database or container itself is missing
_ITEM_PATH = re.compile(r"/docs/[^/]+$")  # a request that addresses one item

# The SDK's own retries. Throttling (429) is retried up to 9 times within 30 s of waiting (the
# SDK honours the service's x-ms-retry-after-ms); connection and 5xx retries are capped; one
# socket read waits at most READ_TIMEOUT_S (the SDK's default is 65 s). The request's storage
# budget bounds all of it.
READ_TIMEOUT_S = 10
CLIENT_OPTIONS: dict[str, Any] = {
    "retry_throttle_total": 9,
    "retry_throttle_backoff_max": 30,
    "retry_total": 3,
    "retry_backoff_max": 10,
    "connection_timeout": 5,
    "read_timeout": READ_TIMEOUT_S,
    # Non-ASCII text goes out as UTF-8 (1-4 bytes a character) instead of \\uXXXX escapes
    # (6-12): fewer bytes, fewer request units, for every language but English.
    "enable_compact_utf8_item_writes": True,
    # Parley-Consistency: every read also carries the session tokens the caller brought, and
    # every response's token is recorded for the caller (shared/consistency.py).
    "raw_request_hook": consistency.request_hook,
    "raw_response_hook": consistency.response_hook,
}
# catch_up's conditional write: an id no item has and an etag no item has, so it never applies.
CATCH_UP_ID = "parley-catch-up"
CATCH_UP_ETAG = '"parley-never-matches"'


def transport_options() -> dict[str, Any]:
    """Options of the SDK's aiohttp transport. Reading the environment (the default) makes
    aiohttp look up ~/.netrc and the proxy variables in a worker thread on every request: two
    thread hops per request, 40% of the client's CPU in an archival pass. It is read only when
    a proxy is configured (``proxy_config`` in the client options works either way)."""
    return {"use_env_settings": proxy_configured()}


# A transactional batch request may not exceed 2 MB as sent; our chunks stay below this,
# measured as the worst case (ASCII-escaped JSON) plus each operation's envelope.
MAX_BATCH_BYTES = 1_800_000
OP_ENVELOPE_BYTES = 200


class BatchRefused(Exception):
    """A transactional batch applied nothing because one operation lost a race (404, 409 or
    412 at ``index``). Internal: callers translate it into their own outcome."""

    def __init__(self, status: int, index: int) -> None:
        super().__init__(f"batch operation {index} refused with {status}")
        self.status = status
        self.index = index


class ContainerGone(Exception):
    """The database or container is missing (the local server restarted empty)."""


def retry_after_s(headers: Any) -> int:
    raw = (headers or {}).get("x-ms-retry-after-ms")
    try:
        return max(1, math.ceil(float(raw) / 1000)) if raw is not None else DEFAULT_RETRY_AFTER_S
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S


def status_of(error: CosmosHttpResponseError | CosmosBatchOperationError) -> int:
    return int(error.status_code or 0)


def owner_missing(error: CosmosHttpResponseError) -> bool:
    """A 404 that means the database or container is gone, not an item: Cosmos says so with
    substatus 1003, and a 404 to a request that did not address an item (the SDK's read of the
    container's properties, a query, a batch) can only mean that too."""
    if status_of(error) != 404:
        return False
    if error.sub_status == OWNER_RESOURCE_NOT_FOUND:
        return True
    request = getattr(getattr(error, "response", None), "request", None)
    path = urlsplit(str(getattr(request, "url", ""))).path.rstrip("/")
    return not _ITEM_PATH.search(path)


def _unavailable(operation: str, status: int, headers: Any) -> StorageUnavailable:
    log.warning("cosmos_unavailable", extra={"operation": operation, "status": status})
    return StorageUnavailable(retry_after_s=retry_after_s(headers))


@contextmanager
def mapped(operation: str) -> Iterator[None]:
    """SDK failures that outlived the SDK's retries become API errors; races propagate."""
    try:
        yield
    except CosmosBatchOperationError as exc:
        status = status_of(exc)
        if status in RACE_STATUSES:
            raise BatchRefused(status, int(exc.error_index or 0)) from exc
        if status in UNAVAILABLE_STATUSES:
            raise _unavailable(operation, status, exc.headers) from exc
        if status == 413:
            raise PayloadTooLarge("The conversation item is too large to store.") from exc
        raise
    except CosmosHttpResponseError as exc:
        status = status_of(exc)
        if owner_missing(exc):
            raise ContainerGone() from exc
        if status in UNAVAILABLE_STATUSES:
            raise _unavailable(operation, status, exc.headers) from exc
        if status == 413:
            raise PayloadTooLarge("The conversation item is too large to store.") from exc
        raise
    except (
        ServiceRequestError,
        ServiceResponseError,
        CosmosClientTimeoutError,
        TimeoutError,
    ) as exc:
        log.warning("cosmos_unreachable", extra={"operation": operation})
        raise StorageUnavailable() from exc


def op_bytes(op: BatchOp) -> int:
    """An operation's size as the SDK may send it (escaped: the worst case)."""
    return len(json.dumps(op[1], separators=(",", ":"))) + OP_ENVELOPE_BYTES


def chunks(ops: list[BatchOp], *, room: int = MAX_BATCH_OPERATIONS) -> Iterator[list[BatchOp]]:
    """``ops`` cut into batches of at most ``room`` operations and MAX_BATCH_BYTES."""
    current: list[BatchOp] = []
    size = 0
    for op in ops:
        cost = op_bytes(op)
        if current and (len(current) >= room or size + cost > MAX_BATCH_BYTES):
            yield current
            current, size = [], 0
        current.append(op)
        size += cost
    if current:
        yield current


def _remember_session_token(container: ContainerProxy, headers: Any) -> None:
    """Record a transactional batch's session token in the client's session container.

    azure-cosmos 4.17.1's aio client records the token of every write but a batch
    (``_cosmos_client_connection_async.Batch`` never updates the session), so after a batch the
    next read of this instance would carry an older token and could be served by a replica
    that has not seen the batch: an instance not reading its own writes. Every turn writes by
    batch, so the token is recorded here (``tests/shared/storage/cosmos/test_connection.py``
    pins it on a local server whose replicas lag)."""
    connection: Any = container.client_connection
    session = getattr(connection, "session", None)
    if session is not None and headers and "x-ms-session-token" in headers:
        session.update_session(connection, {}, headers)


class CosmosConnection:
    """One client per event loop (aiohttp sessions belong to one loop), made on first use."""

    def __init__(
        self,
        endpoint: str,
        credential: str | AsyncTokenCredential,
        *,
        database: str,
        specs: tuple[ContainerSpec, ContainerSpec],
        verify_tls: bool,
        shares: ContainerSpec | None = None,
        groups: ContainerSpec | None = None,
        bootstrap: bool,
        client_options: dict[str, Any],
        timeout_s: float,
    ) -> None:
        self._endpoint = endpoint
        self._credential = credential
        self._database = database
        self._specs = specs
        self._shares = shares or shares_spec()
        self._groups = groups or groups_spec()
        self._verify_tls = verify_tls
        self._bootstrap = bootstrap
        self._client_options = {**CLIENT_OPTIONS, **client_options}
        self.timeout_s = timeout_s
        self._client: CosmosClient | None = None
        self._containers: dict[Target, ContainerProxy] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    # ---- the client ----------------------------------------------------------------------------

    async def container(self, where: Target) -> ContainerProxy:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a fresh asyncio.run): the old client's sessions are unusable.
            self._client, self._containers, self._loop = None, {}, loop
            self._lock = asyncio.Lock()
        if not self._containers:
            assert self._lock is not None
            async with self._lock:  # concurrent first calls make one client
                if not self._containers:
                    await self._connect()
        return self._containers[where]

    async def _connect(self) -> None:
        if self._client is None:
            options = dict(self._client_options)
            if "transport" not in options:
                options["transport"] = AioHttpTransport(**transport_options())
            client = CosmosClient(
                self._endpoint,
                self._credential,
                connection_verify=self._verify_tls,
                logger=sdk_http_log,
                **options,
            )
            try:
                with mapped("connect"):
                    await client.__aenter__()  # account, consistency, session tokens
            except BaseException:
                await client.close()
                raise
            self._client = client
        with mapped("connect"):
            database = await self._database_proxy(self._client)
        active, archive = self._specs
        self._containers = {
            "active": database.get_container_client(active.name),
            "archive": database.get_container_client(archive.name),
            "shares": database.get_container_client(self._shares.name),
            "groups": database.get_container_client(self._groups.name),
        }

    async def _database_proxy(self, client: CosmosClient) -> DatabaseProxy:
        if not self._bootstrap:
            # Data-plane RBAC cannot create databases or containers, and in Azure the Pulumi
            # program owns them.
            return client.get_database_client(self._database)
        try:
            database = await client.create_database_if_not_exists(self._database)
        except CosmosResourceExistsError:  # another process created it between check and create
            database = client.get_database_client(self._database)
        for spec in (*self._specs, self._shares, self._groups):
            with suppress(CosmosResourceExistsError):
                await database.create_container_if_not_exists(
                    spec.name,
                    partition_key=PartitionKey(spec.partition_key_path),
                    indexing_policy=spec.indexing_policy,
                    default_ttl=spec.default_ttl,
                    full_text_policy=spec.full_text_policy,
                )
        log.info("cosmos_bootstrapped", extra={"database": self._database})
        return database

    async def close(self) -> None:
        client, self._client, self._containers = self._client, None, {}
        if client is not None:
            await client.__aexit__(None, None, None)
        if not isinstance(self._credential, str):
            await self._credential.close()

    # ---- bounded, mapped calls -----------------------------------------------------------------

    async def call(
        self, operation: str, where: Target, fn: Callable[[ContainerProxy, float], Awaitable[T]]
    ) -> T:
        """Run one SDK call against ``where`` within what is left of the storage budget. A
        container that vanished is re-created once locally, else answered 503."""
        for attempt in range(2):
            budget = remaining(self.timeout_s)
            if budget <= 0:
                log.warning("cosmos_budget_spent", extra={"operation": operation})
                raise StorageUnavailable(retry_after_s=1)
            try:
                async with asyncio.timeout(budget):
                    container = await self.container(where)
                    with mapped(operation):
                        return await fn(container, budget)
            except TimeoutError as exc:
                log.warning("cosmos_timeout", extra={"operation": operation})
                raise StorageUnavailable(retry_after_s=1) from exc
            except ContainerGone as exc:
                log.warning("cosmos_container_gone", extra={"operation": operation})
                if not self._bootstrap or attempt:
                    raise StorageUnavailable() from exc
                self._containers = {}  # the next call creates them again
        raise AssertionError("unreachable")  # pragma: no cover

    async def read(self, where: Target, item_id: str, email: str) -> dict[str, Any] | None:
        async def read(container: ContainerProxy, budget: float) -> dict[str, Any] | None:
            try:
                item: dict[str, Any] = await container.read_item(
                    item_id, partition_key=email, timeout=budget
                )
            except CosmosHttpResponseError as exc:
                if status_of(exc) == 404 and not owner_missing(exc):
                    return None  # no such item
                raise
            return item

        return await self.call("read", where, read)

    async def catch_up(self, email: str) -> bool:
        """Make this context's next reads of ``email``'s partition, in both containers, see
        every write acknowledged before this call, whichever replica serves them.

        A write is served by the partition's primary, and its response's session token covers
        every write the partition committed before it; Cosmos stamps that token on a write's
        404 and 412 too (the local server does the same; ``tests/tools/cosmos/test_fidelity.py``).
        So one conditional replace that can never apply (an etag no item has) brings the latest
        token, which ``consistency.response_hook`` records for this context's reads. False when
        a response brought no token: the caller must not trust a read that missed."""
        caught = True
        wheres: tuple[Where, Where] = ("active", "archive")
        for where, spec in zip(wheres, self._specs, strict=True):
            field = spec.partition_key_path.strip("/")
            caught = await self.catch_up_item(where, CATCH_UP_ID, field, email) and caught
        return caught

    async def catch_up_item(self, where: Target, item_id: str, key_field: str, key: str) -> bool:
        """``catch_up`` for one partition of ``where`` (the one ``key`` names): a replace of
        ``item_id`` with an ETag no item has, whose 404 or 412 brings the partition's latest
        session token; False when it brought none."""
        consistency.ensure()

        async def probe(container: ContainerProxy, budget: float) -> bool:
            try:
                await container.replace_item(
                    item_id,
                    {"id": item_id, key_field: key},
                    etag=CATCH_UP_ETAG,
                    match_condition=MatchConditions.IfNotModified,
                    timeout=budget,
                )
            except CosmosHttpResponseError as exc:
                if status_of(exc) in (404, 412) and not owner_missing(exc):
                    headers = exc.headers or {}
                    return bool(headers.get(consistency.SESSION_TOKEN_HEADER))
                raise
            raise AssertionError("a replace with an etag no item has applied")

        return await self.call("catch_up", where, probe)

    async def create(self, where: Where, body: dict[str, Any]) -> bool:
        """Create an item; False (nothing written) when one with its id is there already. A
        create, never an upsert: the first writer wins, whoever comes second learns it."""

        async def create(container: ContainerProxy, budget: float) -> bool:
            try:
                await container.create_item(body, timeout=budget)
            except CosmosResourceExistsError:
                return False
            return True

        return await self.call("create", where, create)

    async def patch(
        self,
        where: Where,
        email: str,
        item_id: str,
        ops: list[dict[str, Any]],
        *,
        filter_predicate: str,
    ) -> int:
        """A conditional patch of one item, answered without its body (``no_response``: the
        item is not sent back, which for a long answer's checkpoints is most of their bytes).
        200 when applied, 412 when the predicate does not hold, 404 when there is no item."""

        async def patch(container: ContainerProxy, budget: float) -> int:
            try:
                await container.patch_item(
                    item_id,
                    partition_key=email,
                    patch_operations=ops,
                    filter_predicate=filter_predicate,
                    no_response=True,
                    timeout=budget,
                )
            except CosmosHttpResponseError as exc:
                status = status_of(exc)
                if status == 412 or (status == 404 and not owner_missing(exc)):
                    return status
                raise
            return 200

        return await self.call("patch", where, patch)

    async def delete(self, where: Target, item_id: str, email: str) -> bool:
        """Delete an item; False when there was none."""

        async def delete(container: ContainerProxy, budget: float) -> bool:
            try:
                await container.delete_item(item_id, partition_key=email, timeout=budget)
            except CosmosHttpResponseError as exc:
                if status_of(exc) == 404 and not owner_missing(exc):
                    return False
                raise
            return True

        return await self.call("delete", where, delete)

    async def batch(self, where: Target, email: str, ops: list[BatchOp]) -> list[dict[str, Any]]:
        """One transactional batch; raises BatchRefused when an operation lost a race."""

        async def run(container: ContainerProxy, budget: float) -> list[dict[str, Any]]:
            try:
                results = await container.execute_item_batch(
                    ops, partition_key=email, timeout=budget
                )
            except CosmosBatchOperationError as exc:
                _remember_session_token(container, exc.headers)
                raise
            _remember_session_token(container, results.get_response_headers())
            return list(results)

        return await self.call("batch", where, run)

    async def query(
        self,
        where: Target,
        query: str,
        parameters: list[dict[str, object]],
        *,
        email: str | None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Every result of a query whose result is small by construction (TOP n, one page)."""
        return [item async for item in self.stream(where, query, parameters, email=email, **kwargs)]

    async def stream(
        self,
        where: Target,
        query: str,
        parameters: list[dict[str, object]],
        *,
        email: str | None,
        **kwargs: Any,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The results of a query, page by page as the SDK fetches them (flat memory). Each
        page's fetch is bounded by the storage budget."""
        if email is not None:
            kwargs["partition_key"] = email
        container = await self.container(where)
        pages: Any = container.query_items(query, parameters=parameters, **kwargs).by_page()
        while True:

            async def next_page(_: ContainerProxy, budget: float) -> list[dict[str, Any]] | None:
                try:
                    page = await pages.__anext__()
                except StopAsyncIteration:
                    return None
                return [item async for item in page]

            items = await self.call("query", where, next_page)
            if items is None:
                return
            for item in items:
                yield item

    async def page(
        self,
        where: Where,
        query: str,
        parameters: list[dict[str, object]],
        *,
        limit: int,
        continuation: str | None,
        **kwargs: Any,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a cross-partition query with the SDK's continuation token (scans)."""

        async def run(container: ContainerProxy, budget: float) -> tuple[list[Any], str | None]:
            pager: Any = container.query_items(
                query, parameters=parameters, max_item_count=limit, **kwargs
            ).by_page(continuation)
            try:
                async for page in pager:
                    return [item async for item in page], pager.continuation_token
            except (CosmosHttpResponseError, ValueError, TypeError, KeyError) as exc:
                # The SDK parses its own tokens; a forged one fails there or at the service.
                if continuation is not None and not isinstance(exc, CosmosBatchOperationError):
                    status = status_of(exc) if isinstance(exc, CosmosHttpResponseError) else 400
                    if status == 400:
                        raise InvalidRequest("continuationToken is not valid.") from exc
                raise
            return [], None

        return await self.call("query_page", where, run)
