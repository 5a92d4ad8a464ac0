"""Sharing end to end on the real local host (``python -m devhost``), over HTTP, with two
users and a stranger: the issue's "done when" (share with a named colleague for a week, see who
opened it, revoke it), every status the contract names, signed-out callers, the export and the
erasures (``docs/http.md``, "Sharing")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deployments import host_client, host_on_a_new_database
from tools.local.cosmos import CosmosAccount
from tools.local.host import RunningHost

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


@pytest.fixture
def cosmos_host(cosmos_account: CosmosAccount, tmp_path: Path) -> Iterator[RunningHost]:
    """The local host on Cosmos DB, in a database of its own that nothing created beforehand:
    the host's local bootstrap makes the containers, the shares container among them."""
    with host_on_a_new_database(cosmos_account, tmp_path / "cosmos-host.log", "sharing") as (
        running,
        database,
    ):
        yield running
        shares = database.get_container_client("Shares").read()
        assert shares["partitionKey"]["paths"] == ["/shareId"]
        assert shares["defaultTtl"] == -1


def test_share_with_a_colleague_for_a_week_see_who_opened_it_revoke_it(
    any_host: RunningHost,
) -> None:
    host = any_host
    with (
        host_client(host, ALICE) as alice,
        host_client(host, BOB) as bob,
        host_client(host, CAROL) as carol,
    ):
        chat = alice.post("/api/chat", json={"message": "Plan the offsite"}).json()
        session_id = chat["sessionId"]
        answer_id = chat["messages"][1]["id"]
        rated = alice.put(
            f"/api/sessions/{session_id}/messages/{answer_id}/feedback",
            json={"rating": "up", "comment": "private note"},
        )
        assert rated.status_code == 200

        made = alice.post(
            f"/api/sessions/{session_id}/shares",
            json={"audience": "people", "people": ["Bob@Example.com"], "expiresInDays": 7},
        )
        assert made.status_code == 201, made.text
        share = made.json()
        share_id = share["shareId"]
        assert share["people"] == [BOB] and share["messageCount"] == 2 and share["views"] == 0

        # Later turns are not in the snapshot.
        alice.post("/api/chat", json={"message": "Not for Bob", "sessionId": session_id})

        shown = bob.get(f"/api/shares/{share_id}")
        assert shown.status_code == 200
        body = shown.json()
        assert [m["content"] for m in body["messages"]] == [
            "Plan the offsite",
            "echo[0]:\nPlan the offsite",
        ]
        assert body["sharedBy"] == {"email": ALICE, "name": "alice"}
        assert "private note" not in shown.text and "feedback" not in shown.text

        # Carol is not named: the same 404 as for an id that never existed.
        refused = carol.get(f"/api/shares/{share_id}")
        unknown = carol.get("/api/shares/sh_" + "0" * 48)
        assert refused.status_code == unknown.status_code == 404
        assert refused.json() == unknown.json()

        views = alice.get(f"/api/shares/{share_id}/views").json()["views"]
        assert [v["email"] for v in views] == [BOB]
        assert bob.get(f"/api/shares/{share_id}/views").status_code == 404
        listed = alice.get("/api/shares").json()
        assert [(s["shareId"], s["views"]) for s in listed["shares"]] == [(share_id, 1)]
        assert listed["continuationToken"] is None

        copy = bob.post(f"/api/shares/{share_id}/continue")
        assert copy.status_code == 201
        copied = copy.json()
        assert copied["messageCount"] == 2 and copied["sessionId"] != session_id
        turn = bob.post("/api/chat", json={"message": "Go on", "sessionId": copied["sessionId"]})
        assert turn.json()["messages"][1]["content"] == "echo[2]:\nGo on"

        assert bob.delete(f"/api/shares/{share_id}").status_code == 404
        assert alice.delete(f"/api/shares/{share_id}").status_code == 204
        for who in (alice, bob):
            assert who.get(f"/api/shares/{share_id}").status_code == 404
        assert alice.delete(f"/api/shares/{share_id}").status_code == 404
        assert alice.get("/api/shares").json()["shares"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/sessions/s_" + "1" * 32 + "/shares"),
        ("GET", "/api/shares"),
        ("GET", "/api/shares/sh_" + "1" * 48),
        ("DELETE", "/api/shares/sh_" + "1" * 48),
        ("GET", "/api/shares/sh_" + "1" * 48 + "/views"),
        ("POST", "/api/shares/sh_" + "1" * 48 + "/continue"),
    ],
)
def test_signed_out_callers_are_401(host: RunningHost, method: str, path: str) -> None:
    with host_client(host, None) as anonymous:
        response = anonymous.request(method, path, json={"audience": "signed_in"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_signed_in_share_is_read_by_a_signed_in_stranger_but_not_signed_out(
    host: RunningHost,
) -> None:
    with host_client(host, ALICE) as alice, host_client(host, CAROL) as carol:
        session_id = alice.post("/api/chat", json={"message": "Hello"}).json()["sessionId"]
        share_id = alice.post(
            f"/api/sessions/{session_id}/shares", json={"audience": "signed_in"}
        ).json()["shareId"]
        assert carol.get(f"/api/shares/{share_id}").status_code == 200
    with host_client(host, None) as anonymous:
        assert anonymous.get(f"/api/shares/{share_id}").status_code == 401


def test_bad_share_requests_are_400(host: RunningHost) -> None:
    with host_client(host, ALICE) as alice:
        session_id = alice.post("/api/chat", json={"message": "Hello"}).json()["sessionId"]
        url = f"/api/sessions/{session_id}/shares"
        for body in (
            {"audience": "everyone"},
            {"audience": "people"},
            {"audience": "people", "people": ["not an address"]},
            {"audience": "signed_in", "people": [BOB]},
            {"audience": "signed_in", "expiresInDays": 0},
            {"audience": "signed_in", "expiresInDays": 366},
        ):
            response = alice.post(url, json=body)
            assert response.status_code == 400, body
        assert (
            alice.post(
                "/api/sessions/s_" + "2" * 32 + "/shares", json={"audience": "signed_in"}
            ).status_code
            == 404
        )


def test_export_holds_shares_and_erasure_removes_them(host: RunningHost) -> None:
    with host_client(host, ALICE) as alice, host_client(host, BOB) as bob:
        session_id = alice.post("/api/chat", json={"message": "Hello"}).json()["sessionId"]
        share_id = alice.post(
            f"/api/sessions/{session_id}/shares", json={"audience": "signed_in"}
        ).json()["shareId"]
        bob.get(f"/api/shares/{share_id}")

        exported = alice.get("/api/export").json()
        assert exported["complete"] is True
        (shared,) = exported["shares"]
        assert shared["shareId"] == share_id
        assert [v["email"] for v in shared["viewLog"]] == [BOB]
        assert len(shared["messages"]) == 2
        viewed = bob.get("/api/export").json()["sharesViewed"]
        assert [(v["shareId"], v["sharedBy"]) for v in viewed] == [(share_id, ALICE)]

        # Erasing the viewer takes them out of the owner's log.
        while bob.delete("/api/sessions").status_code == 202:
            pass
        assert alice.get(f"/api/shares/{share_id}/views").json()["views"] == []
        assert bob.get("/api/export").json()["sharesViewed"] == []
        # Erasing the owner revokes the share.
        while alice.delete("/api/sessions").status_code == 202:
            pass
        assert bob.get(f"/api/shares/{share_id}").status_code == 404
        assert alice.get("/api/export").json()["shares"] == []
