"""Usage and budgets through the real local host on a real socket (docs/http.md, "Usage and
budgets"), on both stores: ``GET /api/usage`` counts what the model cost; once the day's budget
is spent a turn is 429 ``quota_exceeded`` with ``Retry-After`` up to the next UTC midnight, as
JSON and as a stream, and nothing is stored; another user is not affected.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from shared.storage.sqlite import SqliteStore
from tests.support.databases import cosmos_database
from tests.support.deployments import HOST_ENV, Deployment, cosmos_env
from tools.local.cosmos import CosmosAccount
from tools.local.host import run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

# The first turn passes (nothing spent yet) and spends more than this: the second is refused.
DAILY_LIMIT = 10
LIMITS = {"USER_DAILY_TOKEN_LIMIT": str(DAILY_LIMIT), "USER_MONTHLY_TOKEN_LIMIT": "1000000"}


@pytest.fixture(params=["sqlite", "cosmos"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "sqlite":
        path = tmp_path / "c.db"
        env = {
            "AUTH_MODE": "dev",
            "LLM_PROVIDER": "echo",
            "STORAGE_BACKEND": "sqlite",
            "SQLITE_PATH": str(path),
            **LIMITS,
        }
        with run_host(env, tmp_path / "host.log") as host:
            yield Deployment("sqlite", host, env, lambda: SqliteStore(path))
        return
    account: CosmosAccount = request.getfixturevalue("cosmos_account")
    with cosmos_database(account) as database:
        env = {**cosmos_env(database, HOST_ENV), **LIMITS}
        with run_host(env, tmp_path / "host.log") as host:
            yield Deployment("cosmos", host, env, database.store)


def next_midnight() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def test_a_spent_budget_refuses_the_turn_before_storing_anything(
    deployment: Deployment,
) -> None:
    tag = deployment.name
    alice, bob = f"alice-usage-{tag}@example.com", f"bob-usage-{tag}@example.com"
    with deployment.client(alice) as client:
        before = client.get("/api/usage")
        assert before.status_code == 200, before.text
        assert before.headers["cache-control"] == "no-store"
        usage = before.json()
        assert usage["day"]["tokens"] == 0 and usage["turns"] == {"day": 0, "month": 0}
        assert usage["day"]["limit"] == DAILY_LIMIT and usage["month"]["limit"] == 1_000_000
        midnight = next_midnight()
        assert usage["day"]["resetsAt"] == midnight.strftime("%Y-%m-%dT%H:%M:%S.000Z")

        first = client.post("/api/chat", json={"message": "hello"})
        assert first.status_code == 200, first.text
        session_id = first.json()["sessionId"]
        spent = client.get("/api/usage").json()
        assert spent["day"]["tokens"] > DAILY_LIMIT and spent["turns"] == {"day": 1, "month": 1}
        assert spent["month"]["tokens"] == spent["day"]["tokens"]

        sessions = client.get("/api/sessions").json()["sessions"]
        refusals = [
            client.post("/api/chat", json={"message": "again", "sessionId": session_id}),
            client.post("/api/chat", json={"message": "a new one", "clientMessageId": "c-9"}),
            client.post(
                "/api/chat",
                json={"message": "streamed", "sessionId": session_id},
                headers={"Accept": "text/event-stream"},
            ),
        ]
        for refused in refusals:
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "quota_exceeded"
            assert "daily token budget" in refused.json()["error"]["message"]
            wait = int(refused.headers["retry-after"])
            expected = (next_midnight() - datetime.now(UTC)).total_seconds()
            assert abs(wait - expected) <= 5
        # Nothing stored: the same sessions, the same two messages, the same usage.
        assert client.get("/api/sessions").json()["sessions"] == sessions
        messages = client.get(f"/api/sessions/{session_id}").json()["messages"]
        assert [m["content"] for m in messages] == ["hello", "echo[0]:\nhello"]
        assert client.get("/api/usage").json() == spent

    with deployment.client(bob) as other:
        assert other.post("/api/chat", json={"message": "mine"}).status_code == 200

    # In the store: only the day and month records of each user.
    periods = deployment.with_store(lambda store: store.read_usage(alice))
    assert [p.split("-")[0] for p in periods] == ["day", "month"]


def test_usage_needs_an_identity(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.host.base_url, timeout=30) as anonymous:
        assert anonymous.get("/api/usage").status_code == 401


def test_the_activity_history_through_the_host(deployment: Deployment) -> None:
    alice = f"alice-history-{deployment.name}@example.com"
    with deployment.client(alice) as client:
        assert client.post("/api/chat", json={"message": "hello"}).status_code == 200
        plain = client.get("/api/usage").json()
        assert "history" not in plain
        shown = client.get("/api/usage", params={"days": "3"})
        assert shown.status_code == 200
        assert shown.headers["Cache-Control"] == "no-store"
        history = shown.json()["history"]
        today = datetime.now(UTC).date()
        dates = [(today - timedelta(days=back)).isoformat() for back in (2, 1, 0)]
        # Midnight may pass between the turn and the read: then the turn is on the day before.
        assert [d["date"] for d in history] in (
            dates,
            [(today - timedelta(days=back)).isoformat() for back in (3, 2, 1)],
        )
        assert sum(d["turns"] for d in history) == 1
        assert sum(d["tokens"] for d in history) == plain["day"]["tokens"]
        for bad in ("0", "91", "x", "²"):
            refused = client.get("/api/usage", params={"days": bad})
            assert refused.status_code == 400, bad
            assert refused.json()["error"]["code"] == "invalid_request"
