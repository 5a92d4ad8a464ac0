"""Measurement 2: request latency through the local host, and the floor under it.

The host (``python -m devhost`` via tools/local/host.py, echo model, AUTH_MODE=dev) serves
chat, list and get at several concurrencies; then, with the host stopped, the same store
methods those requests use are timed in-process on the same data. Overhead = host - floor.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import Cosmos, latency_stats, message_text

OPS = ("chat", "list", "get")
SEED_TURNS = 5  # the session that "get" reads holds 10 messages
OVERHEAD_P50_MS, OVERHEAD_P99_MS = 5.0, 20.0  # the budget docs/performance.md states
WARMUP_PER_WORKER = 2


@dataclass
class User:
    email: str
    chat_session: str = ""
    read_session: str = ""


def _users(count: int) -> list[User]:
    return [User(f"bench{i}@bench.local") for i in range(count)]


# ---- through the host -------------------------------------------------------------------------


def _headers(user: User) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL-NAME": user.email}


async def _chat(client: httpx.AsyncClient, user: User, session_id: str | None, n: int) -> str:
    body: dict[str, Any] = {"message": message_text(n)}
    if session_id:
        body["sessionId"] = session_id
    response = await client.post("/api/chat", json=body, headers=_headers(user))
    if response.status_code != 200:
        raise RuntimeError(f"POST /api/chat answered {response.status_code}: {response.text}")
    return str(response.json()["sessionId"])


async def _http_op(client: httpx.AsyncClient, op: str, user: User, n: int) -> None:
    if op == "chat":
        await _chat(client, user, user.chat_session, n)
        return
    path = "/api/sessions" if op == "list" else f"/api/sessions/{user.read_session}"
    response = await client.get(path, headers=_headers(user))
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text}")


async def _seed(client: httpx.AsyncClient, users: list[User]) -> None:
    async def one(user: User) -> None:
        user.chat_session = await _chat(client, user, None, 0)
        user.read_session = await _chat(client, user, None, 0)
        for n in range(1, SEED_TURNS):
            await _chat(client, user, user.read_session, n)

    await asyncio.gather(*(one(u) for u in users))


# One call for a user; returns the time to record, or None to record the call's wall time.
Op = Callable[[User, int], Awaitable[float | None]]


async def _drive(op: Op, users: list[User], requests: int) -> dict[str, Any]:
    """``len(users)`` workers, each its own user, share ``requests`` calls; warm-up excluded.
    A worker's calls are sequential: concurrent turns of one session would only measure
    ETag retries."""
    per_worker = max(1, requests // len(users))
    samples: list[float] = []

    async def worker(user: User, count: int, record: bool) -> None:
        for i in range(count):
            started = time.perf_counter()
            spent = await op(user, i)
            if record:
                samples.append(spent if spent is not None else time.perf_counter() - started)

    await asyncio.gather(*(worker(u, WARMUP_PER_WORKER, False) for u in users))
    started = time.perf_counter()
    await asyncio.gather(*(worker(u, per_worker, True) for u in users))
    return latency_stats(samples, time.perf_counter() - started)


async def _host_run(
    base_url: str, users: list[User], levels: list[int], requests: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        await _seed(client, users)
        results: dict[str, Any] = {}
        for op in OPS:

            async def call(user: User, n: int, op: str = op) -> None:
                await _http_op(client, op, user, n)
                return None

            for level in levels:
                results[f"{op}@{level}"] = await _drive(call, users[:level], requests)
        return results


# ---- the floor: the same store calls, in-process -----------------------------------------------


class _Timed:
    """Accumulates the time spent inside store calls only (record building excluded)."""

    def __init__(self) -> None:
        self.spent = 0.0

    async def __call__(self, awaitable: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.spent += time.perf_counter() - started


async def _floor_chat(store: Any, user: User, n: int, max_history: int, timed: _Timed) -> None:
    from shared.llm.echo import echo_reply
    from shared.models import MessageRecord

    view = await timed(store.read_turn(user.email, user.chat_session, history=max_history))
    session = view.session
    for role in ("user", "assistant"):
        text = message_text(n) if role == "user" else echo_reply(1, message_text(n))
        message = MessageRecord(
            session_id=session.id,
            seq=session.last_seq + 1,
            role=role,
            content=text,
            timestamp=datetime.now(UTC),
        )
        updated = session.model_copy(
            update={
                "message_count": session.message_count + 1,
                "last_seq": message.seq,
                "updated_at": message.timestamp,
            }
        )
        session = await timed(store.append(updated, [message], expected_etag=session.etag))


async def _floor_run(store: Any, users: list[User], levels: list[int], requests: int) -> Any:
    results: dict[str, Any] = {}
    for op in OPS:

        async def call(user: User, n: int, op: str = op) -> float:
            timed = _Timed()
            if op == "chat":
                await _floor_chat(store, user, n, 20, timed)
            elif op == "list":
                await timed(store.list_sessions(user.email, where="active", limit=20, after=None))
            else:
                await timed(store.get_session(user.email, user.read_session, where="active"))
                await timed(
                    store.page_messages(user.email, user.read_session, where="active", limit=200)
                )
            return timed.spent  # the store calls only, not the record building between them

        for level in levels:
            results[f"{op}@{level}"] = await _drive(call, users[:level], requests)
    await store.close()
    return results


# ---- one backend --------------------------------------------------------------------------------


def _overhead(host: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for key, h in host.items():
        f = floor[key]
        p50 = round(h["p50_ms"] - f["p50_ms"], 3)
        p99 = round(h["p99_ms"] - f["p99_ms"], 3)
        rows[key] = {
            "overhead_p50_ms": p50,
            "overhead_p99_ms": p99,
            "ratio_p50": round(h["p50_ms"] / f["p50_ms"], 2) if f["p50_ms"] else None,
            "budget_met": p50 < OVERHEAD_P50_MS and p99 < OVERHEAD_P99_MS,
        }
    return rows


def run_backend(
    env: dict[str, str],
    make_store: Callable[[], Any],
    levels: list[int],
    requests: int,
    log_path: Path,
    host_cm: Callable[[dict[str, str], Path], AbstractContextManager[Any]],
) -> dict[str, Any]:
    users = _users(max(levels))
    # A budget no run reaches: every turn still pays for the check and the count (as in
    # production, where a limit is set by default) but none is refused.
    full_env = {
        "AUTH_MODE": "dev",
        "LLM_PROVIDER": "echo",
        "USER_DAILY_TOKEN_LIMIT": str(10**12),
        **env,
    }
    with host_cm(full_env, log_path) as host:
        host_results = asyncio.run(_host_run(host.base_url, users, levels, requests))
    floor_results = asyncio.run(_floor_run(make_store(), users, levels, requests))
    return {
        "host": host_results,
        "floor": floor_results,
        "overhead": _overhead(host_results, floor_results),
    }


def run(cosmos: Cosmos | None, levels: list[int], requests: int) -> dict[str, Any]:
    from shared.storage.sqlite import SqliteStore
    from tools.local.host import run_host

    out: dict[str, Any] = {"levels": levels, "requests_per_cell": requests}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        out["sqlite"] = run_backend(
            {"STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(db)},
            lambda: SqliteStore(db),
            levels,
            requests,
            Path(tmp) / "host-sqlite.log",
            run_host,
        )
        if cosmos is None:
            out["cosmos"] = {"not_available": "the Cosmos store or server is not available"}
            return out

        database = f"bench-latency-{int(time.time())}"
        out["cosmos"] = run_backend(
            {
                "STORAGE_BACKEND": "cosmos",
                "COSMOS_ENDPOINT": cosmos.endpoint,
                "COSMOS_KEY": cosmos.key,
                "COSMOS_VERIFY_TLS": str(cosmos.verify_tls).lower(),
                "COSMOS_DATABASE": database,
            },
            lambda: cosmos.store(database),
            levels,
            requests,
            Path(tmp) / "host-cosmos.log",
            run_host,
        )
    return out
