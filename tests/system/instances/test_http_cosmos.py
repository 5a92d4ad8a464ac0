"""The HTTP API end to end on the Cosmos store: the real local host (``python -m devhost``) with
STORAGE_BACKEND=cosmos against the test Cosmos account (the local server, or COSMOS_ENDPOINT's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.cosmos import CosmosClient

from tests.support.cosmos import COSMOS_MODE_FIXTURES, account_for
from tests.support.databases import ACTIVE, CosmosDatabase, cosmos_database
from tests.support.deployments import cosmos_env
from tools.local.host import dev_headers, run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


@pytest.fixture(params=list(COSMOS_MODE_FIXTURES))
def database(request: pytest.FixtureRequest) -> Iterator[CosmosDatabase]:
    """The local server as it is by default, with lagging replicas, and throttled."""
    with cosmos_database(account_for(request, request.param)) as db:
        yield db


@pytest.mark.cross_instance
def test_conversation_list_get_delete_and_restart(database: CosmosDatabase, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    caller = dev_headers(f"Alice-{tag}@Example.com")  # stored under the lower-cased email
    email = f"alice-{tag}@example.com"
    other = dev_headers(f"bob-{tag}@example.com")
    env = cosmos_env(database)
    log = tmp_path / "host.log"

    with run_host(env, log) as host, httpx.Client(base_url=host.base_url, timeout=30) as http:
        sid = None
        answers = []
        for text in ("one", "two", "three"):
            body = {"message": text, **({"sessionId": sid} if sid else {})}
            response = http.post("/api/chat", json=body, headers=caller)
            assert response.status_code == 200, response.text
            sid = response.json()["sessionId"]
            answers.append(response.json()["messages"][1]["content"])
        assert answers == ["echo[0]:\none", "echo[2]:\ntwo", "echo[4]:\nthree"]

        listed = http.get("/api/sessions", headers=caller).json()
        assert [s["sessionId"] for s in listed["sessions"]] == [sid]
        assert listed["sessions"][0]["messageCount"] == 6 and listed["continuationToken"] is None
        assert http.get("/api/sessions", headers=other).json()["sessions"] == []
        assert http.get(f"/api/sessions/{sid}", headers=other).status_code == 404

    # A new process: the history is in Cosmos, not in memory.
    with run_host(env, log) as host, httpx.Client(base_url=host.base_url, timeout=30) as http:
        detail = http.get(f"/api/sessions/{sid}", headers=caller)
        assert detail.status_code == 200
        assert [m["content"] for m in detail.json()["messages"]][-1] == "echo[4]:\nthree"
        nxt = http.post("/api/chat", json={"message": "four", "sessionId": sid}, headers=caller)
        assert nxt.json()["messages"][1]["content"] == "echo[6]:\nfour"

        account = database.account
        raw = CosmosClient(account.endpoint, account.key, **account.client_kwargs())
        container = raw.get_database_client(database.name).get_container_client(ACTIVE)
        items = list(container.query_items("SELECT c.EmailID, c.type FROM c", partition_key=email))
        assert {i["EmailID"] for i in items} == {email}
        # The session and its 8 messages, and the day's and the month's token usage.
        assert sorted(i["type"] for i in items) == ["message"] * 8 + ["session"] + ["usage"] * 2

        assert http.delete(f"/api/sessions/{sid}", headers=caller).status_code == 204
        assert http.get(f"/api/sessions/{sid}", headers=caller).status_code == 404
        assert http.delete(f"/api/sessions/{sid}", headers=caller).status_code == 404
        # Nothing of the conversation is left; what it cost stays counted (deleting a
        # conversation does not give its tokens back; erasing everything removes them too).
        left = list(container.query_items("SELECT * FROM c", partition_key=email))
        assert [i["type"] for i in left] == ["usage", "usage"]

    text = log.read_text(errors="replace")
    assert "three" not in text and email not in text and account.key not in text
