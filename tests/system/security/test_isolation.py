"""Nobody reads, changes or deletes another user's conversation: on every endpoint, on both
stores (SQLite, and Cosmos via the test account with a database of this module's own)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.databases import cosmos_database
from tools.local.cosmos import CosmosAccount
from tools.local.host import RunningHost, dev_headers, run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

ALICE = dev_headers("alice@example.com")
BOB = dev_headers("bob@example.com")
NEVER_EXISTED = "s_" + "f" * 32


@pytest.fixture(scope="module", params=["sqlite", "cosmos"])
def store_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("isolation")
        yield {"STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(path / "c.db")}
        return
    account: CosmosAccount = request.getfixturevalue("cosmos_account")
    with cosmos_database(account) as database:  # a fresh database, deleted afterwards
        yield {
            "STORAGE_BACKEND": "cosmos",
            "COSMOS_ENDPOINT": account.endpoint,
            "COSMOS_KEY": account.key,
            "COSMOS_VERIFY_TLS": "true" if account.verify_tls else "false",
            "COSMOS_DATABASE": database.name,
        }


@pytest.fixture(scope="module")
def isolation_host(
    store_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHost]:
    log = tmp_path_factory.mktemp("isolation-log") / "host.log"
    with run_host({"AUTH_MODE": "dev", **store_env}, log) as running:
        yield running


def snapshot(client: httpx.Client, sid: str) -> tuple[Any, Any]:
    detail = client.get(f"/api/sessions/{sid}", headers=ALICE)
    listing = client.get("/api/sessions", headers=ALICE)
    assert detail.status_code == 200 and listing.status_code == 200
    return detail.json(), listing.json()


def test_another_user_sees_only_not_found(isolation_host: RunningHost) -> None:
    with httpx.Client(base_url=isolation_host.base_url, timeout=30) as client:
        first = client.post(
            "/api/chat", json={"message": "alice's plan", "clientMessageId": "a1"}, headers=ALICE
        )
        assert first.status_code == 200, first.text
        sid = first.json()["sessionId"]
        assert (
            client.post(
                "/api/chat", json={"message": "more", "sessionId": sid}, headers=ALICE
            ).status_code
            == 200
        )
        second = client.post("/api/chat", json={"message": "another"}, headers=ALICE)
        before = snapshot(client, sid)

        # List: Alice's sessions are not shown to Bob, however he pages.
        listing = client.get("/api/sessions", headers=BOB)
        assert listing.status_code == 200 and listing.json()["sessions"] == []
        for archived in ("true", "false"):
            response = client.get("/api/sessions", params={"archived": archived}, headers=BOB)
            assert response.json()["sessions"] == []

        # Get, chat and delete: exactly what a session that never existed answers.
        missing = client.get(f"/api/sessions/{NEVER_EXISTED}", headers=BOB)
        attempts = {
            "get": client.get(f"/api/sessions/{sid}", headers=BOB),
            "chat": client.post(
                "/api/chat", json={"message": "bob writes", "sessionId": sid}, headers=BOB
            ),
            "chat_retry": client.post(
                "/api/chat",
                json={"message": "bob writes", "sessionId": sid, "clientMessageId": "a1"},
                headers=BOB,
            ),
            "stream": client.post(
                "/api/chat",
                json={"message": "bob streams", "sessionId": sid},
                headers={**BOB, "Accept": "text/event-stream"},
            ),
            "delete": client.delete(f"/api/sessions/{sid}", headers=BOB),
            "delete_other": client.delete(
                f"/api/sessions/{second.json()['sessionId']}", headers=BOB
            ),
        }
        for name, response in attempts.items():
            assert response.status_code == 404, (name, response.text)
            assert response.json() == missing.json(), name

        # Bob's own first message with Alice's clientMessageId lands in a session of his own.
        own = client.post(
            "/api/chat", json={"message": "bob's own", "clientMessageId": "a1"}, headers=BOB
        )
        assert own.status_code == 200 and own.json()["sessionId"] != sid

        # Alice's data is exactly as it was.
        assert snapshot(client, sid) == before
        assert client.delete(f"/api/sessions/{sid}", headers=ALICE).status_code == 204


def test_another_users_continuation_token_reveals_nothing(isolation_host: RunningHost) -> None:
    carol, dave = dev_headers("carol@example.com"), dev_headers("dave@example.com")
    with httpx.Client(base_url=isolation_host.base_url, timeout=10) as client:
        for text in ("one", "two", "three"):
            assert (
                client.post("/api/chat", json={"message": text}, headers=carol).status_code == 200
            )
        page = client.get("/api/sessions", params={"limit": 1}, headers=carol).json()
        assert page["continuationToken"]
        stolen = client.get(
            "/api/sessions", params={"continuationToken": page["continuationToken"]}, headers=dave
        )
        # Refused, or an empty page of Dave's own: never Carol's sessions, never a hang or 5xx.
        assert stolen.status_code in (200, 400), stolen.text
        if stolen.status_code == 200:
            assert stolen.json()["sessions"] == []
