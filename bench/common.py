"""What every measurement shares: the local Cosmos server, settings, messages, statistics."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


class NotAvailable(RuntimeError):
    """A part of the benchmark cannot run here (reported as such, not as a crash)."""


@dataclass(frozen=True)
class Cosmos:
    endpoint: str
    key: str
    verify_tls: bool

    def store(self, database: str, **client_options: Any) -> Any:
        """A CosmosStore on this account, in its own database (created on first use)."""
        from shared.config import DEFAULT_ACTIVE_CONTAINER, DEFAULT_ARCHIVE_CONTAINER
        from shared.storage.cosmos import CosmosStore

        return CosmosStore(
            self.endpoint,
            self.key,
            database=database,
            container=DEFAULT_ACTIVE_CONTAINER,
            archive_container=DEFAULT_ARCHIVE_CONTAINER,
            verify_tls=self.verify_tls,
            bootstrap=True,
            client_options=client_options or None,
        )


@contextlib.contextmanager
def cosmos_account() -> Iterator[Cosmos]:
    """The test suite's Cosmos target: COSMOS_ENDPOINT when set, else the local server."""
    try:
        from tools.local.cosmos import LocalCosmosError, cosmos_target
    except ImportError as exc:  # pragma: no cover - a broken checkout
        raise NotAvailable(f"tools.local.cosmos cannot be imported: {exc}") from exc
    try:
        with cosmos_target() as account:
            yield Cosmos(account.endpoint, account.key, account.verify_tls)
    except LocalCosmosError as exc:
        raise NotAvailable(str(exc)) from exc


def message_text(turn: int) -> str:
    """A user message of a realistic size (about 240 characters), different every turn."""
    return (
        f"Turn {turn}: could you summarise what we discussed about the quarterly figures, "
        "and list the three follow-ups with owners and dates? Please keep it short, and "
        "point out anything that changed since the previous summary you gave me."
    )


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 100 samples is the 99th value)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_stats(samples_s: list[float], wall_s: float) -> dict[str, Any]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "throughput_rps": round(len(ms) / wall_s, 1) if wall_s > 0 else None,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or None
    return None


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git_commit(),
    }


def python_exe() -> str:
    return sys.executable


async def seed_session(
    store: Any,
    email: str,
    *,
    messages: int,
    start: datetime,
    session_id: str | None = None,
    extra: dict[int, str] | None = None,
    chunk: int = 50,
) -> str:
    """A session of ``messages`` realistic messages, one second apart from ``start``, written
    through the store ``chunk`` at a time; ``extra`` appends text to the messages it names."""
    from shared.ids import new_session_id
    from shared.models import MessageRecord
    from tools.local.seeding import append_in_batches, new_session

    session_id = session_id or new_session_id()
    records = [
        MessageRecord(
            session_id=session_id,
            seq=seq,
            role="user" if seq % 2 else "assistant",
            content=message_text(seq) + (extra or {}).get(seq, ""),
            timestamp=start + timedelta(seconds=seq),
        )
        for seq in range(1, messages + 1)
    ]
    session = new_session(records, email=email, title="bench")
    await append_in_batches(store, session, records, batch=chunk)
    return session_id
