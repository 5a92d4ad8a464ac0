"""Regenerate, an answer's versions and branches end to end: the real local host on a real
socket, on the embedded store and on the local Cosmos server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.models import ChatResponse
from tests.support.databases import cosmos_database
from tests.support.deployments import HOST_ENV, Deployment, assert_error, chat, cosmos_env
from tests.support.scenarios import seed_session
from tests.support.sse import sse_events
from tools.local.cosmos import CosmosAccount
from tools.local.host import run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


@pytest.fixture(scope="module", params=["sqlite", "cosmos"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    from shared.storage.sqlite import SqliteStore

    folder = tmp_path_factory.mktemp(f"regenerate-{request.param}")
    if request.param == "sqlite":
        path = folder / "c.db"
        env = {**HOST_ENV, "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(path)}
        with run_host(env, folder / "host.log") as host:
            yield Deployment("sqlite", host, env, lambda: SqliteStore(path))
        return
    account: CosmosAccount = request.getfixturevalue("cosmos_account")
    with cosmos_database(account) as database:
        env = cosmos_env(database, HOST_ENV)
        with run_host(env, folder / "host.log") as host:
            yield Deployment("cosmos", host, env, database.store)


def test_regenerate_over_http(deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails
    with deployment.client(alice) as client, deployment.client(bob) as other:
        sid = chat(client, "one")["sessionId"]
        first = chat(client, "two", sid)["messages"][1]
        # No body at all: a regenerate without a clientMessageId.
        response = client.post(f"/api/sessions/{sid}/regenerate")
        assert response.status_code == 200, response.text
        body = ChatResponse.model_validate(response.json())
        (answer,) = body.messages
        assert (answer.id, answer.versions, body.session_id) == (first["id"], 2, sid)
        # The same as a stream, with a clientMessageId; its retry answers the same.
        stream = client.post(
            f"/api/sessions/{sid}/regenerate",
            json={"clientMessageId": "r-1"},
            headers={"Accept": "text/event-stream"},
        )
        assert stream.status_code == 200, stream.text
        names = [name for name, _ in sse_events(stream.text)]
        assert names[0] == "session" and names[-1] == "done" and "delta" in names
        (streamed,) = sse_events(stream.text)[-1][1]["messages"]
        assert streamed["versions"] == 3
        retry = client.post(f"/api/sessions/{sid}/regenerate", json={"clientMessageId": "r-1"})
        assert retry.json()["messages"] == [streamed]
        detail = client.get(f"/api/sessions/{sid}").json()
        assert detail["messageCount"] == 4 and detail["messages"][-1] == streamed
        assert "versions" not in detail["messages"][1]
        versions = client.get(f"/api/sessions/{sid}/messages/{first['id']}/versions")
        assert versions.status_code == 200, versions.text
        listed = versions.json()["versions"]
        assert listed[0]["content"] == first["content"]
        assert len(listed) == 3 and listed[-1] == streamed
        assert all("versions" not in v for v in listed[:-1])
        # Another user's session, and a message of none: 404.
        assert_error(other.post(f"/api/sessions/{sid}/regenerate"), 404, "not_found")
        assert_error(
            other.get(f"/api/sessions/{sid}/messages/{first['id']}/versions"), 404, "not_found"
        )
        assert_error(
            client.get(f"/api/sessions/{sid}/messages/{sid}:00000009/versions"), 404, "not_found"
        )
        # Exported with the answer.
        exported = client.get("/api/export").json()
        (session,) = [s for s in exported["sessions"] if s["sessionId"] == sid]
        earlier = session["messages"][-1]["earlierVersions"]
        assert [v["content"] for v in earlier] == [v["content"] for v in listed[:-1]]


def test_only_the_last_answer_over_http(deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, _ = emails
    session = deployment.with_store(
        lambda store: seed_session(store, alice, ["question", "answer", "unanswered"])
    )
    with deployment.client(alice) as client:
        response = client.post(f"/api/sessions/{session.id}/regenerate", json={})
        assert_error(response, 409, "conflict")
        assert_error(
            client.post(
                f"/api/sessions/{session.id}/regenerate",
                content=b"[]",
                headers={"Content-Type": "application/json"},
            ),
            400,
            "invalid_request",
        )


def test_fork_over_http(deployment: Deployment, emails: tuple[str, str]) -> None:
    alice, bob = emails
    with deployment.client(alice) as client, deployment.client(bob) as other:
        sid = chat(client, "one")["sessionId"]
        answer = chat(client, "two", sid)["messages"][0]  # the second question
        response = client.post(f"/api/sessions/{sid}/fork", json={"messageId": answer["id"]})
        assert response.status_code == 201, response.text
        summary = response.json()
        assert summary["title"].endswith(" (branch)") and summary["messageCount"] == 3
        branch = client.get(f"/api/sessions/{summary['sessionId']}").json()
        assert [m["content"] for m in branch["messages"]][-1] == "two"
        assert_error(
            other.post(f"/api/sessions/{sid}/fork", json={"messageId": answer["id"]}),
            404,
            "not_found",
        )
        assert_error(client.post(f"/api/sessions/{sid}/fork", json={}), 400, "invalid_request")
        assert_error(
            client.post(f"/api/sessions/{sid}/fork", json={"messageId": "x"}), 404, "not_found"
        )
