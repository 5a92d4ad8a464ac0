"""Two instances, one user, replicas that lag: reading your own writes on any instance
(``Parley-Consistency``) and an erasure that is done when it says so.

Two real local hosts (``python -m devhost``, STORAGE_BACKEND=cosmos) share one local Cosmos
server whose replicas lag (reads without a session token that covers the last writes see the
container as it was before them): what production looks like with several Functions instances,
each with its own Cosmos client (docs/design.md, "Consistency"). These tests are not
``cross_instance``: they exist to run on the lagging server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.cosmos import CosmosClient

from tests.support.databases import ACTIVE, ARCHIVE, CosmosDatabase, cosmos_database
from tests.support.deployments import cosmos_env
from tools.local.cosmos import CosmosAccount
from tools.local.host import ROOT, RunningHost, dev_headers, run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

ROUNDS = 4  # sessions created on A and read at once on B, per test
HEADER = "Parley-Consistency"


@pytest.fixture
def database(cosmos_account_lagging: CosmosAccount) -> Iterator[CosmosDatabase]:
    with cosmos_database(cosmos_account_lagging) as db:
        yield db


@pytest.fixture
def hosts(database: CosmosDatabase, tmp_path: Path) -> Iterator[tuple[RunningHost, RunningHost]]:
    env = cosmos_env(database)
    with ExitStack() as stack:
        a = stack.enter_context(run_host(env, tmp_path / "a.log"))
        b = stack.enter_context(run_host(env, tmp_path / "b.log"))
        yield a, b


class Carrier:
    """A client that carries the latest Parley-Consistency (as web/api.js does), or not."""

    def __init__(self, email: str, *, carry: bool) -> None:
        self.email = email
        self.headers = dev_headers(email)
        self.carry = carry
        self.token: str | None = None

    def call(self, host: RunningHost, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(self.headers)
        if self.carry and self.token:
            headers[HEADER] = self.token
        response = httpx.request(
            method, host.base_url + path, headers=headers, timeout=30, **kwargs
        )
        if response.headers.get(HEADER):
            self.token = response.headers[HEADER]
        return response


def latest_items(database: CosmosDatabase, email: str) -> list[dict[str, Any]]:
    """What the account holds for ``email`` at its latest state: a write of this client first
    (a write's session token covers every earlier write), then queries that carry it."""
    account = database.account
    client = CosmosClient(account.endpoint, account.key, **account.client_kwargs())
    db = client.get_database_client(database.name)
    found: list[dict[str, Any]] = []
    for name in (ACTIVE, ARCHIVE):
        container = db.get_container_client(name)
        container.upsert_item({"id": uuid.uuid4().hex, "EmailID": "probe@example.invalid"})
        found += list(container.query_items("SELECT * FROM c", partition_key=email))
    return found


def test_with_the_header_every_read_on_the_other_host_sees_the_writes(
    hosts: tuple[RunningHost, RunningHost],
) -> None:
    a, b = hosts
    tag = uuid.uuid4().hex[:8]
    user = Carrier(f"carry-{tag}@example.com", carry=True)
    for round_ in range(ROUNDS):
        word = f"word{round_}x{tag}"
        created = user.call(a, "POST", "/api/chat", json={"message": f"hello {word}"})
        assert created.status_code == 200, created.text
        assert user.token, "every response carries Parley-Consistency"
        sid = created.json()["sessionId"]

        got = user.call(b, "GET", f"/api/sessions/{sid}")
        assert got.status_code == 200, got.text
        assert [m["content"] for m in got.json()["messages"]] == [
            f"hello {word}",
            f"echo[0]:\nhello {word}",
        ]
        page = user.call(b, "GET", f"/api/sessions/{sid}/messages")
        assert page.status_code == 200 and len(page.json()["messages"]) == 2, page.text
        listed = user.call(b, "GET", "/api/sessions?limit=50").json()["sessions"]
        assert sid in [s["sessionId"] for s in listed]
        assert next(s for s in listed if s["sessionId"] == sid)["messageCount"] == 2
        found = user.call(b, "GET", f"/api/search?q={word}").json()["results"]
        assert sid in [r["sessionId"] for r in found], found
        exported = user.call(b, "GET", "/api/export")
        assert exported.status_code == 200 and word in exported.text

        # The next turn lands on B, the rename on A again: each sees the other's write.
        nxt = user.call(b, "POST", "/api/chat", json={"message": "again", "sessionId": sid})
        assert nxt.status_code == 200, nxt.text
        assert nxt.json()["messages"][1]["content"] == "echo[2]:\nagain"
        renamed = user.call(a, "PATCH", f"/api/sessions/{sid}", json={"title": f"t{round_}"})
        assert renamed.status_code == 200 and renamed.json()["messageCount"] == 4, renamed.text
        detail = user.call(b, "GET", f"/api/sessions/{sid}").json()
        assert detail["title"] == f"t{round_}" and len(detail["messages"]) == 4


def _not_missing(response: httpx.Response) -> None:
    """200 (or what the call answers on success), or 503 with Retry-After: never 404."""
    assert response.status_code != 404, response.text
    if response.status_code == 503:
        assert response.headers.get("Retry-After"), response.headers
    else:
        assert response.status_code < 300, response.text


def test_without_the_header_a_session_just_made_is_never_missing(
    hosts: tuple[RunningHost, RunningHost], database: CosmosDatabase
) -> None:
    a, b = hosts
    tag = uuid.uuid4().hex[:8]
    user = Carrier(f"plain-{tag}@example.com", carry=False)
    for round_ in range(ROUNDS):
        created = user.call(a, "POST", "/api/chat", json={"message": f"hi {round_}"})
        assert created.status_code == 200, created.text
        sid = created.json()["sessionId"]
        user_message = created.json()["messages"][0]["id"]
        _not_missing(user.call(b, "GET", f"/api/sessions/{sid}"))
        _not_missing(user.call(b, "GET", f"/api/sessions/{sid}/messages"))
        _not_missing(user.call(b, "POST", "/api/chat", json={"message": "next", "sessionId": sid}))
        created = user.call(a, "POST", "/api/chat", json={"message": f"more {round_}"})
        sid = created.json()["sessionId"]
        _not_missing(user.call(b, "PATCH", f"/api/sessions/{sid}", json={"title": "renamed"}))
        created = user.call(a, "POST", "/api/chat", json={"message": f"rate {round_}"})
        sid, user_message = created.json()["sessionId"], created.json()["messages"][1]["id"]
        _not_missing(
            user.call(
                b,
                "PUT",
                f"/api/sessions/{sid}/messages/{user_message}/feedback",
                json={"rating": "up"},
            )
        )
        created = user.call(a, "POST", "/api/chat", json={"message": f"gone {round_}"})
        sid = created.json()["sessionId"]
        deleted = user.call(b, "DELETE", f"/api/sessions/{sid}")
        _not_missing(deleted)
        if deleted.status_code == 204:  # done when it says so
            left = [i for i in latest_items(database, user.email) if sid in i["id"]]
            assert left == [], left
    # A session that never existed is still 404: the catch-up confirms it, it does not hide it.
    missing = user.call(b, "GET", "/api/sessions/s_" + "0" * 32)
    assert missing.status_code == 404


def test_a_foreign_forged_or_oversized_header_is_ignored(
    hosts: tuple[RunningHost, RunningHost],
) -> None:
    a, b = hosts
    tag = uuid.uuid4().hex[:8]
    alice = Carrier(f"alice-{tag}@example.com", carry=True)
    bob = Carrier(f"bob-{tag}@example.com", carry=True)
    created = alice.call(a, "POST", "/api/chat", json={"message": "mine"})
    sid = created.json()["sessionId"]
    bob.call(a, "POST", "/api/chat", json={"message": "his"})
    assert alice.token and bob.token
    body, _, mac = alice.token.rpartition(".")
    values = {
        "foreign": bob.token,  # sealed for another caller
        "altered": body + "." + ("A" if mac[0] != "A" else "B") + mac[1:],
        "forged": "eyJ4IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA",
        "oversized": alice.token + "x" * 2100,
        "malformed": "%%%not a token%%%",
    }
    plain = httpx.get(f"{b.base_url}/api/sessions/{sid}", headers=alice.headers, timeout=30)
    for name, value in values.items():
        response = httpx.get(
            f"{b.base_url}/api/sessions/{sid}",
            headers={**alice.headers, HEADER: value},
            timeout=30,
        )
        assert (response.status_code, response.json()) == (plain.status_code, plain.json()), name
    # Bob's genuine token lends him nothing of Alice's.
    foreign = httpx.get(
        f"{b.base_url}/api/sessions/{sid}", headers={**bob.headers, HEADER: alice.token}
    )
    assert foreign.status_code == 404


# ---- erasure ----------------------------------------------------------------------------------


def _turns(user: Carrier, host: RunningHost, count: int) -> None:
    sid = None
    for index in range(count):
        body = {"message": f"m{index}", **({"sessionId": sid} if sid else {})}
        response = user.call(host, "POST", "/api/chat", json=body)
        assert response.status_code == 200, response.text
        sid = response.json()["sessionId"]


@pytest.mark.parametrize("carry", [False, True], ids=["no-header", "header"])
def test_an_erasure_on_the_other_host_is_done_when_it_says_so(
    hosts: tuple[RunningHost, RunningHost], database: CosmosDatabase, carry: bool
) -> None:
    a, b = hosts
    for round_ in range(ROUNDS):
        email = f"erase-{round_}-{uuid.uuid4().hex[:8]}@example.com"
        user = Carrier(email, carry=carry)
        _turns(user, a, 2)
        for _ in range(20):
            answer = user.call(b, "DELETE", "/api/sessions")
            assert answer.status_code in (202, 204), answer.text
            if answer.status_code == 204:
                break
        assert answer.status_code == 204
        assert latest_items(database, email) == [], "204 while items were still stored"


def test_the_erase_command_is_done_when_it_exits_0(
    hosts: tuple[RunningHost, RunningHost], database: CosmosDatabase
) -> None:
    a, _ = hosts
    env = cosmos_env(database)
    for round_ in range(ROUNDS):
        email = f"cli-{round_}-{uuid.uuid4().hex[:8]}@example.com"
        _turns(Carrier(email, carry=False), a, 2)
        done = subprocess.run(
            [sys.executable, "-m", "shared.erase", "--email", email],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["sessions"] == 1 and summary["messages"] == 4, summary
        assert latest_items(database, email) == [], "exit 0 while items were still stored"
