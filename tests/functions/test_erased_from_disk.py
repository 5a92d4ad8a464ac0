"""Erased text leaves the disk: after DELETE /api/sessions (or one session's delete) answered
204, neither the SQLite database nor its write-ahead log nor its shared-memory file holds the
erased messages or the caller's address, while the local host runs and after it stops.

The local host (a real process) on the embedded store, the echo model (which repeats each
message in its answer, so the text is stored twice per turn, and in the search index)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tools.local.host import RunningHost, dev_headers, run_host

TURNS = 12


def files(db: Path) -> list[Path]:
    """The database and, when they exist, its -wal and -shm files."""
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def found_in(db: Path, needles: dict[str, str]) -> list[str]:
    """Which needles (by name) any of the files holds, as UTF-8 bytes, and where."""
    hits = []
    for path in files(db):
        data = path.read_bytes()
        hits += [
            f"{name} in {path.name}" for name, text in needles.items() if text.encode() in data
        ]
    return hits


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "c.db"


@pytest.fixture
def running(db: Path, tmp_path: Path) -> Iterator[RunningHost]:
    env = {"AUTH_MODE": "dev", "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(db)}
    with run_host(env, tmp_path / "host.log") as host:
        yield host


def converse(host: RunningHost, email: str, text: str, sid: str | None = None) -> str:
    with httpx.Client(base_url=host.base_url, headers=dev_headers(email), timeout=30) as client:
        for n in range(TURNS):
            body = {"message": f"{text} turn {n}", **({"sessionId": sid} if sid else {})}
            response = client.post("/api/chat", json=body)
            assert response.status_code == 200, response.text
            sid = str(response.json()["sessionId"])
    assert sid is not None
    return sid


def stop(host: RunningHost) -> None:
    host.process.terminate()
    host.process.wait(timeout=30)


def test_an_erasure_leaves_no_text_and_no_address_in_any_file(
    running: RunningHost, db: Path
) -> None:
    token = secrets.token_hex(8)
    erased = {
        "text": f"my secret diagnosis {token}",
        "address": f"erase-{token}@example.com",
    }
    kept = {"text": f"an ordinary note {token[::-1]}"}
    converse(running, erased["address"], erased["text"])
    converse(running, erased["address"], erased["text"])  # a second session
    keeper_sid = converse(running, "keeper@example.com", kept["text"])
    # Before: everything is on disk (the log included), so the check can see it.
    assert set(found_in(db, erased)) >= {"text in c.db-wal", "address in c.db-wal"}

    headers = dev_headers(erased["address"])
    with httpx.Client(base_url=running.base_url, headers=headers, timeout=30) as client:
        assert client.delete("/api/sessions").status_code == 204
    assert found_in(db, erased) == []  # while the host runs

    stop(running)
    assert found_in(db, erased) == []  # and after it stopped
    # The connections were closed: the log was checkpointed and removed.
    assert not Path(f"{db}-wal").exists()
    # Nothing else went: the other user's conversation is whole.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM messages WHERE session_id = ?", (keeper_sid,)
        ).fetchone()
    assert count == 2 * TURNS


def test_a_deleted_session_leaves_no_text_in_any_file(running: RunningHost, db: Path) -> None:
    token = secrets.token_hex(8)
    email = f"someone-{token}@example.com"
    gone = {"text": f"delete this one {token}"}
    stays = {"text": f"keep this one {token[::-1]}"}
    sid = converse(running, email, gone["text"])
    converse(running, email, stays["text"])
    assert "text in c.db-wal" in found_in(db, gone)

    with httpx.Client(base_url=running.base_url, headers=dev_headers(email), timeout=30) as c:
        assert c.delete(f"/api/sessions/{sid}").status_code == 204
    assert found_in(db, gone) == []
    assert found_in(db, stays) != []  # the other session is still there

    stop(running)
    assert found_in(db, gone) == []
