"""``python -m shared.archive``: one pass with the configured storage, one JSON line out."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.storage.sqlite import SqliteStore
from tests.support.scenarios import seed
from tests.support.store_state import items
from tools.local.host import ROOT

ALICE = "alice@example.com"


def cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {**base, "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(path)}
    return subprocess.run(
        [sys.executable, "-m", "shared.archive", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_prints_one_json_line(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    now = datetime.now(UTC)

    async def prepare() -> tuple[str, str]:
        store = SqliteStore(path)
        return await seed(store, ALICE, now - timedelta(days=40)), await seed(
            store, ALICE, now - timedelta(days=10)
        )

    old, recent = asyncio.run(prepare())

    dry = cli(path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    [line] = dry.stdout.splitlines()
    summary = json.loads(line)
    assert {k: summary[k] for k in ("archived", "skipped", "failed", "more", "dryRun")} == {
        "archived": 1,
        "skipped": 0,
        "failed": 0,
        "more": False,
        "dryRun": True,
    }
    assert set(summary) >= {"resumed", "retentionDeleted", "throttled", "durationMs"}

    ran = cli(path)
    assert ran.returncode == 0 and json.loads(ran.stdout)["archived"] == 1
    override = cli(path, "--older-than-days", "5")
    assert override.returncode == 0 and json.loads(override.stdout)["archived"] == 1

    async def state() -> list[bool]:
        store = SqliteStore(path)
        return [(await items(store, ALICE, s))["archive"][0] for s in (old, recent)]

    assert asyncio.run(state()) == [True, True]
    assert ALICE not in dry.stderr + ran.stderr + override.stderr


def test_the_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    bad = cli(tmp_path / "cli.db", "--older-than-days", "0")
    assert bad.returncode == 2 and bad.stdout == ""
