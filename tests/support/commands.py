"""The operators' commands (``python -m shared.<command>``) run as processes on a store of the
test's own, and what their tests share: a user's data to act on, the audit lines a command
writes, and the check that its output reveals neither message text nor an address.

``storage`` (SQLite, then a Cosmos database) is registered for every suite by tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shared.models import FeedbackRequest
from shared.storage.base import Store
from shared.storage.sqlite import SqliteStore
from tests.support.databases import cosmos_database
from tests.support.deployments import cosmos_env, run_on_a_store
from tests.support.scenarios import START, chat_request, make_service, seed_session
from tools.local.cosmos import CosmosAccount
from tools.local.host import ROOT

T = TypeVar("T")
SALT = "operator-test-salt"
SECRET = "the-secret-words"  # in every seeded message: never in a command's output


@dataclass
class Storage:
    name: str
    env: dict[str, str]
    open_store: Callable[[], Store]

    def with_store(self, work: Callable[[Store], Awaitable[T]]) -> T:
        return run_on_a_store(self.open_store, work)

    def command(
        self, *args: str, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        return subprocess.run(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env={**base, **self.env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.fixture(params=["sqlite", "cosmos"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    common = {"AUTH_MODE": "dev", "LOG_HASH_SALT": SALT, "LLM_PROVIDER": "echo"}
    if request.param == "sqlite":
        path = tmp_path / "ops.db"
        env = {**common, "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(path)}
        yield Storage("sqlite", env, lambda: SqliteStore(path))
        return
    account: CosmosAccount = request.getfixturevalue("cosmos_account")
    with cosmos_database(account) as database:
        env = cosmos_env(database, common)
        yield Storage("cosmos", env, database.store)


async def populate(store: Store, email: str) -> tuple[int, int]:
    """Active, archived and deleted conversations with feedback; (sessions, messages) kept."""
    svc = make_service(store)
    first = await svc.chat(email, chat_request(f"hello {SECRET}"))
    await svc.chat(email, chat_request(f"more {SECRET}", first.session_id))
    await svc.set_feedback(
        email,
        first.session_id,
        first.assistant.id,
        FeedbackRequest.model_validate({"rating": "up", "comment": f"comment {SECRET}"}),
    )
    await seed_session(store, email, [f"archived {SECRET} {i}" for i in range(250)], archived=True)
    await seed_session(store, email, [f"active {SECRET}", "answer"], at=START)
    gone = await svc.chat(email, chat_request(f"deleted {SECRET}"))
    await svc.delete_session(email, gone.session_id)
    return 3, 4 + 250 + 2


def audit_lines(stderr: str, event: str) -> list[dict[str, Any]]:
    prefix = f"{event} "
    return [
        json.loads(line.removeprefix(prefix))
        for line in stderr.splitlines()
        if line.startswith(prefix + "{")
    ]


def assert_nothing_revealed(output: str, *emails: str) -> None:
    assert SECRET not in output
    for email in emails:
        assert email not in output
