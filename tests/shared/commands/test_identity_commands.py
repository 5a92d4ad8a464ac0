"""The operators' commands for addresses, as processes (``shared/commands/identity.py``):

    python -m shared.identity release --email old@example.com
    python -m shared.identity move --from old@example.com --to new@example.com

on the embedded store and on local Cosmos: what they print, what they leave, their exit codes
and their audit line (hashed addresses and counts, never an address, an account id or text).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.audit import user_hash
from shared.auth.claims import Account
from shared.storage.base import Binding, Store
from tests.support.commands import (
    SALT,
    SECRET,
    Storage,
    assert_nothing_revealed,
    audit_lines,
    populate,
)
from tests.support.store_state import raw_items

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

T0 = datetime(2026, 12, 5, tzinfo=UTC)
KATE = Account(tenant_id="72f988bf-0000-4000-8000-00000000000a", object_id="kate-object-id")
MALLORY = Account(tenant_id="72f988bf-0000-4000-8000-00000000000a", object_id="mallory-object")


@pytest.fixture
def users() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"kate-{tag}@example.com", f"kate-new-{tag}@example.com"


async def snapshot(store: Store, email: str) -> dict[str, Any]:
    """The user's sessions and messages as the API reads them (both containers)."""
    found: dict[str, Any] = {}
    for where in ("active", "archive"):
        sessions, _ = await store.list_sessions(email, where=where, limit=100, after=None)
        for session in sessions:
            page, _ = await store.page_messages(email, session.id, where=where, limit=1000)
            found[session.id] = (
                session.title,
                [m.model_dump_json() for m in page],
            )
    return found


def test_move_takes_everything_and_the_binding(storage: Storage, users: tuple[str, str]) -> None:
    old, new = users

    async def prepare(store: Store) -> dict[str, Any]:
        await populate(store, old)
        await store.bind(Binding(old, KATE, T0))
        return await snapshot(store, old)

    before = storage.with_store(prepare)
    done = storage.command("shared.identity", "move", "--from", old.upper(), "--to", new)
    assert done.returncode == 0, done.stderr
    summary = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(summary) == 1
    assert _json(summary[0]) == {"sessions": 3, "taken": [], "binding": "moved", "complete": True}
    [line] = audit_lines(done.stderr, "identity_move")
    assert line == {
        "user": user_hash(old, SALT),
        "to": user_hash(new, SALT),
        "by": "operator",
        "sessions": 3,
        "taken": 0,
        "binding": "moved",
        "complete": True,
    }
    assert_nothing_revealed(done.stdout + done.stderr, old, new)
    assert KATE.object_id not in done.stdout + done.stderr

    async def after(store: Store) -> tuple[Any, Any, Any, Any]:
        return (
            await snapshot(store, new),
            await raw_items(store, old),
            await store.read_binding(new),
            await store.read_binding(old),
        )

    moved, left, bound_new, bound_old = storage.with_store(after)
    # The same sessions and messages (an archived one may arrive active on Cosmos).
    assert sorted(moved.items()) == sorted(before.items())
    assert left == {"active": [], "archive": []}
    assert bound_new is not None and bound_new.account == KATE and bound_old is None

    again = storage.command("shared.identity", "move", "--from", old, "--to", new)
    assert again.returncode == 0, again.stderr
    assert _json(again.stdout.strip())["sessions"] == 0


def test_move_to_an_address_of_another_account_moves_nothing(
    storage: Storage, users: tuple[str, str]
) -> None:
    old, new = users

    async def prepare(store: Store) -> Any:
        await populate(store, old)
        await store.bind(Binding(old, KATE, T0))
        await store.bind(Binding(new, MALLORY, T0))
        return await raw_items(store, old)

    before = storage.with_store(prepare)
    refused = storage.command("shared.identity", "move", "--from", old, "--to", new)
    assert refused.returncode == 1, refused.stderr
    summary = _json(refused.stdout.strip())
    assert summary["complete"] is False and summary["sessions"] == 0
    assert "another account" in summary["refused"]
    assert storage.with_store(lambda store: raw_items(store, old)) == before
    [line] = audit_lines(refused.stderr, "identity_move")
    assert line["complete"] is False


def test_release_frees_the_address(storage: Storage, users: tuple[str, str]) -> None:
    kate, _ = users
    unbound = storage.command("shared.identity", "show", "--email", kate)
    assert unbound.returncode == 0 and _json(unbound.stdout.strip()) == {"bound": False}
    storage.with_store(lambda store: store.bind(Binding(kate, KATE, T0)))
    shown = storage.command("shared.identity", "show", "--email", kate.upper())
    assert _json(shown.stdout.strip()) == {"bound": True, "boundAt": "2026-12-05T00:00:00.000Z"}
    assert KATE.object_id not in shown.stdout + shown.stderr
    done = storage.command("shared.identity", "release", "--email", kate)
    assert done.returncode == 0, done.stderr
    assert _json(done.stdout.strip()) == {"released": True}
    [line] = audit_lines(done.stderr, "identity_release")
    assert line == {
        "user": user_hash(kate, SALT),
        "by": "operator",
        "released": True,
        "complete": True,
    }
    assert storage.with_store(lambda store: store.read_binding(kate)) is None
    again = storage.command("shared.identity", "release", "--email", kate)
    assert again.returncode == 0 and _json(again.stdout.strip()) == {"released": False}
    assert_nothing_revealed(done.stdout + done.stderr + again.stdout + again.stderr, kate)


@pytest.mark.parametrize(
    "args",
    [
        ["release", "--email", "k\u0430te@example.com"],
        ["move", "--from", "kate@example.com", "--to", "not an address"],
        ["move", "--from", "kate@example.com", "--to", "KATE@example.com"],
    ],
    ids=["lookalike", "malformed-to", "same-address"],
)
def test_a_bad_address_touches_nothing(storage: Storage, args: list[str]) -> None:
    refused = storage.command("shared.identity", *args)
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stdout == ""
    assert SECRET not in refused.stderr


def _json(text: str) -> Any:
    return json.loads(text)
