"""A local stand-in of Azure Web PubSub: the data-plane REST calls the Python SDK makes and the
client WebSocket endpoint with the ``json.webpubsub.azure.v1`` subprotocol (README.md beside
this file lists what it implements, and how it differs from the service).

One access key signs everything, as a resource's access key does: the SDK's REST calls carry an
HS256 JWT whose audience is the request's URL, and client tokens an HS256 JWT whose audience is
``<endpoint>/client/hubs/<hub>``. Both are checked (signature, expiry, audience): 401 otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from aiohttp import WSMsgType, web

SUBPROTOCOL = "json.webpubsub.azure.v1"
# The data-plane API versions the SDKs send (azure-messaging-webpubsubservice 1.3.0: 2024-12-01).
API_VERSIONS = frozenset(
    {"2021-10-01", "2022-11-01", "2023-07-01", "2024-01-01", "2024-09-01", "2024-12-01"}
)
# The audience of an Entra ID token for Web PubSub (the SDK asks for this resource's
# ".default" scope). The stand-in has no Entra ID: a token with this audience signed with the
# access key stands for the app identity's token (the README beside this file lists this among
# the differences from Azure).
ENTRA_AUDIENCE = "https://webpubsub.azure.com"
# Group names: "greater than 0 and less than 1025" characters (the REST API's rule).
MAX_GROUP_NAME = 1024
# Roles a client token may carry (reference-json-webpubsub-subprotocol, "Permissions").
JOIN_LEAVE_ROLE = "webpubsub.joinLeaveGroup"
SEND_TO_GROUP_ROLE = "webpubsub.sendToGroup"
# A message's data, as a REST call's Content-Type says it is.
DATA_TYPES = {
    "application/json": "json",
    "text/plain": "text",
    "application/octet-stream": "binary",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Payload:
    """What a REST call sends: ``data_type`` json|text|binary and the raw body."""

    data_type: str
    body: bytes

    def envelope_data(self) -> Any:
        if self.data_type == "json":
            return json.loads(self.body)
        if self.data_type == "text":
            return self.body.decode()
        return base64.b64encode(self.body).decode()


@dataclass(eq=False)
class Connection:
    """One client WebSocket. Frames go out through a queue in the order they were sent, so two
    sends to one group reach every member in the order the service accepted them."""

    connection_id: str
    user_id: str | None
    roles: frozenset[str]
    subprotocol: str | None
    socket: web.WebSocketResponse
    outbox: asyncio.Queue[str | bytes | None] = field(default_factory=asyncio.Queue)

    def can(self, role: str, group: str) -> bool:
        return role in self.roles or f"{role}.{group}" in self.roles

    def deliver(self, envelope: dict[str, Any], payload: Payload) -> None:
        if self.subprotocol == SUBPROTOCOL:
            self.outbox.put_nowait(json.dumps(envelope))
        elif payload.data_type == "binary":
            # A simple WebSocket client gets the data itself, in a frame of its kind.
            self.outbox.put_nowait(payload.body)
        else:
            self.outbox.put_nowait(payload.body.decode())


@dataclass
class Hub:
    connections: dict[str, Connection] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)  # group -> connection ids

    def of_user(self, user_id: str) -> list[Connection]:
        return [c for c in self.connections.values() if c.user_id == user_id]

    def join(self, group: str, connection_id: str) -> None:
        self.groups.setdefault(group, set()).add(connection_id)

    def leave(self, group: str, connection_id: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.discard(connection_id)
            if not members:
                # A group exists while someone is in it (the service's "group session").
                del self.groups[group]

    def leave_all(self, connection_id: str) -> None:
        for group in list(self.groups):
            self.leave(group, connection_id)

    def in_group(self, group: str) -> list[Connection]:
        return [self.connections[c] for c in sorted(self.groups.get(group, ()))]


class Unauthorized(Exception):
    """A token that is missing, badly signed, expired or meant for another URL."""


class LocalWebPubSub:
    """The stand-in's state and its aiohttp application (``app``)."""

    def __init__(self, access_key: str) -> None:
        if not access_key:
            raise ValueError("the stand-in needs an access key")
        self.access_key = access_key
        self.hubs: dict[str, Hub] = {}
        self.app = web.Application(middlewares=[self._errors])
        self.app.router.add_get("/client/hubs/{hub}", self._client_socket)
        api = "/api/hubs/{hub}"
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/:generateToken", self._generate_token),
            ("POST", "/:send", self._send_to_all),
            ("POST", "/groups/{group}/:send", self._send_to_group),
            ("POST", "/users/{user}/:send", self._send_to_user),
            ("POST", "/connections/{connection}/:send", self._send_to_connection),
            ("PUT", "/groups/{group}/connections/{connection}", self._add_connection),
            ("DELETE", "/groups/{group}/connections/{connection}", self._remove_connection),
            ("DELETE", "/connections/{connection}/groups", self._remove_connection_everywhere),
            ("PUT", "/users/{user}/groups/{group}", self._add_user),
            ("DELETE", "/users/{user}/groups/{group}", self._remove_user),
            ("DELETE", "/users/{user}/groups", self._remove_user_everywhere),
            ("GET", "/groups/{group}/connections", self._list_connections),
            ("HEAD", "/groups/{group}", self._group_exists),
            ("HEAD", "/users/{user}", self._user_exists),
            ("HEAD", "/connections/{connection}", self._connection_exists),
            ("DELETE", "/connections/{connection}", self._close_connection),
        ]
        for method, path, handler in routes:
            self.app.router.add_route(method, api + path, self._rest(handler))
        self.app.on_shutdown.append(self._close_all)

    # -- tokens -------------------------------------------------------------------------------

    def _claims(self, token: str, audience: Callable[[str], bool]) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.access_key,
                algorithms=["HS256"],
                options={"require": ["exp"], "verify_aud": False},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(type(exc).__name__) from exc
        aud = claims.get("aud")
        if not isinstance(aud, str) or not audience(aud):
            raise Unauthorized("the token is meant for another URL")
        return claims

    def client_token(
        self,
        base_url: str,
        hub: str,
        *,
        user_id: str | None,
        roles: list[str],
        groups: list[str],
        minutes: int,
    ) -> str:
        now = datetime.now(tz=UTC)
        claims: dict[str, Any] = {
            "aud": f"{base_url}/client/hubs/{hub}",
            "iat": now,
            "exp": now + timedelta(minutes=minutes),
        }
        if user_id:
            claims["sub"] = user_id
        if roles:
            claims["role"] = roles
        if groups:
            claims["webpubsub.group"] = groups
        return jwt.encode(claims, self.access_key, algorithm="HS256")

    # -- REST ---------------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Unauthorized:
            return web.Response(status=401)

    def _rest(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                raise Unauthorized("no bearer token")
            self._claims(
                header.removeprefix("Bearer "),
                lambda aud: aud == ENTRA_AUDIENCE or same_url(aud, request.url),
            )
            if request.query.get("api-version") not in API_VERSIONS:
                return error(400, "Unsupported or missing api-version")
            for name in ("group",):
                group = request.match_info.get(name)
                if group is not None and not 0 < len(group) <= MAX_GROUP_NAME:
                    return error(400, "Invalid group name")
            return await handler(request)

        return checked

    def _hub(self, request: web.Request) -> Hub:
        return self.hubs.setdefault(request.match_info["hub"], Hub())

    async def _generate_token(self, request: web.Request) -> web.StreamResponse:
        try:
            minutes = int(request.query.get("minutesToExpire", "60"))
        except ValueError:
            return error(400, "minutesToExpire must be a whole number")
        if minutes < 1:
            return error(400, "minutesToExpire must be at least 1")
        token = self.client_token(
            base_url(request),
            request.match_info["hub"],
            user_id=request.query.get("userId"),
            roles=request.query.getall("role", []),
            groups=request.query.getall("group", []),
            minutes=minutes,
        )
        return web.json_response({"token": token})

    async def _payload(self, request: web.Request) -> Payload:
        media = request.content_type
        if media not in DATA_TYPES:
            raise web.HTTPUnsupportedMediaType()
        body = await request.read()
        if media == "application/json":
            try:
                json.loads(body)
            except ValueError as exc:
                raise web.HTTPBadRequest(text="The body is not JSON") from exc
        return Payload(DATA_TYPES[media], body)

    def _broadcast(
        self, targets: list[Connection], payload: Payload, envelope: dict[str, Any]
    ) -> None:
        envelope = {**envelope, "dataType": payload.data_type, "data": payload.envelope_data()}
        for connection in targets:
            connection.deliver(envelope, payload)

    async def _send_to_all(self, request: web.Request) -> web.StreamResponse:
        payload = await self._payload(request)
        excluded = set(request.query.getall("excluded", []))
        connections = self._hub(request).connections.values()
        targets = [c for c in connections if c.connection_id not in excluded]
        self._broadcast(targets, payload, {"type": "message", "from": "server"})
        return web.Response(status=202)

    async def _send_to_group(self, request: web.Request) -> web.StreamResponse:
        payload = await self._payload(request)
        group = request.match_info["group"]
        excluded = set(request.query.getall("excluded", []))
        targets = [c for c in self._hub(request).in_group(group) if c.connection_id not in excluded]
        self._broadcast(targets, payload, {"type": "message", "from": "group", "group": group})
        return web.Response(status=202)

    async def _send_to_user(self, request: web.Request) -> web.StreamResponse:
        payload = await self._payload(request)
        targets = self._hub(request).of_user(request.match_info["user"])
        self._broadcast(targets, payload, {"type": "message", "from": "server"})
        return web.Response(status=202)

    async def _send_to_connection(self, request: web.Request) -> web.StreamResponse:
        payload = await self._payload(request)
        connection = self._hub(request).connections.get(request.match_info["connection"])
        if connection is None:
            return error(404, "The connection does not exist")
        self._broadcast([connection], payload, {"type": "message", "from": "server"})
        return web.Response(status=202)

    async def _add_connection(self, request: web.Request) -> web.StreamResponse:
        hub = self._hub(request)
        connection_id = request.match_info["connection"]
        if connection_id not in hub.connections:
            return error(404, "The connection does not exist")
        hub.join(request.match_info["group"], connection_id)
        return web.Response(status=200)

    async def _remove_connection(self, request: web.Request) -> web.StreamResponse:
        self._hub(request).leave(request.match_info["group"], request.match_info["connection"])
        return web.Response(status=204)

    async def _remove_connection_everywhere(self, request: web.Request) -> web.StreamResponse:
        self._hub(request).leave_all(request.match_info["connection"])
        return web.Response(status=204)

    async def _add_user(self, request: web.Request) -> web.StreamResponse:
        # The user's connections open now join; the stand-in keeps no membership for
        # connections the user opens later (README.md: the app adds them after each connect).
        hub = self._hub(request)
        for connection in hub.of_user(request.match_info["user"]):
            hub.join(request.match_info["group"], connection.connection_id)
        return web.Response(status=200)

    async def _remove_user(self, request: web.Request) -> web.StreamResponse:
        hub = self._hub(request)
        for connection in hub.of_user(request.match_info["user"]):
            hub.leave(request.match_info["group"], connection.connection_id)
        return web.Response(status=204)

    async def _remove_user_everywhere(self, request: web.Request) -> web.StreamResponse:
        hub = self._hub(request)
        for connection in hub.of_user(request.match_info["user"]):
            hub.leave_all(connection.connection_id)
        return web.Response(status=204)

    async def _list_connections(self, request: web.Request) -> web.StreamResponse:
        members = self._hub(request).in_group(request.match_info["group"])
        value = [{"connectionId": c.connection_id, "userId": c.user_id} for c in members]
        return web.json_response({"value": value})

    async def _group_exists(self, request: web.Request) -> web.StreamResponse:
        found = request.match_info["group"] in self._hub(request).groups
        return web.Response(status=200 if found else 404)

    async def _user_exists(self, request: web.Request) -> web.StreamResponse:
        found = bool(self._hub(request).of_user(request.match_info["user"]))
        return web.Response(status=200 if found else 404)

    async def _connection_exists(self, request: web.Request) -> web.StreamResponse:
        found = request.match_info["connection"] in self._hub(request).connections
        return web.Response(status=200 if found else 404)

    async def _close_connection(self, request: web.Request) -> web.StreamResponse:
        connection = self._hub(request).connections.get(request.match_info["connection"])
        if connection is not None:
            connection.outbox.put_nowait(None)
        return web.Response(status=204)

    # -- client WebSocket -----------------------------------------------------------------------

    async def _client_socket(self, request: web.Request) -> web.StreamResponse:
        hub_name = request.match_info["hub"]
        token = request.query.get("access_token")
        header = request.headers.get("Authorization", "")
        if token is None and header.startswith("Bearer "):
            token = header.removeprefix("Bearer ")
        if not token:
            raise Unauthorized("no access token")
        expected = f"{base_url(request)}/client/hubs/{hub_name}".lower()
        claims = self._claims(token, lambda aud: aud.rstrip("/").lower() == expected)
        asked = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        if asked and SUBPROTOCOL not in asked:
            # In Azure an upstream "connect" handler may pick a custom subprotocol; the stand-in
            # has no event handlers, so only the service's own JSON subprotocol is served.
            return error(400, f"Unsupported subprotocol; use {SUBPROTOCOL}")
        socket = web.WebSocketResponse(protocols=(SUBPROTOCOL,) if asked else ())
        await socket.prepare(request)
        hub = self.hubs.setdefault(hub_name, Hub())
        user_id = claims.get("sub")
        connection = Connection(
            connection_id=secrets.token_urlsafe(16),
            user_id=user_id if isinstance(user_id, str) else None,
            roles=frozenset(as_list(claims.get("role"))),
            subprotocol=SUBPROTOCOL if asked else None,
            socket=socket,
        )
        hub.connections[connection.connection_id] = connection
        for group in as_list(claims.get("webpubsub.group")):
            hub.join(group, connection.connection_id)
        if connection.subprotocol == SUBPROTOCOL:
            connection.outbox.put_nowait(
                json.dumps(
                    {
                        "type": "system",
                        "event": "connected",
                        "userId": connection.user_id,
                        "connectionId": connection.connection_id,
                    }
                )
            )
        writer = asyncio.create_task(self._write(connection))
        try:
            async for frame in socket:
                if frame.type == WSMsgType.TEXT and connection.subprotocol == SUBPROTOCOL:
                    self._client_request(hub, connection, frame.data)
                # A simple client's frames are "message" events for an upstream handler; the
                # stand-in has none, so they go nowhere (as with no handler configured).
        finally:
            del hub.connections[connection.connection_id]
            hub.leave_all(connection.connection_id)
            connection.outbox.put_nowait(None)
            await writer
        return socket

    async def _write(self, connection: Connection) -> None:
        while (frame := await connection.outbox.get()) is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(frame, bytes):
                    await connection.socket.send_bytes(frame)
                else:
                    await connection.socket.send_str(frame)
        await connection.socket.close()

    def _client_request(self, hub: Hub, connection: Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            return
        if not isinstance(request, dict):
            return
        kind, group, ack_id = request.get("type"), request.get("group"), request.get("ackId")

        def ack(error_name: str | None = None, message: str = "") -> None:
            if ack_id is None:
                return  # fire and forget: no ack, errors included
            response: dict[str, Any] = {"type": "ack", "ackId": ack_id, "success": not error_name}
            if error_name:
                response["error"] = {"name": error_name, "message": message}
            connection.outbox.put_nowait(json.dumps(response))

        if kind in ("joinGroup", "leaveGroup") and isinstance(group, str):
            if not connection.can(JOIN_LEAVE_ROLE, group):
                ack("Forbidden", f"The connection has no permission to join or leave {group}.")
                return
            if kind == "joinGroup":
                hub.join(group, connection.connection_id)
            else:
                hub.leave(group, connection.connection_id)
            ack()
        elif kind == "sendToGroup" and isinstance(group, str):
            if not connection.can(SEND_TO_GROUP_ROLE, group):
                ack("Forbidden", f"The connection has no permission to send to {group}.")
                return
            data_type = request.get("dataType", "json")
            data = request.get("data")
            envelope = {
                "type": "message",
                "from": "group",
                "group": group,
                "dataType": data_type,
                "data": data,
                "fromUserId": connection.user_id,
            }
            raw = json.dumps(data) if data_type == "json" else str(data)
            payload = Payload("text" if data_type != "binary" else "binary", raw.encode())
            for target in hub.in_group(group):
                if request.get("noEcho") and target is connection:
                    continue
                target.deliver(envelope, payload)
            ack()

    async def _close_all(self, _: web.Application) -> None:
        for hub in self.hubs.values():
            for connection in list(hub.connections.values()):
                connection.outbox.put_nowait(None)


def as_list(value: object) -> list[str]:
    """A claim that may be one string or a list of strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def base_url(request: web.Request) -> str:
    """The stand-in's endpoint as its callers name it (scheme and host of the request)."""
    return f"{request.scheme}://{request.host}"


def same_url(audience: str, url: Any) -> bool:
    """Whether a REST token's audience is the request's URL (the SDK signs the whole URL,
    query included): scheme, host and path compared as the service does (case-insensitive
    host, path decoded), and the same query parameters."""
    aud = urlsplit(audience)
    req = urlsplit(str(url))
    return (
        aud.scheme.lower() == req.scheme.lower()
        and aud.netloc.lower() == req.netloc.lower()
        and unquote(aud.path) == unquote(req.path)
        and parse_qs(aud.query) == parse_qs(req.query)
    )


def error(status: int, message: str) -> web.Response:
    return web.json_response({"code": str(status), "message": message}, status=status)
