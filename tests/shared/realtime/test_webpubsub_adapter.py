"""The ``Realtime`` adapter on Azure Web PubSub, against the local stand-in through the SDK."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import websockets
from azure.core.credentials import AccessToken
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import HeadersPolicy

from shared.config import load_settings
from shared.realtime import (
    NoRealtime,
    RealtimeUnavailable,
    make_realtime,
    pubsub_group,
    realtime_user_id,
)
from shared.realtime.webpubsub import WebPubSubRealtime
from tools.local.webpubsub import local_webpubsub
from tools.webpubsub import SUBPROTOCOL, RunningWebPubSub
from tools.webpubsub.server import ENTRA_AUDIENCE

RECEIVE_TIMEOUT_S = 5.0


class StandInIdentity:
    """The app's identity against the stand-in: tokens for the scope the SDK asks for, with an
    Entra ID token's audience, signed with the stand-in's key (tools/webpubsub/README.md)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.scopes: list[str] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        expires = int(time.time()) + 3600
        token = jwt.encode({"aud": ENTRA_AUDIENCE, "exp": expires}, self.key, algorithm="HS256")
        return AccessToken(token, expires)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StandInIdentity:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


class PlainHttpForTheStandIn(HeadersPolicy):
    """azure-core sends bearer tokens over https only; the stand-in serves plain http on
    127.0.0.1, so the identity's requests to it opt out (runs before the bearer policy)."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context["enforce_https"] = False
        super().on_request(request)


@pytest.fixture(params=["key", "identity"])
def make_adapter(
    request: pytest.FixtureRequest, webpubsub: RunningWebPubSub
) -> Callable[[], WebPubSubRealtime]:
    """The adapter as the local host builds it (a key), and as Azure does (an identity: the
    bearer-token path, and client tokens from the service's generateToken)."""
    if request.param == "key":
        return lambda: adapter_for(webpubsub)
    identity = StandInIdentity(webpubsub.access_key)

    def with_identity() -> WebPubSubRealtime:
        return WebPubSubRealtime(
            webpubsub.endpoint,
            "parley",
            identity,  # type: ignore[arg-type]
            headers_policy=PlainHttpForTheStandIn(),
        )

    return with_identity


def adapter_for(stand_in: RunningWebPubSub, **extra: str) -> WebPubSubRealtime:
    settings = load_settings(
        {"WEBPUBSUB_ENDPOINT": stand_in.endpoint, "WEBPUBSUB_KEY": stand_in.access_key, **extra}
    )
    realtime = make_realtime(settings)
    assert isinstance(realtime, WebPubSubRealtime)
    return realtime


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


async def receive(socket: Any) -> Any:
    return json.loads(await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT_S))


def test_without_an_endpoint_real_time_is_off() -> None:
    assert isinstance(make_realtime(load_settings({})), NoRealtime)


def test_the_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="WEBPUBSUB_ENDPOINT"):
        load_settings({"WEBPUBSUB_ENDPOINT": "webpubsub.example.com"})


def test_the_key_is_never_shown_in_the_settings_repr(webpubsub: RunningWebPubSub) -> None:
    settings = load_settings(
        {"WEBPUBSUB_ENDPOINT": webpubsub.endpoint, "WEBPUBSUB_KEY": webpubsub.access_key}
    )
    assert webpubsub.access_key not in repr(settings)


def test_client_url_is_for_the_user_only_and_expires_when_its_token_does(
    make_adapter: Callable[[], WebPubSubRealtime],
) -> None:
    user = realtime_user_id("alice@example.com", "k" * 32)

    async def scenario() -> None:
        realtime = make_adapter()
        try:
            before = datetime.now(tz=UTC)
            url, expires_at = await realtime.client_url(user, expires_in_s=600)
            token = parse_qs(urlsplit(url).query)["access_token"][0]
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["sub"] == user
            # No role: the client can neither join nor publish to a group by itself.
            assert "role" not in claims and "webpubsub.group" not in claims
            assert expires_at == datetime.fromtimestamp(claims["exp"], tz=UTC)
            assert 590 <= (expires_at - before).total_seconds() <= 610
            assert "alice" not in url

            async with websockets.connect(url, subprotocols=[SUBPROTOCOL]) as socket:  # type: ignore[list-item]
                connected = await receive(socket)
                assert connected["userId"] == user
                await socket.send(
                    json.dumps({"type": "joinGroup", "group": pubsub_group("g1"), "ackId": 1})
                )
                assert (await receive(socket))["error"]["name"] == "Forbidden"
        finally:
            await realtime.close()

    run(scenario)


def test_published_events_reach_the_users_added_and_stop_at_removal(
    make_adapter: Callable[[], WebPubSubRealtime],
) -> None:
    async def scenario() -> None:
        realtime = make_adapter()
        try:
            url, _ = await realtime.client_url("u.bob", expires_in_s=60)
            async with websockets.connect(url, subprotocols=[SUBPROTOCOL]) as socket:  # type: ignore[list-item]
                await receive(socket)  # connected
                await realtime.add_user_to_group("u.bob", "g1")
                event = {"type": "group.message", "groupId": "g1", "message": {"seq": 1}}
                await realtime.publish("g1", event)
                got = await receive(socket)
                assert got["group"] == pubsub_group("g1")
                assert got["dataType"] == "json" and got["data"] == event

                await realtime.remove_user_from_group("u.bob", "g1")
                await realtime.publish("g1", {"type": "group.message", "groupId": "g1"})
                removed = {"type": "group.removed", "groupId": "g1"}
                await realtime.send_to_user("u.bob", removed)
                got = await receive(socket)
                assert got["from"] == "server" and got["data"] == removed
        finally:
            await realtime.close()

    run(scenario)


def test_failures_of_the_service_become_realtime_unavailable() -> None:
    async def scenario(stand_in: RunningWebPubSub, realtime: WebPubSubRealtime) -> None:
        try:
            with pytest.raises(RealtimeUnavailable):
                await realtime.publish("g1", {"type": "group.deleted", "groupId": "g1"})
            with pytest.raises(RealtimeUnavailable):
                await realtime.add_user_to_group("u.x", "g1")
        finally:
            await realtime.close()

    with local_webpubsub() as stand_in:
        # A wrong key: the service answers 401.
        settings = load_settings(
            {"WEBPUBSUB_ENDPOINT": stand_in.endpoint, "WEBPUBSUB_KEY": "w" * 40}
        )
        realtime = make_realtime(settings)
        assert isinstance(realtime, WebPubSubRealtime)
        asyncio.run(scenario(stand_in, realtime))
    # The service gone: nothing listens any more.
    realtime = adapter_for(stand_in)
    asyncio.run(scenario(stand_in, realtime))


def test_the_identity_signs_in_for_web_pubsub_and_a_forged_token_is_refused(
    webpubsub: RunningWebPubSub,
) -> None:
    identity = StandInIdentity(webpubsub.access_key)
    forged = StandInIdentity("x" * 40)

    async def scenario() -> None:
        for credential, works in ((identity, True), (forged, False)):
            realtime = WebPubSubRealtime(
                webpubsub.endpoint,
                "parley",
                credential,  # type: ignore[arg-type]
                headers_policy=PlainHttpForTheStandIn(),
            )
            try:
                if works:
                    await realtime.publish("g1", {"type": "group.deleted", "groupId": "g1"})
                else:
                    with pytest.raises(RealtimeUnavailable):
                        await realtime.publish("g1", {"type": "group.deleted", "groupId": "g1"})
            finally:
                await realtime.close()

    run(scenario)
    assert set(identity.scopes) == {"https://webpubsub.azure.com/.default"}
