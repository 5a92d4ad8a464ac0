"""The Cosmos DB store: Azure Cosmos DB for NoSQL through ``azure.cosmos.aio``.

Items follow DESIGN.md's data model, in containers partitioned on ``/EmailID``:

- session item: ``id`` = session id, ``type: "session"``, ``EmailID``, title, preview,
  createdAt, updatedAt, messageCount, lastSeq, context (the bounded window), clientRequests,
  and ``deleting: true`` while a delete is under way;
- message item: ``id`` = ``<sessionId>:<seq>``, ``type: "message"``, ``EmailID``, sessionId,
  seq, role, content, timestamp, clientMessageId, model and token counts.

Times are stored as fixed-width ISO strings (microseconds, ``Z``) so text order is time order:
``updatedAt`` is sorted on. Every write of a turn is one transactional batch guarded by the
session item's ETag. Logs name session ids and counts, never item contents.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError
from pydantic import BaseModel

from shared.errors import (
    ConcurrencyConflict,
    InvalidRequest,
    PayloadTooLarge,
    StorageUnavailable,
)
from shared.ids import message_item_id
from shared.models import ClientRequestRef, ContextMessage, MessageRecord, SessionRecord
from shared.storage.base import MAX_BATCH_OPERATIONS, OrphanRef, SessionRef, Where
from shared.storage.containers import container_specs

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.config import Settings

log = logging.getLogger("parley.storage.cosmos")
# The SDK's HTTP logging policy writes request headers at INFO, and the partition key header
# is the caller's email: give it a logger of ours that only passes warnings and worse.
sdk_http_log = logging.getLogger("parley.storage.cosmos.sdk_http")
sdk_http_log.setLevel(logging.WARNING)

T = TypeVar("T")
BatchOp = tuple[str, tuple[Any, ...]] | tuple[str, tuple[Any, ...], dict[str, Any]]

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Statuses that mean "busy or briefly unreachable": the SDK has already retried them.
UNAVAILABLE_STATUSES = frozenset({408, 429, 449, 503})
DEFAULT_RETRY_AFTER_S = 5

# The SDK's own retries. Throttling (429) is retried up to 9 times within 30 s of waiting (the
# SDK honours the service's x-ms-retry-after-ms); connection and 5xx retries are capped so a
# request fails over to our 503 well inside the Functions timeout.
CLIENT_OPTIONS: dict[str, Any] = {
    "retry_throttle_total": 9,
    "retry_throttle_backoff_max": 30,
    "retry_total": 3,
    "retry_backoff_max": 10,
    "connection_timeout": 10,
}

# Listing reads only the summary fields: never the context window or clientRequests.
LIST_QUERY = (
    "SELECT c.id, c.EmailID, c.title, c.preview, c.createdAt, c.updatedAt, c.messageCount,"
    " c.lastSeq, c._etag FROM c"
    " WHERE c.type = 'session' AND NOT IS_DEFINED(c.deleting)"
    " ORDER BY c.updatedAt DESC, c.id DESC"
)
MESSAGES_QUERY = (
    "SELECT * FROM c WHERE c.type = 'message' AND c.sessionId = @sid ORDER BY c.seq ASC"
)
MESSAGE_IDS_QUERY = "SELECT c.id FROM c WHERE c.type = 'message' AND c.sessionId = @sid"
SCAN_QUERY = (
    "SELECT c.EmailID, c.id, c.updatedAt, c._etag FROM c"
    " WHERE c.type = 'session' AND NOT IS_DEFINED(c.deleting) AND c.updatedAt < @cutoff"
)
ORPHAN_QUERY = (
    "SELECT c.EmailID, c.sessionId FROM c WHERE c.type = 'message' AND c.timestamp < @cutoff"
)
ORPHAN_PAGE = 500


# ---- items <-> records ------------------------------------------------------------------------


def sortable_time(when: datetime) -> str:
    """Fixed width with microseconds and Z, so string order is time order."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _ClientRequestItem(BaseModel):
    """One clientRequests entry: a list keeps the window's order and any client id is safe."""

    clientMessageId: str  # camelCase: the stored item's names
    userSeq: int
    assistantSeq: int | None = None


