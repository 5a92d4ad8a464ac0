"""The Web PubSub stand-in behaves as the service does where Parley relies on it.

Each rule is the documented protocol, driven through the real SDK
(azure-messaging-webpubsubservice) and a real WebSocket client (websockets):
- client protocol (learn.microsoft.com/azure/azure-web-pubsub/concept-client-protocols): the
  token in ``access_token`` (``sub`` the user, ``exp`` "MUST NOT be accepted" on or after it,
  ``role`` the permissions); a PubSub client uses ``json.webpubsub.azure.v1``; a client without
  a subprotocol is a simple client that gets the data itself;
- the JSON subprotocol (reference-json-webpubsub-subprotocol): the ``connected`` system
  message, group and server message envelopes, ``ack`` with ``Forbidden`` for a request the
  client's roles do not allow, and no permission to join or publish without a role;
- the REST API (the SDK's requests: JWT HS256 with the access key, audience the request URL,
  ``api-version``): add/remove a connection or a user to/from a group apply to the user's open
  connections, and a connection removed from a group receives nothing more from it.

"Receives nothing" is proved without waiting: after the message that must not arrive, a marker
is sent to the same connection; the connection's frames keep their order, so the next frame
being the marker proves the message was not delivered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import websockets
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient
from websockets.asyncio.client import ClientConnection

from tools.local.webpubsub import HUB
from tools.webpubsub import SUBPROTOCOL, RunningWebPubSub

RECEIVE_TIMEOUT_S = 5.0
OTHER_KEY = "not-the-access-key-but-long-enough-for-hs256"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


@asynccontextmanager
async def sdk(stand_in: RunningWebPubSub, key: str | None = None) -> AsyncIterator[Any]:
    client = WebPubSubServiceClient(
        endpoint=stand_in.endpoint,
        hub=HUB,
        credential=AzureKeyCredential(key or stand_in.access_key),
        retry_total=0,
    )
    async with client:
        yield client


async def client_url(service: Any, user_id: str | None = "alice", **kwargs: Any) -> str:
    token = await service.get_client_access_token(user_id=user_id, **kwargs)
    return str(token["url"])


@asynccontextmanager
async def pubsub_client(url: str) -> AsyncIterator[tuple[ClientConnection, dict[str, Any]]]:
    """A PubSub WebSocket client, and its ``connected`` system message."""
    async with websockets.connect(url, subprotocols=[SUBPROTOCOL]) as socket:  # type: ignore[list-item]
        connected = await receive(socket)
        yield socket, connected


async def receive(socket: ClientConnection) -> Any:
    frame = await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT_S)
    return json.loads(frame)


async def handshake_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, **kwargs):
            pass
    return refused.value.response.status_code


def sign(claims: dict[str, Any], key: str) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


def test_a_pubsub_client_is_told_its_user_and_connection_on_connect(
    webpubsub: RunningWebPubSub,
) -> None:
    async def scenario() -> None:
        async with sdk(webpubsub) as service:
            url = await client_url(service, "alice")
            async with websockets.connect(url, subprotocols=[SUBPROTOCOL]) as socket:  # type: ignore[list-item]
                assert socket.subprotocol == SUBPROTOCOL
                connected = await receive(socket)
        assert connected["type"] == "system"
        assert connected["event"] == "connected"
        assert connected["userId"] == "alice"
        assert isinstance(connected["connectionId"], str) and connected["connectionId"]

    run(scenario)


def test_client_tokens_are_checked_signature_expiry_and_audience(
    webpubsub: RunningWebPubSub,
) -> None:
    base = webpubsub.endpoint.replace("http://", "ws://") + f"/client/hubs/{HUB}"
    audience = f"{webpubsub.endpoint}/client/hubs/{HUB}"
    now = datetime.now(tz=UTC)
    good = {"aud": audience, "exp": now + timedelta(minutes=5), "sub": "alice"}
    cases = {
        "missing": base,
        "other key": f"{base}?access_token={sign(good, OTHER_KEY)}",
        "expired": f"{base}?access_token="
        + sign({**good, "exp": now - timedelta(seconds=1)}, webpubsub.access_key),
        "no expiry": f"{base}?access_token="
        + sign({"aud": audience, "sub": "alice"}, webpubsub.access_key),
        "other hub": f"{base}?access_token="
        + sign({**good, "aud": f"{webpubsub.endpoint}/client/hubs/other"}, webpubsub.access_key),
    }

    async def scenario() -> None:
        for name, url in cases.items():
            status = await handshake_status(url, subprotocols=[SUBPROTOCOL])
            assert status == 401, name
        # The same claims, well signed, connect (the cases above fail for their one fault).
        url = f"{base}?access_token={sign(good, webpubsub.access_key)}"
        async with pubsub_client(url) as (_, connected):
            assert connected["userId"] == "alice"

    run(scenario)


def test_an_unknown_subprotocol_is_refused_and_none_makes_a_simple_client(
    webpubsub: RunningWebPubSub,
) -> None:
    async def scenario() -> None:
        async with sdk(webpubsub) as service:
            url = await client_url(service, "simon")
            assert await handshake_status(url, subprotocols=["custom.v1"]) == 400
            # No subprotocol: a simple WebSocket client. No system messages; what the server
            # sends arrives as the data itself, not in the JSON envelope.
            async with websockets.connect(url) as simple:
                assert simple.subprotocol is None
                await service.send_to_user("simon", {"hello": "world"})
                frame = await asyncio.wait_for(simple.recv(), RECEIVE_TIMEOUT_S)
                assert json.loads(frame) == {"hello": "world"}

    run(scenario)


def test_a_client_without_roles_can_neither_join_nor_publish_to_a_group(
    webpubsub: RunningWebPubSub,
) -> None:
    async def scenario() -> None:
        async with sdk(webpubsub) as service:
            plain = await client_url(service, "mallory")
            privileged = await client_url(
                service, "admin", roles=["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]
            )
            async with (
                pubsub_client(plain) as (socket, _),
                pubsub_client(privileged) as (
                    listener,
                    _,
                ),
            ):
                await socket.send(json.dumps({"type": "joinGroup", "group": "g.x", "ackId": 1}))
                ack = await receive(socket)
                assert ack["type"] == "ack" and ack["ackId"] == 1
                assert ack["success"] is False and ack["error"]["name"] == "Forbidden"
                assert not await service.group_exists("g.x")

                # A connection with the role can join (the refusal above is about roles).
                await listener.send(json.dumps({"type": "joinGroup", "group": "g.x", "ackId": 1}))
                assert (await receive(listener))["success"] is True

                await socket.send(
                    json.dumps(
                        {"type": "sendToGroup", "group": "g.x", "ackId": 2, "data": {"x": 1}}
                    )
                )
                ack = await receive(socket)
                assert ack["success"] is False and ack["error"]["name"] == "Forbidden"
                # Nothing reached the group: the listener's next frame is the marker.
                await service.send_to_user("admin", {"marker": 1})
                assert (await receive(listener))["data"] == {"marker": 1}

                await listener.send(
                    json.dumps(
                        {"type": "sendToGroup", "group": "g.x", "ackId": 2, "data": {"y": 2}}
                    )
                )
                frames = [await receive(listener), await receive(listener)]
                assert {"type": "ack", "ackId": 2, "success": True} in frames

    run(scenario)


def test_group_messages_arrive_in_the_documented_envelope_in_order(
    webpubsub: RunningWebPubSub,
) -> None:
    async def scenario() -> None:
        async with sdk(webpubsub) as service:
            url = await client_url(service, "alice")
            async with pubsub_client(url) as (socket, connected):
                await service.add_connection_to_group("g.order", connected["connectionId"])
                for seq in range(1, 21):
                    await service.send_to_group("g.order", {"seq": seq})
                await service.send_to_group("g.order", "plain words", content_type="text/plain")
                received = [await receive(socket) for _ in range(21)]
        assert received[0] == {
            "type": "message",
            "from": "group",
            "group": "g.order",
            "dataType": "json",
            "data": {"seq": 1},
        }
        assert [m["data"]["seq"] for m in received[:20]] == list(range(1, 21))
        assert received[20]["dataType"] == "text" and received[20]["data"] == "plain words"

    run(scenario)


def test_a_connection_removed_from_a_group_receives_nothing_more(
    webpubsub: RunningWebPubSub,
) -> None:
    async def scenario() -> None:
        async with sdk(webpubsub) as service:
            url = await client_url(service, "bob")
            async with pubsub_client(url) as (socket, connected):
                connection_id = connected["connectionId"]
                await service.add_connection_to_group("g.rm", connection_id)
                await service.send_to_group("g.rm", {"n": 1})
                assert (await receive(socket))["data"] == {"n": 1}

                await service.remove_connection_from_group("g.rm", connection_id)
                await service.send_to_group("g.rm", {"n": 2})
                await service.send_to_connection(connection_id, {"marker": True})
                after = await receive(socket)
                assert after["from"] == "server" and after["data"] == {"marker": True}

    run(scenario)


def test_user_group_changes_apply_to_every_open_connection_of_that_user(
    webpubsub: RunningWebPubSub,
) -> None:
    async def scenario() -> None:
        async with sdk(webpubsub) as service:
            carol = await client_url(service, "carol")
            dave = await client_url(service, "dave")
            async with (
                pubsub_client(carol) as (tab1, _),
                pubsub_client(carol) as (tab2, _),
                pubsub_client(dave) as (other, _),
            ):
                await service.add_user_to_group("g.u", "carol")
                await service.send_to_group("g.u", {"n": 1})
                for tab in (tab1, tab2):
                    assert (await receive(tab))["data"] == {"n": 1}
                # Another user's connection is not in the group.
                await service.send_to_user("dave", {"marker": 1})
                assert (await receive(other))["data"] == {"marker": 1}

                await service.remove_user_from_group("g.u", "carol")
                await service.send_to_group("g.u", {"n": 2})
                await service.send_to_user("carol", {"marker": 2})
                for tab in (tab1, tab2):
                    after = await receive(tab)
                    assert after["from"] == "server" and after["data"] == {"marker": 2}
                assert not await service.group_exists("g.u")

    run(scenario)


def test_rest_calls_need_a_token_signed_with_the_key_for_that_very_url(
    webpubsub: RunningWebPubSub,
) -> None:
    async def scenario() -> None:
        async with sdk(webpubsub, key=OTHER_KEY) as wrong:
            with pytest.raises(ClientAuthenticationError):
                await wrong.send_to_group("g.auth", {"n": 1})
        url = f"{webpubsub.endpoint}/api/hubs/{HUB}/groups/g.auth/:send?api-version=2024-12-01"
        exp = datetime.now(tz=UTC) + timedelta(minutes=1)
        other_url = url.replace("g.auth", "g.other")
        async with httpx.AsyncClient() as http:
            for token, expected in (
                (sign({"aud": other_url, "exp": exp}, webpubsub.access_key), 401),
                (sign({"aud": url, "exp": exp}, webpubsub.access_key), 202),
            ):
                response = await http.post(
                    url, json={"n": 1}, headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == expected
            no_version = url.split("?")[0]
            token = sign({"aud": no_version, "exp": exp}, webpubsub.access_key)
            response = await http.post(
                no_version, json={"n": 1}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 400

    run(scenario)


def test_adding_a_connection_that_does_not_exist_is_404(webpubsub: RunningWebPubSub) -> None:
    async def scenario() -> None:
        async with sdk(webpubsub) as service:
            with pytest.raises(HttpResponseError) as failed:
                await service.add_connection_to_group("g.none", "no-such-connection")
            assert failed.value.status_code == 404

    run(scenario)


def test_a_token_from_generate_token_carries_what_was_asked_and_joins_its_groups(
    webpubsub: RunningWebPubSub,
) -> None:
    """The REST ``generateToken`` (what the SDK calls with an identity): user, roles, lifetime
    and the groups a connection joins on connect (the ``webpubsub.group`` claim)."""
    url = f"{webpubsub.endpoint}/api/hubs/{HUB}/:generateToken"
    query = "userId=erin&minutesToExpire=5&group=g.start&api-version=2024-12-01"
    exp = datetime.now(tz=UTC) + timedelta(minutes=1)
    auth = {
        "Authorization": "Bearer "
        + sign({"aud": f"{url}?{query}", "exp": exp}, webpubsub.access_key)
    }

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{url}?{query}", headers=auth)
            assert answer.status_code == 200
            token = answer.json()["token"]
            bad = await http.post(f"{url}?userId=erin&minutesToExpire=0&api-version=2024-12-01")
            assert bad.status_code == 401  # no token at all: refused before anything else
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == "erin" and "role" not in claims
        assert 290 <= claims["exp"] - claims["iat"] <= 310
        client = webpubsub.endpoint.replace("http://", "ws://") + f"/client/hubs/{HUB}"
        async with (
            sdk(webpubsub) as service,
            pubsub_client(f"{client}?access_token={token}") as (
                socket,
                connected,
            ),
        ):
            assert connected["userId"] == "erin"
            await service.send_to_group("g.start", {"joined": "on connect"})
            assert (await receive(socket))["data"] == {"joined": "on connect"}

    run(scenario)
