"""Group conversations end to end on the real local host, over HTTP, on both stores: two
members and a stranger, every status the contract names (201, 200, 204, 400, 403, 404, 409,
413), a spoofed sender, asking the assistant as JSON and as Server-Sent Events, catching up by
seq, leaving, the export and the erasure (``docs/http.md``, "Groups and real-time")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.deployments import host_client, host_on_a_new_database
from tests.support.sse import sse_events
from tools.local.cosmos import CosmosAccount
from tools.local.host import RunningHost

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

ALICE, BOB, EVE = "alice@example.com", "bob@example.com", "eve@example.com"


@pytest.fixture
def cosmos_host(cosmos_account: CosmosAccount, tmp_path: Path) -> Iterator[RunningHost]:
    """The local host on Cosmos DB, in a database nothing created beforehand: the host's local
    bootstrap makes the containers, GroupChatHistory among them."""
    with host_on_a_new_database(cosmos_account, tmp_path / "cosmos-host.log", "groups") as (
        running,
        database,
    ):
        yield running
        groups = database.get_container_client("GroupChatHistory").read()
        assert groups["partitionKey"]["paths"] == ["/groupId"]


def test_two_members_and_the_assistant(any_host: RunningHost) -> None:
    with (
        host_client(any_host, ALICE) as alice,
        host_client(any_host, BOB) as bob,
        host_client(any_host, EVE) as eve,
    ):
        made = alice.post("/api/groups", json={"name": "Launch", "members": [BOB]})
        assert made.status_code == 201, made.text
        gid = made.json()["groupId"]
        assert made.json()["role"] == "owner" and made.json()["memberCount"] == 2

        # A sender in the body is ignored: the server stamps the signed-in caller.
        sent = bob.post(
            f"/api/groups/{gid}/messages",
            json={"content": "hi all", "sender": {"email": ALICE, "name": "Alice"}},
        )
        assert sent.status_code == 201, sent.text
        (message,) = sent.json()["messages"]
        assert message["sender"] == {"email": BOB, "name": "bob"} and message["seq"] == 1

        asked = alice.post(
            f"/api/groups/{gid}/messages", json={"content": "summarise?", "ask": True}
        )
        assert asked.status_code == 201
        user, answer = asked.json()["messages"]
        assert (user["seq"], answer["seq"], answer["sender"]) == (2, 3, None)
        assert answer["content"] == "echo[1]:\nalice: summarise?"

        streamed = bob.post(
            f"/api/groups/{gid}/messages",
            json={"content": "and now?", "ask": True, "clientMessageId": "b-1"},
            headers={"Accept": "text/event-stream"},
        )
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = sse_events(streamed.text)
        assert events[0][0] == "message" and events[-1][0] == "done"
        assert {name for name, _ in events[1:-1]} == {"delta"}
        done = events[-1][1]["messages"]
        assert [m["seq"] for m in done] == [4, 5]  # type: ignore[index]

        # Catching up by seq, and the page's bounds.
        caught = bob.get(f"/api/groups/{gid}/messages", params={"after": 3, "limit": 1})
        assert [m["seq"] for m in caught.json()["messages"]] == [4] and caught.json()["hasMore"]
        assert bob.get(f"/api/groups/{gid}/messages", params={"after": "x"}).status_code == 400
        listed = bob.get("/api/groups").json()
        assert [g["groupId"] for g in listed["groups"]] == [gid]
        assert listed["groups"][0]["messageCount"] == 5

        # A stranger learns nothing; a member may not do an owner's work.
        for method, path, body in (
            ("GET", f"/api/groups/{gid}", None),
            ("PATCH", f"/api/groups/{gid}", {"name": "x"}),
            ("DELETE", f"/api/groups/{gid}", None),
            ("POST", f"/api/groups/{gid}/members", {"email": EVE}),
            ("DELETE", f"/api/groups/{gid}/members/{quote(BOB)}", None),
            ("GET", f"/api/groups/{gid}/messages", None),
            ("POST", f"/api/groups/{gid}/messages", {"content": "let me in"}),
            ("GET", "/api/groups/g_00000000000000000000000000000000", None),
        ):
            response = eve.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
        refused = bob.patch(f"/api/groups/{gid}", json={"name": "mine"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert bob.delete(f"/api/groups/{gid}").status_code == 403

        # The owner's work; errors the contract names.
        assert alice.patch(f"/api/groups/{gid}", json={"name": "Launch 2"}).json()["name"] == (
            "Launch 2"
        )
        assert alice.post(f"/api/groups/{gid}/members", json={"email": "nope"}).status_code == 400
        demote = alice.post(f"/api/groups/{gid}/members", json={"email": ALICE, "role": "member"})
        assert demote.status_code == 409
        reused = bob.post(
            f"/api/groups/{gid}/messages", json={"content": "other", "clientMessageId": "b-1"}
        )
        assert reused.status_code == 409
        assert alice.post("/api/groups", json={"name": ""}).status_code == 400
        assert (
            alice.post(f"/api/groups/{gid}/messages", json={"content": "x" * 16001}).status_code
            == 413
        )
        assert alice.post("/api/realtime/join").status_code == 204

        # The export holds the group; alice leaves, bob becomes the owner.
        export = alice.get("/api/export").json()
        assert [g["groupId"] for g in export["groups"]] == [gid]
        assert len(export["groups"][0]["messages"]) == 5
        assert alice.delete(f"/api/groups/{gid}/members/{quote(ALICE)}").status_code == 204
        assert alice.get(f"/api/groups/{gid}").status_code == 404
        detail = bob.get(f"/api/groups/{gid}").json()
        assert [(m["email"], m["role"]) for m in detail["members"]] == [(BOB, "owner")]

        # Bob's erasure: the group he was the last member of goes with everything in it.
        while (erased := bob.delete("/api/sessions")).status_code == 202:
            pass
        assert erased.status_code == 204
        assert bob.get(f"/api/groups/{gid}").status_code == 404
        assert bob.get("/api/groups").json()["groups"] == []


def test_signed_out_callers_get_401(host: RunningHost) -> None:
    with host_client(host, None) as anonymous:
        assert anonymous.get("/api/groups").status_code == 401
        assert anonymous.post("/api/groups", json={"name": "x"}).status_code == 401
        assert anonymous.post("/api/realtime/join").status_code == 401