def session_item(session: SessionRecord) -> dict[str, Any]:
    return {
        "id": session.id,
        "type": "session",
        "EmailID": session.email,
        "title": session.title,
        "preview": session.preview,
        "createdAt": sortable_time(session.created_at),
        "updatedAt": sortable_time(session.updated_at),
        "messageCount": session.message_count,
        "lastSeq": session.last_seq,
        "context": [m.model_dump() for m in session.context],
        "clientRequests": [
            _ClientRequestItem(
                clientMessageId=cmid, userSeq=ref.user_seq, assistantSeq=ref.assistant_seq
            ).model_dump()
            for cmid, ref in session.client_requests.items()
        ],
    }


def session_from_item(item: dict[str, Any], where: Where) -> SessionRecord:
    requests = [_ClientRequestItem.model_validate(r) for r in item.get("clientRequests") or []]
    return SessionRecord(
        id=item["id"],
        email=item["EmailID"],
        title=item["title"],
        preview=item["preview"],
        created_at=parse_time(item["createdAt"]),
        updated_at=parse_time(item["updatedAt"]),
        message_count=item["messageCount"],
        last_seq=item["lastSeq"],
        context=[ContextMessage.model_validate(m) for m in item.get("context") or []],
        client_requests={
            r.clientMessageId: ClientRequestRef(user_seq=r.userSeq, assistant_seq=r.assistantSeq)
            for r in requests
        },
        archived=where == "archive",
        etag=item.get("_etag"),
    )


def message_item(email: str, message: MessageRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": message_item_id(message.session_id, message.seq),
        "type": "message",
        "EmailID": email,
        "sessionId": message.session_id,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "timestamp": sortable_time(message.timestamp),
    }
    optional = {
        "clientMessageId": message.client_message_id,
        "model": message.model,
        "promptTokens": message.prompt_tokens,
        "completionTokens": message.completion_tokens,
    }
    item.update({key: value for key, value in optional.items() if value is not None})
    return item


def message_from_item(item: dict[str, Any]) -> MessageRecord:
    return MessageRecord(
        session_id=item["sessionId"],
        seq=item["seq"],
        role=item["role"],
        content=item["content"],
        timestamp=parse_time(item["timestamp"]),
        client_message_id=item.get("clientMessageId"),
        model=item.get("model"),
        prompt_tokens=item.get("promptTokens"),
        completion_tokens=item.get("completionTokens"),
    )


# ---- errors -------------------------------------------------------------------------------------


def _retry_after_s(headers: Any) -> int:
    raw = (headers or {}).get("x-ms-retry-after-ms")
    try:
        return max(1, math.ceil(float(raw) / 1000)) if raw is not None else DEFAULT_RETRY_AFTER_S
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S


def _status(error: CosmosHttpResponseError) -> int:
    return int(error.status_code or 0)


@contextmanager
def _mapped(operation: str) -> Iterator[None]:
    """SDK failures that outlived the SDK's retries become API errors; the rest propagate."""
    try:
        yield
    except CosmosHttpResponseError as exc:
        status = _status(exc)
        if status in UNAVAILABLE_STATUSES:
            log.warning("cosmos_unavailable", extra={"operation": operation, "status": status})
            raise StorageUnavailable(retry_after_s=_retry_after_s(exc.headers)) from exc
        if status == 413:
            raise PayloadTooLarge("The conversation item is too large to store.") from exc
        raise
    except (ServiceRequestError, ServiceResponseError, TimeoutError) as exc:
        log.warning("cosmos_unreachable", extra={"operation": operation})
        raise StorageUnavailable() from exc


def _wrap_token(sdk_token: str) -> str:
    return json.dumps({"sdk": sdk_token}, separators=(",", ":"))


def _unwrap_token(token: str) -> str:
    """The SDK's token inside our envelope. Cosmos rejects a forged SDK token (400); the
    envelope also catches garbage before it reaches a server that might not."""
    try:
        data = json.loads(token)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("sdk"), str) or not data["sdk"]:
        raise InvalidRequest("continuationToken is not valid.")
    return str(data["sdk"])


def _is_local(endpoint: str) -> bool:
    return (urlsplit(endpoint).hostname or "") in LOCAL_HOSTS


def _chunks(items: list[T], size: int = MAX_BATCH_OPERATIONS) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- the store ----------------------------------------------------------------------------------


MAX_FILL_ROUNDS = 10  # queries one list page may take to fill up


