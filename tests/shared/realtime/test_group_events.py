"""Group events end to end: the local host (``make dev``'s) with its Web PubSub stand-in, a
subscriber on a real WebSocket, and the HTTP API (docs/http.md, "Groups and real-time").

- Each ``group.message`` event arrives only once its message is readable through ``GET``, and
  sequential sends arrive in ``seq`` order. Every group write pauses before it starts
  (``PARLEY_TEST_SLOW``), so an event published before its write ended would arrive while the
  message is not stored yet, and the ``GET`` the subscriber makes at once would miss it.
- A removed member's open connection gets ``group.removed`` and then nothing more of that group:
  proved without waiting, by a message of another group (same connection, frames in order)
  arriving next.
- A connection receives nothing of a group before ``POST /api/realtime/join`` (no role in its
  token), and nothing of a group its user does not belong to.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.faulty import SLOW_ENV, run_faulty_host
from tools.local.host import RunningHost, dev_headers
from tools.webpubsub import SUBPROTOCOL

ALICE = "alice@example.com"
BOB = "bob@example.com"
RECEIVE_TIMEOUT_S = 10.0
# The pause injected before every group write (tests/support/faulty.py).
WRITE_PAUSE_S = 0.3


@asynccontextmanager
async def subscriber(http: httpx.AsyncClient, email: str) -> AsyncIterator[ClientConnection]:
    negotiated = await http.get("/api/realtime/negotiate", headers=dev_headers(email))
    assert negotiated.status_code == 200, negotiated.text
    url = negotiated.json()["url"]
    async with websockets.connect(url, subprotocols=[SUBPROTOCOL]) as socket:  # type: ignore[list-item]
        connected = await receive(socket)
        assert connected["event"] == "connected"
        yield socket


async def join(http: httpx.AsyncClient, email: str) -> None:
    joined = await http.post("/api/realtime/join", headers=dev_headers(email))
    assert joined.status_code == 204, joined.text


async def receive(socket: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT_S))
    return frame


async def next_event(socket: ClientConnection) -> dict[str, Any]:
    """The next event's data, skipping group summaries (``group.updated``)."""
    while True:
        frame = await receive(socket)
        assert frame["type"] == "message", frame
        event: dict[str, Any] = frame["data"]
        if event["type"] != "group.updated":
            return event


async def create_group(http: httpx.AsyncClient, name: str, members: list[str]) -> str:
    created = await http.post(
        "/api/groups", json={"name": name, "members": members}, headers=dev_headers(ALICE)
    )
    assert created.status_code == 201, created.text
    group_id: str = created.json()["groupId"]
    return group_id


async def send(http: httpx.AsyncClient, group_id: str, content: str) -> dict[str, Any]:
    sent = await http.post(
        f"/api/groups/{group_id}/messages", json={"content": content}, headers=dev_headers(ALICE)
    )
    assert sent.status_code == 201, sent.text
    message: dict[str, Any] = sent.json()["messages"][0]
    return message


async def readable(http: httpx.AsyncClient, group_id: str, seq: int, email: str) -> bool:
    page = await http.get(
        f"/api/groups/{group_id}/messages?after={seq - 1}", headers=dev_headers(email)
    )
    assert page.status_code == 200, page.text
    return any(m["seq"] == seq for m in page.json()["messages"])


async def scenario(host: RunningHost) -> None:
    async with httpx.AsyncClient(base_url=host.base_url, timeout=30) as http:
        room = await create_group(http, "room", [BOB])
        other = await create_group(http, "other", [BOB])
        private = await create_group(http, "private", [])
        async with subscriber(http, BOB) as bob:
            # Connected but not joined: nothing of the room reaches the connection yet (its
            # token has no role and the server has not added it).
            await send(http, room, "before bob joined")
            await join(http, BOB)
            sent, seen = [], []
            for n in range(8):
                # The event is awaited while the send is still in flight: it must not come
                # before the message is stored, whenever the send's answer comes.
                sending = asyncio.create_task(send(http, room, f"hello {n}"))
                event = await next_event(bob)
                assert event["type"] == "group.message" and event["groupId"] == room
                message = event["message"]
                # Readable by the subscriber the moment the event arrives.
                assert await readable(http, room, message["seq"], BOB), message
                seen.append(message["seq"])
                sent.append(await sending)
            assert seen == [m["seq"] for m in sent]
            assert seen == sorted(seen) and len(set(seen)) == len(seen)

            removed = await http.delete(
                f"/api/groups/{room}/members/{BOB}", headers=dev_headers(ALICE)
            )
            assert removed.status_code == 204, removed.text
            event = await next_event(bob)
            assert event == {"type": "group.removed", "groupId": room}

            await send(http, room, "after bob left")
            await send(http, private, "not for bob")
            marker = await send(http, other, "marker")
            # Nothing of the room comes any more (not even its summary), nor of a group bob is
            # not in: every frame up to the other group's message (frames keep their order) is
            # of the other group.
            while True:
                frame = await receive(bob)
                assert frame["data"]["groupId"] == other, frame
                if frame["data"]["type"] == "group.message":
                    assert frame["data"]["message"]["id"] == marker["id"]
                    break


def test_subscribers_see_stored_messages_in_order_and_nothing_after_removal(
    sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**sqlite_env, SLOW_ENV: f"write_group:{WRITE_PAUSE_S}"}
    with run_faulty_host(env, tmp_path / "host.log") as host:
        asyncio.run(scenario(host))
