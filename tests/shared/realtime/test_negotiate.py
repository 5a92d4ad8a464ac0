"""GET /api/realtime/negotiate on the local host: ``make dev``'s host starts the Web PubSub
stand-in itself, hands out URLs a WebSocket client can connect to, and stops it on exit."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from devhost.app import build_app
from shared.clock import parse_iso
from shared.config import load_settings
from shared.realtime import CLIENT_URL_TTL_S, user_id_for
from shared.runtime import reset_runtime
from tools.local.host import dev_headers, free_port, run_host
from tools.webpubsub import SUBPROTOCOL

ALICE = "alice@example.com"


async def connect_and_greet(url: str) -> dict[str, Any]:
    async with websockets.connect(url, subprotocols=[SUBPROTOCOL]) as socket:  # type: ignore[list-item]
        assert socket.subprotocol == SUBPROTOCOL
        greeting: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 5))
        return greeting


def test_the_local_host_hands_out_urls_of_its_own_stand_in(
    sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    with run_host(sqlite_env, tmp_path / "host.log") as host:
        before = datetime.now(tz=UTC)
        response = httpx.get(
            f"{host.base_url}/api/realtime/negotiate", headers=dev_headers(ALICE), timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json()
        assert set(body) == {"url", "expiresAt"}
        url = body["url"]
        assert url.startswith("ws://127.0.0.1:") and "/client/hubs/parley?access_token=" in url
        assert "alice" not in url
        lifetime = (parse_iso(body["expiresAt"]) - before).total_seconds()
        assert CLIENT_URL_TTL_S - 10 <= lifetime <= CLIENT_URL_TTL_S + 60

        greeting = asyncio.run(connect_and_greet(url))
        assert greeting["type"] == "system" and greeting["event"] == "connected"
        # The caller's opaque id, the one the group service adds to groups.
        assert greeting["userId"] == user_id_for(load_settings(sqlite_env), ALICE)

        anonymous = httpx.get(f"{host.base_url}/api/realtime/negotiate", timeout=10)
        assert anonymous.status_code == 401
    # The stand-in stopped with the host: its port takes no connection any more.
    with pytest.raises(OSError):
        asyncio.run(connect_and_greet(url))


def test_a_web_pubsub_the_environment_names_is_used_and_503_when_it_fails(
    sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    # Nothing listens there, and without a key the app signs in with an Entra ID identity,
    # which a test machine has none of: negotiating fails, as with an outage.
    env = {**sqlite_env, "WEBPUBSUB_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    with run_host(env, tmp_path / "host.log") as host:
        response = httpx.get(
            f"{host.base_url}/api/realtime/negotiate", headers=dev_headers(ALICE), timeout=30
        )
        # A group is made all the same (its events are hints), and joining it says why not.
        made = httpx.post(
            f"{host.base_url}/api/groups",
            json={"name": "Plans"},
            headers=dev_headers(ALICE),
            timeout=30,
        )
        joined = httpx.post(
            f"{host.base_url}/api/realtime/join", headers=dev_headers(ALICE), timeout=30
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "realtime_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert made.status_code == 201
    assert joined.status_code == 503
    assert joined.json()["error"]["code"] == "realtime_unavailable"


def test_negotiate_is_503_when_real_time_is_off(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app without WEBPUBSUB_ENDPOINT (in-process: the local host would start a stand-in).
    for name, value in sqlite_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WEBPUBSUB_ENDPOINT", raising=False)

    async def scenario() -> httpx.Response:
        await reset_runtime()
        try:
            transport = httpx.ASGITransport(app=build_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://local") as http:
                return await http.get("/api/realtime/negotiate", headers=dev_headers(ALICE))
        finally:
            await reset_runtime()

    response = asyncio.run(scenario())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "realtime_unavailable"
    assert "Retry-After" in response.headers
    assert urlsplit(str(response.url)).path == "/api/realtime/negotiate"