class CosmosStore:
    """ConversationStore on Cosmos DB. The client is made on first use, inside the running
    event loop (aiohttp sessions belong to one loop)."""

    def __init__(
        self,
        endpoint: str,
        credential: str | AsyncTokenCredential,
        *,
        database: str,
        container: str,
        archive_container: str,
        verify_tls: bool = True,
        bootstrap: bool = False,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._credential = credential
        self._database = database
        self._specs = container_specs(container, archive_container)
        self._verify_tls = verify_tls
        self._bootstrap = bootstrap
        self._client_options = {**CLIENT_OPTIONS, **(client_options or {})}
        self._client: CosmosClient | None = None
        self._containers: dict[Where, ContainerProxy] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._init_lock: asyncio.Lock | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosStore:
        endpoint = settings.cosmos_endpoint
        if not endpoint:
            raise ValueError("COSMOS_ENDPOINT is required for the Cosmos store")
        credential: str | AsyncTokenCredential
        if settings.cosmos_key:
            credential = settings.cosmos_key  # local emulators only (API.md)
        elif settings.azure_client_id:
            from azure.identity.aio import ManagedIdentityCredential

            # A user-assigned identity, named by its client id: ask the managed identity
            # endpoint directly. DefaultAzureCredential would walk its chain first (environment,
            # workload identity, ...) and could pick up another identity on the way.
            credential = ManagedIdentityCredential(client_id=settings.azure_client_id)
        else:
            from azure.identity.aio import DefaultAzureCredential

            # No client id: the system-assigned identity in Azure, or a developer's login.
            credential = DefaultAzureCredential()
        return cls(
            endpoint,
            credential,
            database=settings.cosmos_database,
            container=settings.cosmos_container,
            archive_container=settings.cosmos_archive_container,
            verify_tls=settings.cosmos_verify_tls,
            # Data-plane RBAC cannot create databases or containers, and in Azure the Pulumi
            # program owns them: create them only with a key against a local emulator.
            bootstrap=bool(settings.cosmos_key) and _is_local(endpoint),
        )

    # ---- lazy client -------------------------------------------------------------------------

    async def _container(self, where: Where) -> ContainerProxy:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a fresh asyncio.run): the old client's sessions are unusable.
            self._client, self._containers, self._loop = None, {}, loop
            self._init_lock = asyncio.Lock()
        if not self._containers:
            assert self._init_lock is not None
            async with self._init_lock:  # concurrent first calls make one client
                if not self._containers:
                    await self._connect()
        return self._containers[where]

    async def _connect(self) -> None:
        client = CosmosClient(
            self._endpoint,
            self._credential,
            connection_verify=self._verify_tls,
            logger=sdk_http_log,
            **self._client_options,
        )
        active, archive = self._specs
        try:
            with _mapped("connect"):
                if self._bootstrap:
                    database = await client.create_database_if_not_exists(self._database)
                    for spec in self._specs:
                        await database.create_container_if_not_exists(
                            spec.name,
                            partition_key=PartitionKey(spec.partition_key_path),
                            indexing_policy=spec.indexing_policy,
                        )
                    log.info("cosmos_bootstrapped", extra={"database": self._database})
                else:
                    database = client.get_database_client(self._database)
        except BaseException:
            await client.close()
            raise
        self._client = client
        self._containers = {
            "active": database.get_container_client(active.name),
            "archive": database.get_container_client(archive.name),
        }

    async def close(self) -> None:
        client, self._client, self._containers = self._client, None, {}
        if client is not None:
            await client.close()
        if not isinstance(self._credential, str):
            await self._credential.close()

    # ---- helpers -------------------------------------------------------------------------------

    async def _read(self, where: Where, item_id: str, email: str) -> dict[str, Any] | None:
        container = await self._container(where)
        try:
            with _mapped("read"):
                item: dict[str, Any] = await container.read_item(item_id, partition_key=email)
        except CosmosHttpResponseError as exc:
            if _status(exc) == 404:
                return None
            raise
        return item

    async def _batch(self, where: Where, email: str, ops: list[BatchOp]) -> list[dict[str, Any]]:
        container = await self._container(where)
        with _mapped("batch"):
            results = await container.execute_item_batch(ops, partition_key=email)
        return list(results)

    async def _query(
        self,
        where: Where,
        query: str,
        parameters: list[dict[str, object]],
        *,
        email: str | None,
        **kwargs: Any,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every result of a query: single-partition when ``email`` is given."""
        container = await self._container(where)
        if email is not None:
            kwargs["partition_key"] = email
        with _mapped("query"):
            async for item in container.query_items(query, parameters=parameters, **kwargs):
                yield item

    async def _page(
        self,
        where: Where,
        query: str,
        parameters: list[dict[str, object]],
        *,
        email: str | None,
        limit: int,
        continuation: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a query with the SDK's continuation token (opaque to us and callers)."""
        container = await self._container(where)
        kwargs: dict[str, Any] = {"parameters": parameters, "max_item_count": limit}
        if email is not None:
            kwargs["partition_key"] = email
        # by_page's iterator carries the token of the page it last returned.
        sdk_token = _unwrap_token(continuation) if continuation is not None else None
        pager: Any = container.query_items(query, **kwargs).by_page(sdk_token)
        items: list[dict[str, Any]] = []
        try:
            with _mapped("query_page"):
                async for page in pager:
                    items = [item async for item in page]
                    break
        except CosmosHttpResponseError as exc:
            if continuation is not None and _status(exc) == 400:
                raise InvalidRequest("continuationToken is not valid.") from exc
            raise
        except (ValueError, TypeError, KeyError) as exc:
            # The SDK parses its own tokens client-side; a forged one fails there.
            if continuation is not None:
                raise InvalidRequest("continuationToken is not valid.") from exc
            raise
        token = pager.continuation_token
        return items, (_wrap_token(str(token)) if token else None)

    async def _delete_ids(self, where: Where, email: str, ids: list[str]) -> None:
        for chunk in _chunks(ids):
            try:
                await self._batch(where, email, [("delete", (item_id,)) for item_id in chunk])
            except CosmosBatchOperationError as exc:
                if exc.status_code != 404:
                    raise
                # Someone else deleted one of them (a repeated delete): the batch is all or
                # nothing, so delete this chunk one by one, missing ones being fine.
                await self._delete_each(where, email, chunk)

    async def _delete_each(self, where: Where, email: str, ids: list[str]) -> None:
        container = await self._container(where)
        for item_id in ids:
            try:
                with _mapped("delete"):
                    await container.delete_item(item_id, partition_key=email)
            except CosmosHttpResponseError as exc:
                if _status(exc) != 404:
                    raise

    # ---- reads -------------------------------------------------------------------------------

    async def get_session(
        self, email: str, session_id: str, where: Where = "active"
    ) -> SessionRecord | None:
        item = await self._read(where, session_id, email)
        if item is None or item.get("type") != "session" or item.get("deleting"):
            return None
        return session_from_item(item, where)

    async def get_message(
        self, email: str, session_id: str, seq: int, where: Where = "active"
    ) -> MessageRecord | None:
        item = await self._read(where, message_item_id(session_id, seq), email)
        return message_from_item(item) if item is not None else None

    async def list_messages(
        self, email: str, session_id: str, where: Where = "active"
    ) -> list[MessageRecord]:
        params: list[dict[str, object]] = [{"name": "@sid", "value": session_id}]
        return [
            message_from_item(item)
            async for item in self._query(where, MESSAGES_QUERY, params, email=email)
        ]

    async def list_sessions(
        self, email: str, *, limit: int, continuation: str | None, where: Where = "active"
    ) -> tuple[list[SessionRecord], str | None]:
        items: list[dict[str, Any]] = []
        token = continuation
        # Cosmos may answer fewer items than asked with a token for more: fill the page, so a
        # caller's page size means what it says. Bounded: an empty page, or a token that does
        # not move, ends the loop rather than spinning on it.
        for _ in range(MAX_FILL_ROUNDS):
            page, next_token = await self._page(
                where, LIST_QUERY, [], email=email, limit=limit - len(items), continuation=token
            )
            items += page
            stuck = not page or next_token == token
            token = next_token
            if token is None or len(items) >= limit or stuck:
                break
        return [session_from_item(item, where) for item in items], token

    # ---- writes ------------------------------------------------------------------------------

    async def commit(
        self,
        session: SessionRecord,
        messages: list[MessageRecord],
        *,
        expected_etag: str | None,
        where: Where = "active",
    ) -> SessionRecord:
        ops: list[BatchOp] = [("create", (message_item(session.email, m),)) for m in messages]
        body = session_item(session)
        if expected_etag is None:
            ops.append(("create", (body,)))
        else:
            ops.append(("replace", (session.id, body), {"if_match_etag": expected_etag}))
        try:
            results = await self._batch(where, session.email, ops)
        except CosmosBatchOperationError as exc:
            # 409: the session (or a message seq) exists already; 412: the ETag moved on;
            # 404: the session item is gone. Each means another writer got there first, and
            # the batch applied nothing.
            if exc.status_code in (404, 409, 412):
                raise ConcurrencyConflict(session.id) from exc
            if exc.status_code == 413:
                raise PayloadTooLarge("The conversation item is too large to store.") from exc
            raise
        etag = results[-1].get("eTag")
        return session.model_copy(update={"etag": etag, "archived": where == "archive"})

    async def delete_session(self, email: str, session_id: str, where: Where = "active") -> bool:
        container = await self._container(where)
        marked = True
        try:
            with _mapped("mark"):
                # The mark hides the session from reads and makes any in-flight turn's
                # if-match fail, before its messages start to go.
                await container.patch_item(
                    session_id, email, [{"op": "set", "path": "/deleting", "value": True}]
                )
        except CosmosHttpResponseError as exc:
            if _status(exc) != 404:
                raise
            marked = False  # gone already: an interrupted delete may have left messages
        params: list[dict[str, object]] = [{"name": "@sid", "value": session_id}]
        ids = [
            item["id"] async for item in self._query(where, MESSAGE_IDS_QUERY, params, email=email)
        ]
        if not marked and not ids:
            return False
        await self._delete_ids(where, email, ids)
        await self.delete_session_item(where, email, session_id, expected_etag=None)
        log.info("cosmos_session_deleted", extra={"session_id": session_id, "messages": len(ids)})
        return True

    # ---- archival primitives -----------------------------------------------------------------

    async def scan_sessions(
        self,
        where: Where,
        *,
        updated_before: datetime,
        limit: int,
        continuation: str | None,
    ) -> tuple[list[SessionRef], str | None]:
        params: list[dict[str, object]] = [
            {"name": "@cutoff", "value": sortable_time(updated_before)}
        ]
        items, token = await self._page(
            where, SCAN_QUERY, params, email=None, limit=limit, continuation=continuation
        )
        refs = [
            SessionRef(
                email=item["EmailID"],
                session_id=item["id"],
                updated_at=parse_time(item["updatedAt"]),
                etag=item["_etag"],
            )
            for item in items
        ]
        return refs, token

    async def put_items(
        self, where: Where, session: SessionRecord | None, messages: list[MessageRecord]
    ) -> None:
        if session is None:
            raise ValueError("put_items needs the session record (it carries the partition key)")
        email = session.email
        # Messages first, the session item last: a copy interrupted half-way has no session
        # item and so is invisible to readers until it is complete.
        for chunk in _chunks(messages):
            await self._batch(where, email, [("upsert", (message_item(email, m),)) for m in chunk])
        await self._batch(where, email, [("upsert", (session_item(session),))])

    async def delete_messages(
        self, where: Where, email: str, session_id: str, seqs: list[int]
    ) -> None:
        await self._delete_ids(where, email, [message_item_id(session_id, s) for s in seqs])

    async def delete_session_item(
        self, where: Where, email: str, session_id: str, *, expected_etag: str | None
    ) -> None:
        container = await self._container(where)
        guard: dict[str, Any] = {}
        if expected_etag is not None:
            guard = {"etag": expected_etag, "match_condition": MatchConditions.IfNotModified}
        try:
            with _mapped("delete_session_item"):
                await container.delete_item(session_id, partition_key=email, **guard)
        except CosmosHttpResponseError as exc:
            if _status(exc) == 412:
                raise ConcurrencyConflict(session_id) from exc
            if _status(exc) != 404:
                raise

    async def scan_orphans(
        self, where: Where, *, older_than: datetime, limit: int
    ) -> list[OrphanRef]:
        params: list[dict[str, object]] = [{"name": "@cutoff", "value": sortable_time(older_than)}]
        seen: set[tuple[str, str]] = set()
        orphans: list[OrphanRef] = []
        # A rare archival-only scan over message items. ``timestamp`` is indexed by the shared
        # policy; the scan flag keeps containers made before that index was added working.
        results = self._query(
            where,
            ORPHAN_QUERY,
            params,
            email=None,
            max_item_count=ORPHAN_PAGE,
            enable_scan_in_query=True,
        )
        async with aclosing(results):
            async for item in results:
                key = (item["EmailID"], item["sessionId"])
                if key in seen:
                    continue
                seen.add(key)
                if await self._read(where, key[1], key[0]) is None:
                    orphans.append(OrphanRef(email=key[0], session_id=key[1]))
                    if len(orphans) >= limit:
                        break
        return orphans
